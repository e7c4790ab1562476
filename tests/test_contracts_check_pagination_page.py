"""`pagination_page`: one page judged on its own (what the proxy and a replay see): `page` and
`per_page` echo the request or the spec's defaults, and the page holds what `total` implies."""

from __future__ import annotations

import json
from typing import Any

import pytest

from opsmerge_contracts.checks import FAIL, PASS, CheckContext, run_checks
from opsmerge_contracts.exchange import Exchange, RecordedRequest, RecordedResponse
from opsmerge_sandbox.spec import load_spec

JSON = {"content-type": "application/json"}


@pytest.fixture(scope="module")
def ctx() -> CheckContext:
    return CheckContext(load_spec())


def _page(query: str, page: int, per_page: int, items: int, total: int, **over: Any) -> Exchange:
    data = {"items": [{"id": f"tkt_{i}"} for i in range(items)], "total": total,
            "page": page, "per_page": per_page, **over}  # fmt: skip
    return Exchange(
        RecordedRequest("GET", f"http://t/api/v1/tickets{query}", {}, b""),
        RecordedResponse(200, JSON, json.dumps({"data": data}).encode()),
        operation_id="listTickets",
        role="observed",
    )


def _verdicts(ctx: CheckContext, ex: Exchange) -> list[tuple[str, str]]:
    return [(r.status, r.message) for r in run_checks(ctx, [ex], only=["pagination_page"])]


def test_a_consistent_page_passes_the_last_and_past_the_end_too(ctx: CheckContext) -> None:
    assert _verdicts(ctx, _page("?per_page=10&page=2", 2, 10, 10, 45))[0][0] == PASS
    assert _verdicts(ctx, _page("?per_page=10&page=5", 5, 10, 5, 45))[0][0] == PASS
    assert _verdicts(ctx, _page("?per_page=10&page=9", 9, 10, 0, 45))[0][0] == PASS
    assert _verdicts(ctx, _page("", 1, 50, 45, 45))[0][0] == PASS  # the spec's defaults


def test_a_total_the_items_do_not_add_up_to_fails_naming_the_numbers(ctx: CheckContext) -> None:
    [(status, message)] = _verdicts(ctx, _page("?per_page=100", 1, 100, 45, 46))
    assert status == FAIL
    assert "holds 45 items" in message and "total 46" in message


def test_page_or_per_page_that_do_not_echo_the_request_fail(ctx: CheckContext) -> None:
    [(status, message)] = _verdicts(ctx, _page("?per_page=10", 1, 20, 10, 45))
    assert status == FAIL and "`per_page` is 20" in message
    [(status, message)] = _verdicts(ctx, _page("?page=3&per_page=10", 1, 10, 10, 45))
    assert status == FAIL and "`page` is 1" in message
    [(status, message)] = _verdicts(ctx, _page("", 1, 20, 20, 45))  # default per_page is 50
    assert status == FAIL and "asked for 50" in message


def test_a_request_outside_the_spec_bounds_is_left_to_the_other_checks(ctx: CheckContext) -> None:
    assert _verdicts(ctx, _page("?per_page=101", 1, 101, 45, 45)) == []
    assert _verdicts(ctx, _page("?page=abc", 1, 50, 45, 45)) == []

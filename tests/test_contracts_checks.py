"""The checks as pure functions over recorded exchanges: each passes the right thing and fails the
wrong one, naming what is wrong."""

from __future__ import annotations

import inspect
import json
from typing import Any

import pytest

from opsmerge_contracts.checks import (
    FAIL,
    PASS,
    REGISTRY,
    WARN,
    CheckContext,
    Result,
    run_checks,
    same_value,
)
from opsmerge_contracts.exchange import Exchange, RecordedRequest, RecordedResponse
from opsmerge_sandbox.spec import load_spec

RATE = {"x-ratelimit-limit": "300", "x-ratelimit-remaining": "299", "x-ratelimit-reset": "60"}
JSON = {"content-type": "application/json"}


@pytest.fixture(scope="module")
def ctx() -> CheckContext:
    return CheckContext(load_spec())


def ex(
    status: int = 200,
    body: Any = None,
    *,
    op: str | None = "listTickets",
    role: str = "call",
    headers: dict[str, str] | None = None,
    method: str = "GET",
    url: str = "http://t/api/v1/tickets",
    meta: dict[str, Any] | None = None,
    raw: bytes | None = None,
) -> Exchange:
    content = raw if raw is not None else (json.dumps(body).encode() if body is not None else b"")
    return Exchange(
        request=RecordedRequest(method, url, {}, b""),
        response=RecordedResponse(status, {**JSON, **RATE, **(headers or {})}, content),
        operation_id=op,
        role=role,
        meta=meta or {},
    )


def only(ctx: CheckContext, check_id: str, *exchanges: Exchange) -> list[Result]:
    return run_checks(ctx, list(exchanges), only=[check_id])


def statuses(results: list[Result]) -> list[str]:
    return [r.status for r in results]


def page(items: list[str], total: int, page_no: int, per_page: int, walk: str) -> Exchange:
    body = {
        "data": {
            "items": [{"id": i} for i in items],
            "total": total,
            "page": page_no,
            "per_page": per_page,
        }
    }
    return ex(200, body, role="page", meta={"walk": walk, "page": page_no, "per_page": per_page})


ERROR_404 = {"error": {"code": "NOT_FOUND", "message": "No record with that id."}}


# --- the registry ----------------------------------------------------------------------------


def test_every_check_has_an_id_a_title_a_group_and_the_one_signature() -> None:
    assert len(REGISTRY) >= 25
    for cid, info in REGISTRY.items():
        assert info.id == cid and info.title and info.group
        assert list(inspect.signature(info.func).parameters) == ["ctx", "exchanges"]


def test_run_checks_runs_only_the_checks_asked_for(ctx: CheckContext) -> None:
    results = run_checks(
        ctx,
        [ex(500, {"error": {"code": "INTERNAL_ERROR", "message": "x"}})],
        only=["no_server_error"],
    )
    assert {r.check for r in results} == {"no_server_error"}
    with pytest.raises(KeyError, match="no_such_check"):
        run_checks(ctx, [], only=["no_such_check"])


def test_checks_say_nothing_about_exchanges_they_do_not_apply_to(ctx: CheckContext) -> None:
    plain = ex(200, {"data": {"items": [], "total": 0, "page": 1, "per_page": 50}})
    judged = {r.check for r in run_checks(ctx, [plain])}
    assert "pagination_total" not in judged and "scope_denied" not in judged
    assert {"status_documented", "envelope", "response_schema"} <= judged


# --- the response ----------------------------------------------------------------------------


def test_status_documented(ctx: CheckContext) -> None:
    assert statuses(only(ctx, "status_documented", ex(404, ERROR_404))) == [PASS]
    [result] = only(ctx, "status_documented", ex(418, ERROR_404))
    assert result.status == FAIL and "418" in result.message and "listTickets" in result.message
    assert only(ctx, "status_documented", ex(404, ERROR_404, op=None)) == []


def test_content_type_json(ctx: CheckContext) -> None:
    assert statuses(only(ctx, "content_type_json", ex(200, {"data": {}}))) == [PASS]
    [wrong] = only(
        ctx, "content_type_json", ex(200, {"data": {}}, headers={"content-type": "text/html"})
    )
    assert wrong.status == FAIL and "text/html" in wrong.message
    [broken] = only(ctx, "content_type_json", ex(200, raw=b"{not json"))
    assert broken.status == FAIL and "not valid JSON" in broken.message
    assert only(ctx, "content_type_json", ex(204, raw=b"")) == []


def test_response_schema_names_the_field_that_drifted(ctx: CheckContext) -> None:
    good = {"data": {"items": [], "total": 0, "page": 1, "per_page": 50}}
    assert statuses(only(ctx, "response_schema", ex(200, good))) == [PASS]
    drifted = {"data": {"items": [], "total": "0", "page": 1, "per_page": 50}}
    [result] = only(ctx, "response_schema", ex(200, drifted))
    assert result.status == FAIL and "/data/total" in result.message


def test_request_succeeds(ctx: CheckContext) -> None:
    found = ex(200, {"data": {}}, op="getTicket", role="well-formed")
    missing = ex(404, ERROR_404, op="getTicket", role="well-formed")
    results = only(ctx, "request_succeeds", found, missing, ex(404, ERROR_404, op="getTicket"))
    assert statuses(results) == [PASS, FAIL]
    assert "answered 404 NOT_FOUND, expected 200" in results[1].message


def test_no_server_error(ctx: CheckContext) -> None:
    [result] = only(
        ctx, "no_server_error", ex(503, {"error": {"code": "SERVICE_UNAVAILABLE", "message": "x"}})
    )
    assert (
        result.status == FAIL
        and "503" in result.message
        and "SERVICE_UNAVAILABLE" in result.message
    )
    assert statuses(only(ctx, "no_server_error", ex(400, ERROR_404))) == [PASS]


# --- the envelope ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "body", "reason"),
    [
        (200, {"items": []}, "no `data` envelope"),
        (200, {"data": {}, "error": {}}, "carries an `error`"),
        (404, {"data": {}}, "no `error` object"),
        (404, {"error": {"code": "NOT_FOUND"}}, "message is missing"),
        (404, {"error": {"code": "GONE_FISHING", "message": "x"}}, "not in the error catalogue"),
        (404, {"error": {"code": "SCOPE_DENIED", "message": "x"}}, "belongs with status 403"),
        (200, [1, 2], "not a JSON object"),
    ],
)
def test_envelope_failures(ctx: CheckContext, status: int, body: Any, reason: str) -> None:
    [result] = only(ctx, "envelope", ex(status, body))
    assert result.status == FAIL and reason in result.message


def test_envelope_passes_data_and_catalogue_errors(ctx: CheckContext) -> None:
    results = only(
        ctx,
        "envelope",
        ex(200, {"data": {"id": "x"}}),
        ex(404, ERROR_404),
        ex(429, {"error": {"code": "RATE_LIMITED", "message": "slow down"}}),
    )
    assert statuses(results) == [PASS, PASS, PASS]


# --- pagination --------------------------------------------------------------------------------


def test_pagination_total_passes_a_walk_that_adds_up(ctx: CheckContext) -> None:
    walk = [
        page(["a", "b"], 5, 1, 2, "w"),
        page(["c", "d"], 5, 2, 2, "w"),
        page(["e"], 5, 3, 2, "w"),
    ]
    assert statuses(only(ctx, "pagination_total", *walk)) == [PASS]


def test_pagination_total_catches_a_total_off_by_one(ctx: CheckContext) -> None:
    walk = [
        page(["a", "b"], 6, 1, 2, "w"),
        page(["c", "d"], 6, 2, 2, "w"),
        page(["e"], 6, 3, 2, "w"),
    ]
    [result] = only(ctx, "pagination_total", *walk)
    assert result.status == FAIL and "page 3 holds 1 items, expected 2" in result.message


def test_pagination_total_catches_a_total_that_moves(ctx: CheckContext) -> None:
    [result] = only(ctx, "pagination_total", page(["a"], 2, 1, 1, "w"), page(["b"], 3, 2, 1, "w"))
    assert result.status == FAIL and "changes from page to page" in result.message


def test_pagination_total_does_not_count_a_truncated_walk(ctx: CheckContext) -> None:
    first = page(["a", "b"], 100, 1, 2, "w")
    first.meta["truncated"] = True
    assert statuses(only(ctx, "pagination_total", first)) == [PASS]


def test_pagination_unique(ctx: CheckContext) -> None:
    [result] = only(
        ctx, "pagination_unique", page(["a", "b"], 4, 1, 2, "w"), page(["b", "c"], 4, 2, 2, "w")
    )
    assert (
        result.status == FAIL and "item b appears on page 1 and again on page 2" in result.message
    )


def test_pagination_stable_compares_walks_and_rereads(ctx: CheckContext) -> None:
    small = [page(["a", "b"], 3, 1, 2, "per_page=2"), page(["c"], 3, 2, 2, "per_page=2")]
    big = [page(["a", "c", "b"], 3, 1, 100, "per_page=100")]
    [result] = only(ctx, "pagination_stable", *small, *big)
    assert result.status == FAIL and "disagree at position 2" in result.message
    again = page(["b", "a"], 3, 1, 2, "x")
    again.role, again.meta = "page-repeat", {"walk": "per_page=2", "page": 1}
    results = only(ctx, "pagination_stable", *small, again)
    assert statuses(results) == [FAIL] and "different order" in results[0].message


def test_pagination_bounds(ctx: CheckContext) -> None:
    refused = ex(
        400,
        {"error": {"code": "VALIDATION_ERROR", "message": "x"}},
        role="page-bounds",
        meta={"param": "per_page", "value": 101},
    )
    accepted = ex(200, {"data": {}}, role="page-bounds", meta={"param": "per_page", "value": 101})
    results = only(ctx, "pagination_bounds", refused, accepted)
    assert (
        statuses(results) == [PASS, FAIL] and "per_page=101 was answered 200" in results[1].message
    )


def test_pagination_past_end(ctx: CheckContext) -> None:
    good = ex(
        200, {"data": {"items": [], "total": 9}}, role="page-past-end", meta={"page": 2, "total": 9}
    )
    bad = ex(
        200,
        {"data": {"items": [{"id": "a"}], "total": 0}},
        role="page-past-end",
        meta={"page": 2, "total": 9},
    )
    results = only(ctx, "pagination_past_end", good, bad)
    assert statuses(results) == [PASS, FAIL]
    assert "holds 1 items" in results[1].message and "total is 0" in results[1].message


# --- auth ----------------------------------------------------------------------------------------

UNAUTH = {"error": {"code": "AUTH_REQUIRED", "message": "x"}}


def test_auth_required_and_malformed(ctx: CheckContext) -> None:
    results = run_checks(
        ctx,
        [
            ex(401, UNAUTH, role="no-key"),
            ex(200, {"data": {}}, role="no-key"),
            ex(403, UNAUTH, role="malformed-key", meta={"kind": "unknown"}),
        ],
        only=["auth_required", "auth_malformed"],
    )
    assert [(r.check, r.status) for r in results] == [
        ("auth_required", PASS),
        ("auth_required", FAIL),
        ("auth_malformed", FAIL),
    ]
    assert "unknown key was answered 403" in results[2].message


def test_www_authenticate_on_every_401(ctx: CheckContext) -> None:
    results = only(
        ctx,
        "www_authenticate",
        ex(401, UNAUTH, headers={"www-authenticate": 'Bearer realm="x"'}),
        ex(401, UNAUTH),
        ex(401, UNAUTH, headers={"www-authenticate": "Basic"}),
        ex(200, {"data": {}}),
    )
    assert statuses(results) == [PASS, FAIL, FAIL]


def test_scope_denied_wants_403_scope_denied(ctx: CheckContext) -> None:
    denied = {"error": {"code": "SCOPE_DENIED", "message": "x"}}
    forbidden = {"error": {"code": "FORBIDDEN", "message": "x"}}
    results = only(
        ctx,
        "scope_denied",
        ex(403, denied, role="scope-denied"),
        ex(403, forbidden, role="scope-denied"),
        ex(200, {"data": {}}, role="scope-denied"),
    )
    assert statuses(results) == [PASS, FAIL, FAIL]
    assert "403 FORBIDDEN" in results[1].message


def test_scope_granted_and_session_only(ctx: CheckContext) -> None:
    denied = {"error": {"code": "SCOPE_DENIED", "message": "x"}}
    assert statuses(
        only(
            ctx,
            "scope_granted",
            ex(200, {"data": {}}, role="scope-granted"),
            ex(403, denied, role="scope-granted"),
        )
    ) == [PASS, FAIL]
    key_forbidden = {"error": {"code": "API_KEY_FORBIDDEN", "message": "x"}}
    assert statuses(
        only(
            ctx,
            "session_only",
            ex(403, key_forbidden, role="session-only"),
            ex(200, {"data": {}}, role="session-only"),
        )
    ) == [PASS, FAIL]


# --- rate limits -------------------------------------------------------------------------------


def test_rate_limit_headers(ctx: CheckContext) -> None:
    good = ex(200, {"data": {}})
    missing = ex(200, {"data": {}})
    del missing.response.headers["x-ratelimit-reset"]
    silly = ex(200, {"data": {}}, headers={"x-ratelimit-remaining": "301"})
    text = ex(200, {"data": {}}, headers={"x-ratelimit-limit": "lots"})
    results = only(ctx, "rate_limit_headers", good, missing, silly, text)
    assert statuses(results) == [PASS, FAIL, FAIL, FAIL]
    assert "x-ratelimit-reset is missing" in results[1].message
    assert "above Limit" in results[2].message and "'lots'" in results[3].message
    no_key = ex(401, UNAUTH, headers={})
    for name in RATE:
        del no_key.response.headers[name]
    assert only(ctx, "rate_limit_headers", no_key, ex(404, ERROR_404, op=None)) == []


def _burst(remaining: int, reset: int = 60) -> Exchange:
    return ex(
        200,
        {"data": {}},
        role="burst",
        headers={"x-ratelimit-remaining": str(remaining), "x-ratelimit-reset": str(reset)},
    )


def test_rate_limit_remaining(ctx: CheckContext) -> None:
    assert statuses(only(ctx, "rate_limit_remaining", _burst(10), _burst(9), _burst(8))) == [
        PASS,
        PASS,
    ]
    [stuck] = only(ctx, "rate_limit_remaining", _burst(10), _burst(10))
    assert stuck.status == FAIL and "went from 10 to 10" in stuck.message
    assert only(ctx, "rate_limit_remaining", _burst(0, reset=1), _burst(299, reset=60)) == []


def test_retry_after_and_the_retry(ctx: CheckContext) -> None:
    limited = {"error": {"code": "RATE_LIMITED", "message": "x"}}
    results = only(
        ctx,
        "retry_after",
        ex(429, limited, headers={"retry-after": "12"}),
        ex(429, limited),
        ex(429, limited, headers={"retry-after": "soon"}),
    )
    assert statuses(results) == [PASS, FAIL, FAIL]
    over = ex(200, {"data": {}}, role="rate-exceeded", meta={"n": 4, "limit": 3})
    retry = ex(429, limited, role="rate-retry", meta={"waited": 12})
    results = only(ctx, "rate_limit_retry", over, retry)
    assert statuses(results) == [FAIL, FAIL]
    assert (
        "request 4 with a limit of 3" in results[0].message and "waiting 12 s" in results[1].message
    )


# --- stability -----------------------------------------------------------------------------------


def test_deprecation_headers(ctx: CheckContext) -> None:
    op = "listClientAssets"
    body = {"data": {"items": [], "total": 0, "page": 1, "per_page": 50}}
    right = {"deprecation": "@1777593600", "sunset": "Wed, 30 Jun 2027 00:00:00 GMT"}
    results = only(
        ctx,
        "deprecation_headers",
        ex(200, body, op=op, headers=right),
        ex(200, body, op=op, headers={"sunset": right["sunset"]}),
        ex(200, body, op=op, headers={**right, "sunset": "Thu, 01 Jul 2027 00:00:00 GMT"}),
        ex(200, body, op="listTickets", headers=right),
        ex(200, body, op="listTickets"),
    )
    assert statuses(results) == [PASS, FAIL, FAIL, FAIL]
    assert "no Deprecation header" in results[1].message
    assert "the spec says 2027-06-30" in results[2].message
    assert "not deprecated in the spec" in results[3].message


def test_stability_warns_once_per_beta_or_internal_operation(ctx: CheckContext) -> None:
    beta = "listMonitoredDomains"
    results = only(
        ctx,
        "stability",
        ex(200, {"data": {}}, op=beta),
        ex(200, {"data": {}}, op=beta),
        ex(200, {"data": {}}, op="listTickets"),
        ex(200, {"data": {}}, op="listIntegrations"),
    )
    assert statuses(results) == [WARN, PASS, WARN]
    assert "beta" in results[0].message and "internal" in results[2].message


# --- bodies and resources ---------------------------------------------------------------------


def test_valid_body_accepted_and_validation_error(ctx: CheckContext) -> None:
    invalid = {"error": {"code": "VALIDATION_ERROR", "message": "x", "details": []}}
    created = ex(
        201, {"data": {"id": "tkt_1"}}, op="createTicket", role="valid-body", method="POST"
    )
    refused = ex(400, invalid, op="createTicket", role="valid-body", method="POST")
    assert statuses(only(ctx, "valid_body_accepted", created, refused)) == [PASS, FAIL]
    results = only(
        ctx,
        "validation_error",
        ex(400, invalid, op="createTicket", role="invalid-body", meta={"mutation": "m"}),
        ex(
            201,
            {"data": {}},
            op="createTicket",
            role="invalid-body",
            meta={"mutation": "an empty body"},
        ),
        ex(
            422,
            {"error": {"code": "REFERENCE_NOT_FOUND", "message": "x"}},
            op="createTicket",
            role="invalid-body",
            meta={"mutation": "m"},
        ),
    )
    assert statuses(results) == [PASS, FAIL, FAIL]
    assert results[1].message.startswith("an empty body was answered 201")


def test_readback_compares_what_was_sent(ctx: CheckContext) -> None:
    sent = {"subject": "Printer", "priority": "High", "hours": 1, "at": "2026-01-01T10:00:00Z"}
    same = {
        "data": {
            "id": "t",
            "subject": "Printer",
            "priority": "High",
            "hours": 1.0,
            "at": "2026-01-01T10:00:00+00:00",
            "extra": 1,
        }
    }
    changed = {
        "data": {"id": "t", "subject": "Printer!", "priority": "High", "hours": 1, "at": "x"}
    }
    results = only(
        ctx,
        "readback",
        ex(200, same, role="readback", meta={"sent": sent}),
        ex(200, changed, role="readback", meta={"sent": sent}),
        ex(
            200,
            {"data": {"items": [{"id": "t", **sent}]}},
            role="readback",
            meta={"sent": sent, "find_id": "t"},
        ),
        ex(404, ERROR_404, role="readback", meta={"sent": sent}),
    )
    assert statuses(results) == [PASS, FAIL, PASS, FAIL]
    assert 'subject: sent "Printer", read "Printer!"' in results[1].message


@pytest.mark.parametrize(
    ("sent", "got", "same"),
    [
        (1, 1.0, True),
        (True, 1, False),
        ("a", "a", True),
        ([1, 2], [1, 2], True),
        ([1, 2], [2, 1], False),
        ({"a": 1}, {"a": 1, "b": 2}, True),
        ("2026-01-01T00:00:00Z", "2026-01-01T01:00:00+01:00", True),
        ("2026-01-01", "2026-01-02", False),
        (None, None, True),
        (None, "", False),
    ],
)
def test_same_value(sent: Any, got: Any, same: bool) -> None:
    assert same_value(sent, got) is same


def test_unknown_id_and_deleted_gone(ctx: CheckContext) -> None:
    assert statuses(
        only(
            ctx,
            "unknown_id",
            ex(404, ERROR_404, op="getTicket", role="unknown-id"),
            ex(200, {"data": {}}, op="getTicket", role="unknown-id"),
        )
    ) == [PASS, FAIL]
    assert statuses(
        only(
            ctx,
            "deleted_gone",
            ex(404, ERROR_404, op="getTicket", role="deleted-gone"),
            ex(200, {"data": {}}, op="getTicket", role="deleted-gone", meta={"id": "tkt_1"}),
        )
    ) == [PASS, FAIL]


def test_scenario_expectation(ctx: CheckContext) -> None:
    expect = {
        "status": 201,
        "code": None,
        "json": {"/data/status": "New", "/data/items": {"len": 2}},
        "headers": {"X-RateLimit-Limit": 300, "Deprecation": False},
    }
    expect.pop("code")
    good = ex(
        201,
        {"data": {"status": "New", "items": [1, 2]}},
        role="scenario-step",
        meta={"expect": expect, "step": "create"},
    )
    bad = ex(
        200,
        {"data": {"status": "Open", "items": [1]}},
        role="scenario-step",
        meta={"expect": expect, "step": "create"},
        headers={"deprecation": "@1"},
    )
    results = only(ctx, "scenario_expectation", good, bad)
    assert statuses(results) == [PASS, FAIL]
    message = results[1].message
    for part in (
        "status is 200, expected 201",
        "/data/status is 'Open', expected 'New'",
        "/data/items has length 1, expected 2",
        "header Deprecation is present",
    ):
        assert part in message

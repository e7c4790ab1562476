"""The docs page's badges in a real browser: inventions, and sunsets on the sandbox clock.

A sandbox (not hosted: its clock must move) runs on loopback; chromium opens /api/docs and reads
the badges Swagger UI shows: `invented` on the operations and on the schema fields the spec marks
`x-invented: true`, and on each deprecated operation its sunset date, which turns into `sunset`
once the sandbox clock passes it. The changelog page is opened from the docs page's link.
What to expect is read from the served spec and changelog, not written here.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.conftest import ADMIN_TOKEN, make_app
from tests.test_docs_browser import _shot, browser, page  # noqa: F401  (fixtures)

pytestmark = pytest.mark.browser
ADMIN = {"X-Sandbox-Admin-Token": ADMIN_TOKEN}


@pytest.fixture()
def sandbox() -> Iterator[httpx.Client]:
    from opsmerge_contracts.sandboxes import LoopbackServer

    with (
        LoopbackServer(make_app(), timeout=30) as srv,
        httpx.Client(base_url=srv.url, timeout=10) as client,
    ):
        yield client


def _block(pg: Any, tag: str, operation_id: str) -> Any:
    block = pg.locator(f"[id='operations-{tag.replace(' ', '_')}-{operation_id}']")
    block.wait_for()
    return block


def _operations(spec: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for item in spec["paths"].values():
        for op in item.values():
            if isinstance(op, dict) and "operationId" in op:
                yield op


def test_invented_operations_and_fields_carry_a_visible_badge(
    page: Any,  # noqa: F811
    sandbox: httpx.Client,
) -> None:
    spec = sandbox.get("/api/docs/openapi.json").json()
    invented = [op for op in _operations(spec) if op.get("x-invented") is True]
    plain = [op for op in _operations(spec) if not op.get("x-invented")]
    assert invented and plain
    page.goto(f"{sandbox.base_url}/api/docs")
    for op in (invented[0], invented[-1]):
        badges = _block(page, op["tags"][0], op["operationId"]).locator(".sbx-badge.sbx-invented")
        badges.first.wait_for()
        assert badges.first.is_visible() and badges.first.inner_text() == "invented"
    plain_block = _block(page, plain[0]["tags"][0], plain[0]["operationId"])
    assert plain_block.locator(".sbx-invented").count() == 0

    # a schema whose fields are invented: open it in the Schemas section
    name, schema = next(
        (n, s)
        for n, s in spec["components"]["schemas"].items()
        if any(p.get("x-invented") is True for p in s.get("properties", {}).values())
        and not s.get("x-invented")
    )
    fields = {f for f, p in schema["properties"].items() if p.get("x-invented") is True}
    title = page.locator(":scope > .json-schema-2020-12-head .json-schema-2020-12__title")
    model = page.locator("section.models article[data-json-schema-level='0']").filter(
        has=title.filter(has_text=re.compile(f"^{name}$"))
    )
    model.scroll_into_view_if_needed()
    model.locator(":scope > .json-schema-2020-12-head button.json-schema-2020-12-accordion").click()
    field = "article[data-json-schema-level='1'] > .json-schema-2020-12-head:has(.sbx-invented)"
    marked = model.locator(f"{field} .json-schema-2020-12__title")
    marked.first.wait_for()
    _shot(page, "docs-invented-badges.png")
    shown = {t.strip() for t in marked.all_inner_texts()}
    assert fields <= shown, (fields, shown)
    others = set(schema["properties"]) - fields
    assert not (others & shown), others & shown
    assert page.problems == []


def test_a_deprecated_operation_shows_its_sunset_date_then_sunset_on_the_clock(
    page: Any,  # noqa: F811
    sandbox: httpx.Client,
) -> None:
    spec = sandbox.get("/api/docs/openapi.json").json()
    op = next(op for op in _operations(spec) if op.get("deprecated") and op.get("x-sunset"))
    sunset = str(op["x-sunset"])
    page.goto(f"{sandbox.base_url}/api/docs")
    badge = _block(page, op["tags"][0], op["operationId"]).locator(".sbx-badge[class*=sbx-sunset]")
    badge.first.wait_for()
    assert badge.first.inner_text() == f"sunset {sunset}"
    assert "sbx-sunset-scheduled" in (badge.first.get_attribute("class") or "")

    at = dt.datetime.fromisoformat(sunset).replace(tzinfo=dt.UTC).timestamp()
    now = sandbox.get("/_sandbox/clock", headers=ADMIN).json()["data"]["now"]
    ahead = at - dt.datetime.fromisoformat(now.replace("Z", "+00:00")).timestamp() + 60
    moved = sandbox.post("/_sandbox/clock", json={"advance_seconds": ahead}, headers=ADMIN)
    assert moved.status_code == 200
    page.reload()
    badge = _block(page, op["tags"][0], op["operationId"]).locator(".sbx-badge.sbx-sunset")
    badge.first.wait_for()
    badge.first.scroll_into_view_if_needed()
    _shot(page, "docs-sunset-badge.png")
    assert badge.first.inner_text() == "sunset"

    page.click("#changelog-link")
    page.locator("#changelog").wait_for()
    _shot(page, "docs-changelog.png", full_page=True)
    row = page.locator(f"#changelog tr.change-sunset[data-date='{sunset}']")
    assert op["operationId"] in row.inner_text()
    assert row.locator("td.effect").inner_text() == "in effect"
    assert page.problems == []

"""The docs page in a real browser: headless Debian chromium driven by Playwright.

A hosted sandbox runs on loopback; the tests open /api/docs, authorize with the public demo key,
"try it" on the agent list and read the envelope on the page; a page served from a second
loopback origin calls the sandbox through CORS, and one from a third origin is refused. A key
chosen with "Use this key" survives a reload, the error catalogue opens as a page, and the
console shows no error and no warning on the way. The screenshots land in test-output/ for a
person to look at.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import shutil
import threading
from collections.abc import Iterator
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from opsmerge_contracts.sandboxes import LoopbackServer
from opsmerge_sandbox.app import create_app
from opsmerge_sandbox.hosted import demo_key
from opsmerge_sandbox.settings import Settings
from opsmerge_sandbox.state import SandboxState, build_state

pytestmark = pytest.mark.browser

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
OUTPUT = Path(__file__).resolve().parent.parent / "test-output"
LOOPBACK = "127.0.0.1"


# ---------------------------------------------------------------------- servers
class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextlib.contextmanager
def static_site(directory: Path) -> Iterator[str]:
    """Serve `directory` on a free loopback port; yields the origin."""
    handler = partial(_QuietHandler, directory=str(directory))
    httpd = ThreadingHTTPServer((LOOPBACK, 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://{LOOPBACK}:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


@contextlib.contextmanager
def sandbox_server(settings: Settings) -> Iterator[tuple[str, SandboxState]]:
    """The hosted sandbox under uvicorn on a free loopback port, in a thread."""
    state = build_state(settings)
    with LoopbackServer(create_app(settings, state), timeout=30) as server:
        yield server.url, state


_PARTNER_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Partner docs</title></head>
<body style="font-family: sans-serif; padding: 24px">
<h1>Partner integration guide</h1>
<p>This page lives on another origin and lists OpsMerge agents through the sandbox.</p>
<p id="result">waiting for the sandbox…</p>
<script>
fetch("SANDBOX/api/v1/agents?per_page=5", {
  headers: {"Authorization": "Bearer KEY", "X-Sandbox-Workspace": "partner-page"}
}).then(function (r) {
  return r.json().then(function (body) {
    document.getElementById("result").textContent = "status " + r.status +
      " · total " + body.data.total + " agents · first " + body.data.items[0].hostname +
      " · rate remaining " + r.headers.get("X-RateLimit-Remaining");
  });
}).catch(function (e) {
  document.getElementById("result").textContent = "blocked: " + e;
});
</script></body></html>
"""


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """Two static origins (one allowed by CORS, one not) and a hosted sandbox."""
    logging.getLogger("sandbox").setLevel(logging.WARNING)
    root = tmp_path_factory.mktemp("partner")
    with static_site(root) as allowed, static_site(root) as other:
        settings = Settings(hosted=True, cors_origins=(allowed,))
        with sandbox_server(settings) as (base, state):
            key = demo_key(state)
            assert key, "the recipe has no 'Public docs demo' key"
            page = _PARTNER_PAGE.replace("SANDBOX", base).replace("KEY", key)
            (root / "index.html").write_text(page)
            yield {"base": base, "state": state, "key": key, "allowed": allowed, "other": other}


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not Path(CHROMIUM).exists() or shutil.which(CHROMIUM) is None:
        pytest.fail(
            f"{CHROMIUM} is missing: install Debian's chromium (`make browser-deps`, or "
            "`apt-get install -y chromium`); the docs-page tests need a real browser."
        )
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("Playwright for Python is missing: `pip install -e '.[dev]'` installs it.")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    """A fresh page (own storage) that records requests, console errors and page errors.

    `problems` holds console errors and uncaught exceptions; `warnings` the console's warnings.
    Playwright reads both from the DevTools protocol, so nothing is injected into the page.
    """
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    pg = context.new_page()
    pg.seen_urls = []
    pg.problems = []
    pg.warnings = []
    pg.on("request", lambda r: pg.seen_urls.append(r.url))
    pg.on("console", partial(_record_console, pg))
    pg.on("pageerror", lambda e: pg.problems.append(str(e)))
    pg.set_default_timeout(20000)
    try:
        yield pg
    finally:
        context.close()


def _record_console(pg: Any, message: Any) -> None:
    where = message.location.get("url", "")
    if message.type == "error":
        pg.problems.append(message.text)
    elif message.type == "warning":
        pg.warnings.append(f"{message.text} ({where})")


def _shot(pg: Any, name: str, full_page: bool = False) -> Path:
    OUTPUT.mkdir(exist_ok=True)
    path = OUTPUT / name
    pg.screenshot(path=str(path), full_page=full_page)
    return path


def _open_docs(pg: Any, base: str) -> Any:
    pg.goto(f"{base}/api/docs")
    op = pg.locator("#operations-Agents-listAgents")
    op.wait_for()
    return op


def _execute(pg: Any, op: Any, **params: str) -> tuple[str, dict[str, Any]]:
    """Open an operation, fill `params`, press Execute, read the status and body on the page."""
    op.locator(".opblock-summary").first.click()
    for name, value in params.items():
        op.locator(f"tr[data-param-name='{name}'] input").fill(value)
    op.locator("button.execute").click()
    status = op.locator(".live-responses-table tbody tr.response td.response-col_status").first
    status.wait_for()
    body = op.locator(".live-responses-table .response-col_description pre.microlight").first
    return status.inner_text().strip(), json.loads(body.inner_text())


# ---------------------------------------------------------------------- the docs page
def test_docs_page_renders_from_this_origin_with_only_the_demo_key(page: Any, site: dict) -> None:
    _open_docs(page, site["base"])
    _shot(page, "docs-page.png")
    assert page.locator(".swagger-ui .info .title").inner_text().startswith("OpsMerge API")
    assert page.locator("button.authorize").is_visible()
    keys = page.locator("#sandbox-keys code.key").all_inner_texts()
    assert keys == [site["key"]]
    assert page.locator("#error-catalogue tr").count() > 20
    assert re.fullmatch(r"visitor-[0-9a-f]{16}", page.inner_text("#workspace-name"))
    foreign = [u for u in page.seen_urls if not u.startswith(site["base"] + "/")]
    assert foreign == [], f"the docs page loaded something from elsewhere: {foreign}"
    assert page.problems == []


def test_try_it_lists_agents_with_the_demo_key(page: Any, site: dict) -> None:
    op = _open_docs(page, site["base"])
    page.click("button.authorize")
    bearer = page.locator(".auth-container").filter(has_text="bearerAuth")
    bearer.locator("#auth-bearer-value").fill(site["key"])
    bearer.locator("button.authorize").click()
    bearer.locator("button.btn-done").click()

    status, body = _execute(page, op, per_page="5")
    shown = op.locator(".live-responses-table .response-col_description pre.microlight").first
    shown.evaluate("pre => { pre.scrollTop = pre.scrollHeight; }")  # bring "total" into view
    page.locator(".live-responses-table").first.scroll_into_view_if_needed()
    _shot(page, "docs-try-it-agents.png")

    assert status.startswith("200")
    assert '"items"' in shown.inner_text() and '"total"' in shown.inner_text()
    state = site["state"]
    assert body["data"]["total"] == len(state.bases["agents"])
    assert len(body["data"]["items"]) == 5 and body["data"]["per_page"] == 5
    workspace = page.inner_text("#workspace-name")
    assert workspace in state.workspaces.names()  # the visitor's own workspace, made on first use
    assert page.problems == []


def test_use_this_key_authorizes_and_a_new_workspace_starts_afresh(page: Any, site: dict) -> None:
    _open_docs(page, site["base"])
    page.click("button.use-key")
    assert "Public docs demo" in page.inner_text("#key-status")
    status, body = _execute(page, page.locator("#operations-Auth-getCurrentIdentity"))
    assert status.startswith("200")
    assert body["data"]["key"]["name"] == "Public docs demo"

    first = page.inner_text("#workspace-name")
    page.click("#new-workspace")
    second = page.inner_text("#workspace-name")
    assert second != first and second.startswith("visitor-")
    assert page.evaluate("window.sessionStorage.getItem('sbx-workspace')") == second


# ---------------------------------------------------------------------- the console, the key kept
def _identity(pg: Any) -> tuple[str, dict[str, Any]]:
    return _execute(pg, pg.locator("#operations-Auth-getCurrentIdentity"))


def test_the_console_stays_clean_through_use_this_key_try_it_reload_and_logout(
    page: Any, site: dict
) -> None:
    _open_docs(page, site["base"])
    page.click("button.use-key")
    status, _ = _identity(page)
    assert status.startswith("200")
    assert page.problems == [] and page.warnings == []
    page.reload()
    _open_docs(page, site["base"])
    page.locator("button.authorize.locked").wait_for()  # the kept key, restored
    page.click("button.authorize")
    page.locator(".auth-container button.btn-done").first.wait_for()
    bearer = page.locator(".auth-container").filter(has_text="bearerAuth")
    bearer.get_by_role("button", name="Remove authorization").click()  # "Logout"
    page.locator(".auth-container button.btn-done").first.click()
    page.locator("button.authorize.unlocked").wait_for()
    for path in ("/api/docs/changelog", "/api/docs/errors"):
        page.goto(site["base"] + path)
        page.locator("table tr").first.wait_for()
    page.wait_for_timeout(300)  # console messages arrive asynchronously
    assert page.problems == []
    assert page.warnings == []


def test_a_key_chosen_with_use_this_key_is_still_authorized_after_a_reload(
    page: Any, site: dict
) -> None:
    _open_docs(page, site["base"])
    page.click("button.use-key")
    page.reload()
    _open_docs(page, site["base"])
    status, body = _identity(page)
    assert status.startswith("200"), status
    assert body["data"]["key"]["name"] == "Public docs demo"
    assert page.problems == []


def test_the_error_catalogue_link_opens_a_page_with_every_code(page: Any, site: dict) -> None:
    _open_docs(page, site["base"])
    page.click("a[href='/api/docs/errors']")
    page.wait_for_url(site["base"] + "/api/docs/errors")
    codes = list(site["state"].spec.catalogue.codes.values())
    rows = page.locator("table#errors tr.error")
    rows.first.wait_for()
    _shot(page, "docs-error-catalogue.png", full_page=True)
    assert rows.count() == len(codes)
    first = rows.first.locator("td")
    assert first.nth(0).inner_text() == codes[0].code
    assert first.nth(1).inner_text() == str(codes[0].status)
    assert page.locator("a[href='/api/docs/errors.json']").is_visible()
    assert page.problems == [] and page.warnings == []


# ---------------------------------------------------------------------- CORS from elsewhere
def test_page_on_an_allowed_origin_calls_the_sandbox_through_cors(page: Any, site: dict) -> None:
    page.goto(site["allowed"] + "/index.html")
    result = page.locator("#result")
    page.wait_for_function("!document.getElementById('result').textContent.startsWith('wait')")
    _shot(page, "cors-allowed-origin.png")
    total = len(site["state"].bases["agents"])
    text = result.inner_text()
    assert text.startswith("status 200"), text
    assert f"total {total} agents" in text
    assert re.search(r"rate remaining \d+$", text), "X-RateLimit-Remaining was not exposed"
    assert "partner-page" in site["state"].workspaces.names()


def test_page_on_another_origin_is_refused_by_cors(page: Any, site: dict) -> None:
    page.goto(site["other"] + "/index.html")
    page.wait_for_function("!document.getElementById('result').textContent.startsWith('wait')")
    _shot(page, "cors-refused-origin.png")
    assert page.inner_text("#result").startswith("blocked")
    assert any("CORS" in problem for problem in page.problems), page.problems

"""The interactive reference at /api/docs, served entirely from the package (no CDN).

Swagger UI renders the bundled spec with the sandbox as its server, so "Try it out" calls this
sandbox. Beside it: the keys to paste (only the public demo key when hosted) with a button that
authorizes the UI with one, the visitor's own workspace, and the error catalogue. The raw spec
(YAML as bundled, and JSON) and the catalogue (a page for a browser, JSON for any other client)
are served too; every document is encoded once at startup, and a Content-Security-Policy keeps
the page to this origin. A downloaded spec names the sandbox's absolute URL as its server
(`ServedSpec`), so tools fed the file as it is can call it.

The changelog (the spec's `x-changelog`) is served as a page and as JSON, rendered per request:
whether a change is in effect depends on the sandbox clock, which tests and QA move. The docs
page reads that JSON to badge each operation with its sunset (scheduled, or in effect), and
badges what the spec marks `x-invented: true` (operations, schemas, fields and enums), so an
integrator sees what to confirm against production.
"""

from __future__ import annotations

import html
import ipaddress
import json
import re
from pathlib import Path
from typing import Any

from litestar import Request, Response, Router, get
from litestar.handlers import HTTPRouteHandler
from litestar.static_files import create_static_files_router
from openapi_ui_bundles.swagger_ui import static_path as swagger_static

from opsmerge_sandbox.changelog import ChangeEntry, parse_changelog
from opsmerge_sandbox.clock import format_iso
from opsmerge_sandbox.extensions import ExtensionError
from opsmerge_sandbox.pipeline.address import Network, parse_networks
from opsmerge_sandbox.state import SandboxState

DOCS = "/api/docs"
CHANGELOG = f"{DOCS}/changelog"
ERRORS = f"{DOCS}/errors"
WORKSPACE_PREFIX = "visitor-"

# Litestar appends "; charset=utf-8" to every text/ type itself: naming it here said it twice
_HTML = "text/html"

# Swagger UI sets inline style attributes and shows data: images; everything else is this origin.
_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'"
)

_STYLE = """
 body { margin: 0; font-family: system-ui, sans-serif; color: #1f2933; }
 header.sbx { padding: 16px 24px; background: #1b2a41; color: #fff; }
 header.sbx h1 { margin: 0 0 4px; font-size: 20px; }
 header.sbx a { color: #9fd3ff; }
 section.sbx { padding: 8px 24px; font-size: 14px; }
 section.sbx table { border-collapse: collapse; font-size: 13px; }
 section.sbx td, section.sbx th {
   border-bottom: 1px solid #ddd; padding: 4px 10px; text-align: left; }
 section.sbx button { font-size: 12px; padding: 2px 10px; cursor: pointer; }
 section.sbx p { margin: 6px 0; }
 code.key { user-select: all; }
 details { margin: 8px 0; }
 .sbx-badge { display: inline-block; margin-left: 6px; padding: 0 6px; border-radius: 8px;
   font: 600 11px/16px system-ui, sans-serif; vertical-align: middle; white-space: nowrap; }
 .sbx-invented { background: #fff1c2; color: #6b4e00; border: 1px solid #e0b43a; }
 .sbx-sunset { background: #fde2e1; color: #8a1c1c; border: 1px solid #d9534f; }
 .sbx-sunset-scheduled { background: #eef1f5; color: #3a4756; border: 1px solid #9aa7b5; }
 .json-schema-2020-12-head .sbx-titled { display: inline-flex; align-items: center; }
 table#errors td:nth-child(-n+2), table#errors td:last-child { white-space: nowrap; }
"""


def _key_rows(keys: list[dict[str, str]]) -> str:
    return "".join(
        f"<tr><td>{html.escape(k['name'])}</td>"
        f"<td><code class='key'>{html.escape(k['key'])}</code></td>"
        f"<td>{html.escape(k['access'])}</td>"
        f"<td><button type='button' class='use-key' data-key='{html.escape(k['key'], quote=True)}'>"
        "Use this key</button></td></tr>"
        for k in keys
    )


def _error_rows(state: SandboxState) -> str:
    return "".join(
        f"<tr class='error' id='{html.escape(e.code, quote=True)}'>"
        f"<td><code>{html.escape(e.code)}</code></td><td>{e.status}</td>"
        f"<td>{html.escape(e.meaning)}</td>"
        f"<td>{'OpsMerge docs' if e.documented else 'sandbox'}</td></tr>"
        for e in state.spec.catalogue.codes.values()
    )


def _workspace_note(state: SandboxState) -> str:
    settings = state.settings
    rate = state.default_rate_limit
    if settings.hosted:
        minutes = max(1, round(settings.hosted_workspace_ttl / 60))
        return (
            "<p>This is a public sandbox. Your requests use a workspace of your own: what you "
            "create, change or delete there is seen by nobody else, and the workspace is forgotten "
            f"after {minutes} minutes without use. Every key, the demo key included, may send "
            f"{rate} requests per minute.</p>"
        )
    return (
        "<p>Requests sent from this page carry <code>X-Sandbox-Workspace</code>, so your changes "
        f"stay apart from other clients of this sandbox. Keys may send {rate} requests per minute "
        "unless the recipe gives them their own limit.</p>"
    )


def _page(state: SandboxState, keys: list[dict[str, str]]) -> str:
    title = html.escape(state.spec.resolved.get("info", {}).get("title", "API"))
    which = "The public demo key" if state.settings.hosted else "Sandbox API keys"
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>{title} reference · OpsMerge Sandbox</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="icon" type="image/png" href="{DOCS}/static/favicon-32x32.png">
<link rel="stylesheet" href="{DOCS}/static/swagger-ui.css">
<style>{_STYLE}</style></head>
<body>
<header class="sbx"><h1>{title} · sandbox</h1>
<div>"Try it out" sends requests to this sandbox: pick a key below (or paste it under
 <b>Authorize</b>), open an operation and press <b>Execute</b>.
 Raw spec: <a href="{DOCS}/openapi.yaml">openapi.yaml</a>
 · <a href="{DOCS}/openapi.json">openapi.json</a>
 · <a href="{ERRORS}">error catalogue</a>
 · <a id="changelog-link" href="{CHANGELOG}">API changelog</a></div>
<div>Badges: <span class="sbx-badge sbx-invented">invented</span> where OpsMerge's public docs are
 silent (confirm it against production);
 <span class="sbx-badge sbx-sunset-scheduled">sunset on a date</span> or
 <span class="sbx-badge sbx-sunset">sunset</span> (on this sandbox's clock) for deprecated
 operations.</div></header>
<section class="sbx" id="sandbox-keys"><details open><summary><b>{which}</b></summary>
<table><tr><th>Name</th><th>Key</th><th>Access</th><th></th></tr>{_key_rows(keys)}</table>
<p id="key-status" role="status"></p></details></section>
<section class="sbx" id="sandbox-workspace">{_workspace_note(state)}
<p>Your workspace: <code id="workspace-name">…</code>
 <button type="button" id="new-workspace">Start a new workspace</button></p></section>
<section class="sbx" id="error-catalogue"><details><summary><b>Error catalogue</b>: every error
 body is <code>{{"error": {{"code", "message", "details"?}}}}</code>; branch on the code</summary>
<table><tr><th>Code</th><th>Status</th><th>Meaning</th><th>Source</th></tr>{_error_rows(state)}</table>
</details></section>
<div id="swagger-ui"></div>
<script src="{DOCS}/static/swagger-ui-bundle.js"></script>
<script src="{DOCS}/static/docs.js"></script>
</body></html>"""


_CHANGE_NAMES = {
    "added": "Added",
    "changed": "Changed",
    "deprecated": "Deprecated",
    "sunset": "Sunset",
}


def changelog_json(entries: tuple[ChangeEntry, ...], now: float) -> dict[str, object]:
    """The changelog for clients: newest first, each entry in effect or not on the sandbox clock."""
    items = [e.as_dict(now) for e in entries]
    return {"data": {"items": items, "total": len(items), "now": format_iso(now)}}


def _changelog_rows(entries: tuple[ChangeEntry, ...], now: float) -> str:
    rows = []
    for e in entries:
        ops = "<br>".join(
            f"<code>{html.escape(o.method)} {html.escape(o.path)}</code> "
            f"(<code>{html.escape(o.operation_id)}</code>)"
            for o in e.operations
        )
        badges = " <span class='sbx-badge sbx-invented'>invented</span>" if e.invented else ""
        effect = "in effect" if e.in_effect(now) else "scheduled"
        rows.append(
            f"<tr class='change change-{e.change}' data-date='{e.date}'>"
            f"<td>{e.date}</td><td>{_CHANGE_NAMES[e.change]}{badges}</td><td>{ops}</td>"
            f"<td>{html.escape(e.summary)}</td><td class='effect'>{effect}</td></tr>"
        )
    return "".join(rows)


def _changelog_page(state: SandboxState, entries: tuple[ChangeEntry, ...], now: float) -> str:
    title = html.escape(state.spec.resolved.get("info", {}).get("title", "API"))
    empty = "" if entries else "<p>No changes are recorded.</p>"
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>{title} changelog · OpsMerge Sandbox</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="icon" type="image/png" href="{DOCS}/static/favicon-32x32.png">
<style>{_STYLE}</style></head>
<body>
<header class="sbx"><h1>{title} changelog</h1>
<div>Added, changed, deprecated and sunset operations, newest first, from the spec's
 <code>x-changelog</code>. <a href="{DOCS}">Back to the reference</a>
 · <a href="{CHANGELOG}.json">as JSON</a></div></header>
<section class="sbx"><p>The sandbox clock shows <time id="sandbox-now">{format_iso(now)}</time>:
 a change dated on or before it is in effect here (a sunset operation answers
 <code>410 OPERATION_SUNSET</code>).
 <span class="sbx-badge sbx-invented">invented</span> marks history the sandbox made up where
 OpsMerge publishes none.</p>{empty}
<table id="changelog"><tr><th>Date</th><th>Change</th><th>Operations</th><th>Summary</th>
<th>Here</th></tr>{_changelog_rows(entries, now)}</table></section>
</body></html>"""


def _errors_page(state: SandboxState) -> str:
    """The error catalogue for a person: the same codes as the JSON, in a table."""
    title = html.escape(state.spec.resolved.get("info", {}).get("title", "API"))
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>{title} error codes · OpsMerge Sandbox</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="icon" type="image/png" href="{DOCS}/static/favicon-32x32.png">
<style>{_STYLE}</style></head>
<body>
<header class="sbx"><h1>{title} error codes</h1>
<div>Every error body is <code>{{"error": {{"code", "message", "details"?}}}}</code>: branch on
 the code, show the message. <a href="{DOCS}">Back to the reference</a>
 · <a href="{ERRORS}.json">as JSON</a></div></header>
<section class="sbx"><p><b>Source</b> says whether OpsMerge documents the code or the sandbox
 adds it.</p>
<table id="errors"><tr><th>Code</th><th>Status</th><th>Meaning</th><th>Source</th></tr>
{_error_rows(state)}</table></section>
</body></html>"""


_DOCS_JS = """
(function () {
  var STORE = "sbx-workspace";
  function newName() {
    var bytes = new Uint8Array(8);
    window.crypto.getRandomValues(bytes);
    return "__PREFIX__" + Array.prototype.map.call(bytes, function (b) {
      return ("0" + b.toString(16)).slice(-2);
    }).join("");
  }
  function workspace(fresh) {
    var name = null;
    try { name = fresh ? null : window.sessionStorage.getItem(STORE); } catch (e) {}
    if (!name) {
      name = newName();
      try { window.sessionStorage.setItem(STORE, name); } catch (e) {}
    }
    document.getElementById("workspace-name").textContent = name;
    return name;
  }
  var current = workspace(false);

  // a badge beside every schema, field and enum the spec marks x-invented: true
  function InventedSchemaBadges() {
    return {
      wrapComponents: {
        JSONSchema202012KeywordTitle: function (Original, system) {
          return function (props) {
            var h = system.React.createElement;
            var shown = h(Original, props);
            var schema = props.schema;
            if (!schema || typeof schema !== "object" || schema["x-invented"] !== true) {
              return shown;
            }
            return h("span", {className: "sbx-titled"}, shown, h("span", {
              className: "sbx-badge sbx-invented",
              title: "Invented by the sandbox where OpsMerge's public docs are silent",
            }, "invented"));
          };
        },
      },
    };
  }

  var invented = {};  // operationId -> true
  var sunsets = {};  // operationId -> {date, in_effect}
  function badge(cls, text, title) {
    var span = document.createElement("span");
    span.className = "sbx-badge " + cls;
    span.textContent = text;
    span.title = title;
    return span;
  }
  function decorate() {
    Array.prototype.forEach.call(document.querySelectorAll(".opblock"), function (block) {
      var id = block.id || "";
      var opId = id.slice(id.lastIndexOf("-") + 1);
      var summary = block.querySelector(".opblock-summary-path-description-wrapper") ||
        block.querySelector(".opblock-summary");
      if (!opId || !summary || summary.querySelector(".sbx-badges")) { return; }
      var holder = document.createElement("span");
      holder.className = "sbx-badges";
      if (invented[opId]) {
        holder.appendChild(badge("sbx-invented", "invented",
          "Invented by the sandbox where OpsMerge's public docs are silent"));
      }
      var sunset = sunsets[opId];
      if (sunset && sunset.in_effect) {
        holder.appendChild(badge("sbx-sunset", "sunset",
          "Sunset on " + sunset.date + ": it answers 410 OPERATION_SUNSET"));
      } else if (sunset) {
        holder.appendChild(badge("sbx-sunset-scheduled", "sunset " + sunset.date,
          "Deprecated; stops working on " + sunset.date + " (sandbox clock)"));
      }
      if (holder.childNodes.length) { summary.appendChild(holder); }
    });
  }
  function loaded() {
    var spec = window.ui.specSelectors.specJson().toJS();
    Object.keys(spec.paths || {}).forEach(function (path) {
      var item = spec.paths[path];
      Object.keys(item).forEach(function (method) {
        var op = item[method];
        if (op && op.operationId && op["x-invented"] === true) { invented[op.operationId] = true; }
      });
    });
    fetch("__DOCS__/changelog.json").then(function (r) { return r.json(); }).then(function (body) {
      body.data.items.forEach(function (entry) {
        if (entry.change !== "sunset") { return; }
        entry.operations.forEach(function (op) {
          sunsets[op.operation_id] = {date: entry.date, in_effect: entry.in_effect};
        });
      });
      document.querySelectorAll(".sbx-badges").forEach(function (el) { el.remove(); });
      decorate();
    });
    decorate();
    new MutationObserver(decorate).observe(document.getElementById("swagger-ui"),
      {childList: true, subtree: true});
  }

  window.ui = SwaggerUIBundle({
    url: "__DOCS__/openapi.json",
    dom_id: "#swagger-ui",
    plugins: [InventedSchemaBadges],
    onComplete: loaded,
    deepLinking: true,
    tryItOutEnabled: true,
    persistAuthorization: true,
    displayRequestDuration: true,
    requestInterceptor: function (req) {
      if (req.url.indexOf("__DOCS__/") === -1) {
        req.headers["X-Sandbox-Workspace"] = current;
      }
      return req;
    },
  });

  document.getElementById("new-workspace").addEventListener("click", function () {
    current = workspace(true);
  });
  // Authorize as the dialog does: authorizeWithPersistOption keeps the key across reloads
  // (persistAuthorization), and the scheme stays the Immutable map the UI's persistence code
  // reads. preauthorizeApiKey did neither: it passed a plain object, which that code cannot read
  // (a console error), and nothing was kept.
  function useKey(value) {
    var schemes = window.ui.specSelectors.specJson().getIn(["components", "securitySchemes"]);
    var name = schemes && schemes.findKey(function (scheme) {
      return scheme.get("type") === "http" &&
        String(scheme.get("scheme")).toLowerCase() === "bearer";
    });
    if (!name) { return false; }
    var auth = {};
    auth[name] = {name: name, schema: schemes.get(name), value: value};
    window.ui.authActions.authorizeWithPersistOption(auth);
    return true;
  }
  Array.prototype.forEach.call(document.querySelectorAll("button.use-key"), function (button) {
    button.addEventListener("click", function () {
      var row = button.closest("tr");
      document.getElementById("key-status").textContent = useKey(button.getAttribute("data-key"))
        ? "Authorized with \\u201c" + row.cells[0].textContent + "\\u201d: try an operation below."
        : "The reference is still loading: try again in a moment.";
    });
  });
})();
""".replace("__DOCS__", DOCS).replace("__PREFIX__", WORKSPACE_PREFIX)


# a host name or bracketed IPv6 address, then an optional port: nothing a URL could be bent with
_SANE_HOST = re.compile(
    r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*"
    r"|\[[0-9A-Fa-f:.]{2,45}\])(?::(?P<port>[0-9]{1,5}))?"
)
# the served spec names the address it was fetched from
_SPEC_HEADERS = {"vary": "Host, X-Forwarded-Host, X-Forwarded-Proto"}
_SANDBOX_SERVER = re.compile(
    rb"^- \{url: (?P<url>/[^,}\s]*), description: This sandbox\}$", re.MULTILINE
)


def sane_host(value: str | None) -> str | None:
    """`value` when it is a plain host[:port], else None."""
    if not value or len(value) > 255:
        return None
    found = _SANE_HOST.fullmatch(value)
    if found is None or (found["port"] is not None and not 0 < int(found["port"]) < 65536):
        return None
    return value


def _within(address: str, networks: tuple[Network, ...]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in net for net in networks)


class ServedSpec:
    """The spec as downloaded: its first server is the sandbox's own absolute URL when known.

    A tool fed a downloaded spec (Postman, newman, a code generator) cannot resolve a relative
    server. The origin is the request's: `http://` and its Host header when a client talks to
    the sandbox directly; behind a proxy named with `--trusted-proxy`, the proxy's
    X-Forwarded-Proto and X-Forwarded-Host (or Host). A hosted sandbox reached by anything else
    sits behind a proxy it was not told about, so the scheme the visitor used is unknown; then, and
    whenever the host is not a plain host[:port], the bundled relative URL is served. Both
    documents are encoded once; a request only splices its URL in.
    """

    def __init__(
        self,
        raw: dict[str, Any],
        yaml_bytes: bytes,
        base_path: str,
        hosted: bool,
        trusted_proxies: tuple[Network, ...],
    ) -> None:
        self.base_path = base_path
        self.hosted = hosted
        self.trusted = trusted_proxies
        marker = "\x00sandbox-server\x00"
        served = dict(raw)
        served["servers"] = [{"url": marker, "description": "This sandbox"}]
        head, _, tail = json.dumps(served).partition(json.dumps(marker))
        self._json = (head.encode(), tail.encode())
        self._relative_json = self._json[0] + json.dumps(base_path or "/").encode() + self._json[1]
        self._yaml = yaml_bytes
        self._yaml_server = _SANDBOX_SERVER.search(yaml_bytes)

    def origin(self, request: Request) -> str | None:
        """`scheme://host[:port]` the client reached the sandbox at, or None when unknown."""
        headers = request.headers
        client = request.scope.get("client")
        peer = str(client[0]) if client else ""
        if self.trusted and _within(peer, self.trusted):
            proto = (headers.get("x-forwarded-proto") or "").split(",")[0].strip().lower()
            forwarded = (headers.get("x-forwarded-host") or "").split(",")[0].strip()
            host = sane_host(forwarded or headers.get("host"))
            return f"{proto}://{host}" if proto in ("http", "https") and host else None
        if self.hosted:
            return None
        host = sane_host(headers.get("host"))
        return f"http://{host}" if host else None

    def json(self, origin: str | None) -> bytes:
        if origin is None:
            return self._relative_json
        return self._json[0] + json.dumps(origin + self.base_path).encode() + self._json[1]

    def yaml(self, origin: str | None) -> bytes:
        found = self._yaml_server
        if origin is None or found is None:
            return self._yaml
        url = f"'{origin}{self.base_path}'".encode()
        return self._yaml[: found.start("url")] + url + self._yaml[found.end("url") :]


def docs_routes(
    state: SandboxState, shown_keys: list[dict[str, str]]
) -> list[HTTPRouteHandler | Router]:
    """Routes for the docs; documents are encoded here, once."""
    spec_path = Path(state.spec.path)
    served_spec = ServedSpec(
        state.spec.raw,
        spec_path.read_bytes(),
        state.spec.base_path,
        hosted=state.settings.hosted,
        trusted_proxies=parse_networks(state.settings.trusted_proxies),
    )
    errors_bytes = json.dumps({"data": {"items": state.spec.catalogue.as_list()}}).encode()
    errors_page = _errors_page(state).encode()
    page = _page(state, shown_keys).encode()
    js = _DOCS_JS.encode()
    page_headers = {"content-security-policy": _CSP, "x-content-type-options": "nosniff"}
    errors_page_headers = {**page_headers, "vary": "Accept"}
    entries, problems = parse_changelog(state.spec.raw)
    if problems:
        raise ExtensionError(problems)
    clock = state.clock

    @get(DOCS, include_in_schema=False, sync_to_thread=False)
    def docs_page() -> Response[bytes]:
        return Response(page, media_type=_HTML, headers=page_headers)

    @get(f"{DOCS}/static/docs.js", include_in_schema=False, sync_to_thread=False)
    def docs_js() -> Response[bytes]:
        return Response(js, media_type="text/javascript")

    @get(f"{DOCS}/openapi.yaml", include_in_schema=False, sync_to_thread=False)
    def spec_yaml(request: Request) -> Response[bytes]:
        body = served_spec.yaml(served_spec.origin(request))
        return Response(body, media_type="application/yaml", headers=_SPEC_HEADERS)

    @get(f"{DOCS}/openapi.json", include_in_schema=False, sync_to_thread=False)
    def spec_json(request: Request) -> Response[bytes]:
        body = served_spec.json(served_spec.origin(request))
        return Response(body, media_type="application/json", headers=_SPEC_HEADERS)

    @get(ERRORS, include_in_schema=False, sync_to_thread=False)
    def errors(request: Request) -> Response[bytes]:
        """A page for a browser (its Accept prefers HTML); JSON for every other client, as ever."""
        wanted = request.accept.best_match(["application/json", "text/html"], "application/json")
        if wanted == "text/html":
            return Response(errors_page, media_type=_HTML, headers=errors_page_headers)
        return Response(errors_bytes, media_type="application/json", headers={"vary": "Accept"})

    @get(f"{ERRORS}.json", include_in_schema=False, sync_to_thread=False)
    def errors_as_json() -> Response[bytes]:
        return Response(errors_bytes, media_type="application/json")

    def changelog_answer(as_json: bool) -> Response[bytes]:
        now = clock.now()  # per request: whether a change is in effect follows the sandbox clock
        if as_json:
            body = json.dumps(changelog_json(entries, now)).encode()
            return Response(body, media_type="application/json", headers={"vary": "Accept"})
        page = _changelog_page(state, entries, now).encode()
        headers = {**page_headers, "vary": "Accept"}
        return Response(page, media_type=_HTML, headers=headers)

    @get(CHANGELOG, include_in_schema=False, sync_to_thread=False)
    def changelog(request: Request) -> Response[bytes]:
        """HTML for browsers; JSON for a client whose Accept prefers application/json."""
        wanted = request.accept.best_match(["text/html", "application/json"], default="text/html")
        return changelog_answer(wanted == "application/json")

    @get(f"{CHANGELOG}.json", include_in_schema=False, sync_to_thread=False)
    def changelog_as_json() -> Response[bytes]:
        return changelog_answer(True)

    static = create_static_files_router(
        path=f"{DOCS}/static", directories=[swagger_static], include_in_schema=False
    )
    return [
        *(docs_page, docs_js, spec_yaml, spec_json, errors, errors_as_json),
        *(changelog, changelog_as_json, static),
    ]

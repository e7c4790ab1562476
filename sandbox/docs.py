"""The interactive reference at /api/docs, served entirely from the package (no CDN).

Swagger UI renders the bundled spec with the sandbox as its server, so "Try it out" calls this
sandbox. Beside it: the keys to paste (only the public demo key when hosted) with a button that
authorizes the UI with one, the visitor's own workspace, and the error catalogue. The raw spec
(YAML as bundled, and JSON) and the catalogue are served too; every document is encoded once at
startup, and a Content-Security-Policy keeps the page to this origin.
"""

from __future__ import annotations

import html
import json
from pathlib import Path

from litestar import Response, Router, get
from litestar.handlers import HTTPRouteHandler
from litestar.static_files import create_static_files_router
from openapi_ui_bundles.swagger_ui import static_path as swagger_static

from sandbox.state import SandboxState

DOCS = "/api/docs"
WORKSPACE_PREFIX = "visitor-"

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
        f"<tr><td><code>{html.escape(e.code)}</code></td><td>{e.status}</td>"
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
 · <a href="{DOCS}/errors">error catalogue (JSON)</a></div></header>
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

  window.ui = SwaggerUIBundle({
    url: "__DOCS__/openapi.json",
    dom_id: "#swagger-ui",
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
  Array.prototype.forEach.call(document.querySelectorAll("button.use-key"), function (button) {
    button.addEventListener("click", function () {
      window.ui.preauthorizeApiKey("bearerAuth", button.getAttribute("data-key"));
      var row = button.closest("tr");
      document.getElementById("key-status").textContent =
        "Authorized with \\u201c" + row.cells[0].textContent + "\\u201d: try an operation below.";
    });
  });
})();
""".replace("__DOCS__", DOCS).replace("__PREFIX__", WORKSPACE_PREFIX)


def docs_routes(
    state: SandboxState, shown_keys: list[dict[str, str]]
) -> list[HTTPRouteHandler | Router]:
    """Routes for the docs; documents are encoded here, once."""
    spec_path = Path(state.spec.path)
    yaml_bytes = spec_path.read_bytes()
    served = dict(state.spec.raw)
    served["servers"] = [{"url": state.spec.base_path or "/", "description": "This sandbox"}]
    json_bytes = json.dumps(served).encode()
    errors_bytes = json.dumps({"data": {"items": state.spec.catalogue.as_list()}}).encode()
    page = _page(state, shown_keys).encode()
    js = _DOCS_JS.encode()
    page_headers = {"content-security-policy": _CSP, "x-content-type-options": "nosniff"}

    @get(DOCS, include_in_schema=False, sync_to_thread=False)
    def docs_page() -> Response[bytes]:
        return Response(page, media_type="text/html; charset=utf-8", headers=page_headers)

    @get(f"{DOCS}/static/docs.js", include_in_schema=False, sync_to_thread=False)
    def docs_js() -> Response[bytes]:
        return Response(js, media_type="application/javascript")

    @get(f"{DOCS}/openapi.yaml", include_in_schema=False, sync_to_thread=False)
    def spec_yaml() -> Response[bytes]:
        return Response(yaml_bytes, media_type="application/yaml")

    @get(f"{DOCS}/openapi.json", include_in_schema=False, sync_to_thread=False)
    def spec_json() -> Response[bytes]:
        return Response(json_bytes, media_type="application/json")

    @get(f"{DOCS}/errors", include_in_schema=False, sync_to_thread=False)
    def errors() -> Response[bytes]:
        return Response(errors_bytes, media_type="application/json")

    static = create_static_files_router(
        path=f"{DOCS}/static", directories=[swagger_static], include_in_schema=False
    )
    return [docs_page, docs_js, spec_yaml, spec_json, errors, static]

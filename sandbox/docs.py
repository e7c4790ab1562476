"""The interactive reference at /api/docs, served entirely from the package (no CDN).

Swagger UI renders the bundled spec with the sandbox as its server, so "try it" calls this
sandbox. The raw spec (YAML as bundled, and JSON) and the error catalogue are served beside it;
every document is encoded once at startup.
"""

from __future__ import annotations

import html
import json
from pathlib import Path

from litestar import Response, get
from litestar.handlers import HTTPRouteHandler
from litestar.static_files import create_static_files_router
from openapi_ui_bundles.swagger_ui import static_path as swagger_static

from sandbox.state import SandboxState

DOCS = "/api/docs"


def _page(state: SandboxState, keys: list[dict[str, str]]) -> str:
    rows = "".join(
        f"<tr><td>{html.escape(k['name'])}</td><td><code class='key'>{html.escape(k['key'])}</code></td>"
        f"<td>{html.escape(k['access'])}</td></tr>"
        for k in keys
    )
    errors = "".join(
        f"<tr><td><code>{html.escape(e.code)}</code></td><td>{e.status}</td>"
        f"<td>{html.escape(e.meaning)}</td></tr>"
        for e in state.spec.catalogue.codes.values()
    )
    title = html.escape(state.spec.resolved.get("info", {}).get("title", "API"))
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>{title} reference · OpsMerge Sandbox</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="stylesheet" href="{DOCS}/static/swagger-ui.css">
<style>
 body {{ margin: 0; font-family: system-ui, sans-serif; }}
 header.sbx {{ padding: 16px 24px; background: #1b2a41; color: #fff; }}
 header.sbx h1 {{ margin: 0 0 4px; font-size: 20px; }}
 header.sbx a {{ color: #9fd3ff; }}
 section.sbx {{ padding: 8px 24px; }}
 section.sbx table {{ border-collapse: collapse; font-size: 13px; }}
 section.sbx td, section.sbx th {{ border-bottom: 1px solid #ddd; padding: 4px 10px; text-align: left; }}
 details {{ margin: 8px 0; }}
</style></head>
<body>
<header class="sbx"><h1>{title} · sandbox</h1>
<div>Requests from "Try it out" go to this sandbox. Click <b>Authorize</b> and paste a key below.
 Raw spec: <a href="{DOCS}/openapi.yaml">openapi.yaml</a> · <a href="{DOCS}/openapi.json">openapi.json</a>
 · <a href="{DOCS}/errors">error catalogue (JSON)</a></div></header>
<section class="sbx" id="sandbox-keys"><details open><summary><b>Sandbox API keys</b></summary>
<table><tr><th>Name</th><th>Key</th><th>Access</th></tr>{rows}</table></details></section>
<section class="sbx" id="error-catalogue"><details><summary><b>Error catalogue</b>: branch on the code</summary>
<table><tr><th>Code</th><th>Status</th><th>Meaning</th></tr>{errors}</table></details></section>
<div id="swagger-ui"></div>
<script src="{DOCS}/static/swagger-ui-bundle.js"></script>
<script src="{DOCS}/static/docs.js"></script>
</body></html>"""


_DOCS_JS = (
    """
window.ui = SwaggerUIBundle({
  url: "%s/openapi.json",
  dom_id: "#swagger-ui",
  deepLinking: true,
  tryItOutEnabled: true,
  persistAuthorization: true,
  displayRequestDuration: true,
  requestInterceptor: function (req) {
    try {
      var ws = window.sessionStorage.getItem("sbx-workspace");
      if (!ws) {
        ws = "visitor-" + Math.random().toString(36).slice(2, 12);
        window.sessionStorage.setItem("sbx-workspace", ws);
      }
      req.headers["X-Sandbox-Workspace"] = ws;
    } catch (e) {}
    return req;
  },
});
"""
    % DOCS
)


def docs_routes(state: SandboxState, shown_keys: list[dict[str, str]]) -> list[HTTPRouteHandler]:
    """Routes for the docs; documents are encoded here, once."""
    spec_path = Path(state.spec.path)
    yaml_bytes = spec_path.read_bytes()
    served = dict(state.spec.raw)
    served["servers"] = [{"url": state.spec.base_path or "/", "description": "This sandbox"}]
    json_bytes = json.dumps(served).encode()
    errors_bytes = json.dumps({"data": {"items": state.spec.catalogue.as_list()}}).encode()
    page = _page(state, shown_keys).encode()
    js = _DOCS_JS.encode()

    @get(DOCS, include_in_schema=False, sync_to_thread=False)
    def docs_page() -> Response[bytes]:
        return Response(page, media_type="text/html; charset=utf-8")

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

"""The control API's view of the rule engine (admin token, as every /_sandbox endpoint):

GET    /_sandbox/outbox      the emails send_email actions wrote, one workspace's
DELETE /_sandbox/outbox      empty that outbox
GET    /_sandbox/webhooks    the delivery queue: waiting, retries due, overflows, allowed hosts
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from litestar import Request

from opsmerge_sandbox.pipeline.workspace_name import WORKSPACE_HEADER, workspace_name

if TYPE_CHECKING:
    from opsmerge_sandbox.control_api import AdminApi
    from opsmerge_sandbox.events.engine import RuleEngine


def add_event_endpoints(api: AdminApi, engine: RuleEngine) -> None:
    def _workspace(request: Request) -> str:
        given = workspace_name(request.query_params.get("workspace"), "query", "workspace")
        if given is None:
            given = workspace_name(request.headers.get(WORKSPACE_HEADER))
        return given or "default"

    def outbox(request: Request, _: Any) -> tuple[int, Any]:
        name = _workspace(request)
        items = engine.outbox.read(name)
        return 200, {"workspace": name, "items": items, "total": len(items)}

    def clear_outbox(request: Request, _: Any) -> tuple[int, Any]:
        name = _workspace(request)
        return 200, {"workspace": name, "cleared": engine.outbox.clear(name)}

    def queue(request: Request, _: Any) -> tuple[int, Any]:
        return 200, engine.deliveries.view()

    api.add("GET", "/outbox", outbox)
    api.add("DELETE", "/outbox", clear_outbox)
    api.add("GET", "/webhooks", queue)

"""The world checker on a live workspace, on the control API:

    GET /_sandbox/workspaces/{name}/invariants   violations of the invariants writes keep

A contract run (or a demo) writes records through the API; this judges every record a client
created or changed in the workspace by the spec's `x-invariants` marked `on-write: refuse` or
`derive`, on the workspace's own clock. `seeded-only` invariants (values a client supplies, like
its own names and addresses) are not judged here; `fixtures check` judges them on the seeded world.
"""

from __future__ import annotations

import time
from typing import Any

from litestar import Request

from opsmerge_sandbox.control_api import AdminApi
from opsmerge_sandbox.errors import ApiError
from opsmerge_sandbox.pipeline.workspace_name import workspace_name
from opsmerge_sandbox.state import SandboxState
from opsmerge_sandbox.world.conditions import Env
from opsmerge_sandbox.world.invariants import (
    Invariant,
    Violation,
    check_written,
    compile_invariants,
)

_SHOWN_MAX = 1000  # violations listed in one answer; `total` counts them all


def write_invariants(state: SandboxState) -> list[Invariant]:
    """The invariants records written through the API keep (compiled once per app)."""
    schemas = {n: c.schema for n, c in state.spec.collections.items()}
    return [i for i in compile_invariants(schemas) if i.holds_for_writes]


def judge_workspace(
    state: SandboxState, name: str, invariants: list[Invariant] | None = None
) -> tuple[dict[str, int], list[Violation]]:
    """(records judged per collection, violations) of a workspace's written records."""
    ws = state.workspaces.existing(name)
    if ws is None:
        raise ApiError("NOT_FOUND", f"No workspace named {name!r} holds records yet.")
    schemas = {n: c.schema for n, c in state.spec.collections.items()}
    written = {n: ws.view(n).written() for n in schemas}
    now = int(time.time() + state.clock.offset_of(name))
    env = Env(ws.get, now, dict(state.recipe.organisation), schemas)

    def everything(collection: str) -> list[dict[str, Any]]:
        return ws.view(collection).query([], None, "id", False)

    invs = write_invariants(state) if invariants is None else invariants
    found = check_written(invs, written, everything, env)
    return {n: len(r) for n, r in written.items() if r}, found


def add_invariant_endpoints(api: AdminApi, state: SandboxState) -> None:
    invariants = write_invariants(state)

    def judged(request: Request, _: Any) -> tuple[int, Any]:
        name = workspace_name(request.path_params["name"], "path", "name")
        assert name is not None
        counts, found = judge_workspace(state, name, invariants)
        return 200, {
            "workspace": name,
            "judged": counts,
            "total": len(found),
            "violations": [
                {
                    "collection": v.collection,
                    "id": v.record_id,
                    "invariant": v.invariant,
                    "class": v.klass,
                    "detail": v.detail,
                }
                for v in found[:_SHOWN_MAX]
            ],
        }

    api.add("GET", "/workspaces/{name:str}/invariants", judged)

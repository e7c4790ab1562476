"""Control endpoints for faults, on the same AdminApi (token, envelope, admin.yaml schemas).

    POST   /_sandbox/faults                    add a rule or a named scenario
    GET    /_sandbox/faults                    list rules with matched and fired counts
    DELETE /_sandbox/faults                    remove them all (or one workspace's)
    DELETE /_sandbox/faults/{id}               remove one
    GET    /_sandbox/faults/scenarios          the named scenarios
    POST   /_sandbox/workspaces/{name}/reset   one workspace alone: records, rate buckets, rules

The X-Sandbox-Workspace header scopes these calls the way it scopes API calls: a CI job that sends
it adds, lists and clears only its own workspace's rules.
"""

from __future__ import annotations

from typing import Any

from litestar import Request

from opsmerge_sandbox.control_api import AdminApi, admin_validator
from opsmerge_sandbox.errors import ApiError, Detail
from opsmerge_sandbox.faults.presets import SCENARIOS, catalogue, expand
from opsmerge_sandbox.faults.rules import Context, Rule, parse_rule
from opsmerge_sandbox.pipeline.validate import schema_details
from opsmerge_sandbox.pipeline.workspace_name import WORKSPACE_HEADER, workspace_name
from opsmerge_sandbox.state import SandboxState
from opsmerge_sandbox.stores import FaultRules, RateBuckets


def check_schema(schema_name: str, data: Any, prefix: str = "") -> None:
    """A 400 naming the first field that breaks the admin.yaml schema."""
    details = schema_details(admin_validator(schema_name), data, "body")
    if details:
        details = [
            Detail(d.location, f"{prefix}{d.field}" if prefix else d.field, d.message)
            for d in details
        ]
        first = details[0]
        raise ApiError(
            "VALIDATION_ERROR",
            f"Invalid fault rule: {first.field or '(body)'}: {first.message}.",
            details,
        )


def context(state: SandboxState, workspace: str | None) -> Context:
    spec = state.spec
    return Context(
        clock=state.clock,
        operation_ids=frozenset(op.operation_id for op in spec.operations),
        methods=frozenset(op.method for op in spec.operations),
        keys=state.keys,
        default_seed=state.recipe.seed,
        default_workspace=workspace,
    )


def add_rule(
    state: SandboxState, registry: FaultRules, body: Any, workspace: str | None
) -> Rule:
    """Check a rule or scenario request, build it and register it (HTTP and YAML alike).

    This is the one place a fault request is validated: the HTTP endpoint hands its body here
    unchecked, so a POST is checked against the schema once, as a rule in a file is.
    """
    check_schema("FaultRequest", body)
    registry.ensure_room()  # before a scenario mints anything
    ctx = context(state, workspace)
    if body.get("scenario") is not None:
        check_schema(SCENARIOS[body["scenario"]].params_schema, body.get("params") or {}, "params.")
        rule = expand(body, ctx, "")
    else:
        if "params" in body:
            raise ApiError(
                "VALIDATION_ERROR",
                "Invalid fault rule: params: only a scenario takes params.",
                [Detail("body", "params", "only a scenario takes params")],
            )
        rule = parse_rule(body, ctx, "")
    rule.id = registry.new_id()  # only a valid rule takes a number
    return registry.add(rule)


def clear_buckets(limiter: RateBuckets, workspace: str) -> int:
    """Empty the rate buckets of one workspace only."""
    return limiter.reset(workspace)


def _scope(request: Request) -> str | None:
    """The workspace a faults call is about: ?workspace=, else the X-Sandbox-Workspace header."""
    query = workspace_name(request.query_params.get("workspace"), "query", "workspace")
    header = workspace_name(request.headers.get(WORKSPACE_HEADER))
    return query or header


def add_fault_endpoints(api: AdminApi, state: SandboxState, registry: FaultRules) -> None:
    async def add(request: Request, _: Any) -> tuple[int, Any]:
        body = await api.body(request, "FaultRequest", required=True, checked=False)
        rule = add_rule(state, registry, body, _scope(request))
        view = rule.view(state.clock.now())
        if rule.key is not None:
            view["key"]["key"] = rule.key.secret  # shown once, like a minted key
        return 201, view

    def listed(request: Request, _: Any) -> tuple[int, Any]:
        items = registry.listed(_scope(request))
        return 200, {"items": items, "total": len(items)}

    def clear(request: Request, _: Any) -> tuple[int, Any]:
        workspace = _scope(request)
        removed = registry.clear(workspace)
        return 200, {"removed": len(removed), "workspace": workspace or "*"}

    def remove(request: Request, _: Any) -> tuple[int, Any]:
        rule = registry.remove(request.path_params["rule_id"])
        if rule is None:
            raise ApiError("NOT_FOUND", "No fault rule with that id.")
        return 200, rule.view(state.clock.now())

    def scenarios(request: Request, _: Any) -> tuple[int, Any]:
        return 200, {"items": catalogue()}

    async def reset_workspace(request: Request, _: Any) -> tuple[int, Any]:
        name = workspace_name(request.path_params["name"], "path", "name")
        assert name is not None
        await state.workspaces.reset(name)  # answered once the reset is durable
        state.clock.reset(name)  # the workspace's own clock goes back with its records
        if state.events is not None:  # its queued webhooks and outbox go too
            state.events.forget(name)
        buckets = clear_buckets(state.limiter, name)
        removed = registry.clear(name)
        return 200, {"reset": True, "workspace": name, "buckets": buckets, "faults": len(removed)}

    api.add("POST", "/faults", add)
    api.add("GET", "/faults", listed)
    api.add("DELETE", "/faults", clear)
    api.add("GET", "/faults/scenarios", scenarios)
    api.add("DELETE", "/faults/{rule_id:str}", remove)
    api.add("POST", "/workspaces/{name:str}/reset", reset_workspace)

"""The spec's examples work against the default world, so a generated request's first Send succeeds.

Every path parameter, query parameter and request body has an example; each operation's examples,
sent together to a freshly reset sandbox with a full-access key, get a success (a list with
items). Two kinds of answer are documented instead: a session-only operation refuses every API
key (403 API_KEY_FORBIDDEN) and a request with no credential at all (401 AUTH_REQUIRED); a delete
whose example record is still referenced, or an action whose example record's state holds it back
(a contract that has billed is not voided), gets its 409, and its description says so.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import jsonschema_rs
import pytest
from litestar.testing import TestClient

from opsmerge_sandbox.spec import Operation, load_spec, strip_extensions
from tests.conftest import ADMIN_TOKEN, make_app

SPEC = load_spec()
OWNER_KEY = "om_sbx_owner_full_pG5aQxpYERgXwi9iPGPE2lWARD"
OPS = {op.operation_id: op for op in SPEC.operations}


def _resolved(op: Operation) -> dict[str, Any]:
    found: dict[str, Any] = SPEC.resolved["paths"][op.path][op.method.lower()]
    return found


def _params(op: Operation) -> list[dict[str, Any]]:
    item = SPEC.resolved["paths"][op.path]
    return [*item.get("parameters", []), *_resolved(op).get("parameters", [])]


def _body_example(op: Operation) -> Any:
    body = _resolved(op).get("requestBody")
    return body["content"]["application/json"].get("example", ...) if body else None


def _example(param: dict[str, Any]) -> Any:
    """A path parameter's `example`; a query parameter's first schema `examples` entry, which
    Postman's Example mode reads and Swagger UI does not prefill (a prefilled filter would narrow
    every list an integrator tries out)."""
    if param["in"] == "query":
        return param["schema"]["examples"][0]
    return param["example"]


def _request(op: Operation) -> tuple[str, dict[str, str], Any]:
    path = SPEC.base_path + op.path
    query: dict[str, str] = {}
    for p in _params(op):
        value = _example(p)
        if p["in"] == "path":
            path = path.replace("{" + p["name"] + "}", str(value))
        elif p["in"] == "query":
            query[p["name"]] = json.dumps(value) if isinstance(value, bool) else str(value)
    return path, query, _body_example(op)


@pytest.fixture(scope="module")
def client() -> Iterator[TestClient[Any]]:
    with TestClient(make_app()) as c:
        yield c


def _send(client: TestClient[Any], op: Operation, headers: dict[str, str]) -> Any:
    reset = client.post("/_sandbox/reset", headers={"X-Sandbox-Admin-Token": ADMIN_TOKEN}, json={})
    assert reset.status_code == 200, reset.text
    path, query, body = _request(op)
    kwargs: dict[str, Any] = {"params": query, "headers": headers}
    if body is not None:
        kwargs["json"] = body
    return client.request(op.method, path, **kwargs)


def test_every_parameter_and_body_has_an_example() -> None:
    missing = [
        f"{op.operation_id}: {p['in']} {p['name']}"
        for op in SPEC.operations
        for p in _params(op)
        if (p["in"] == "path" and "example" not in p)
        or (p["in"] == "query" and not p["schema"].get("examples"))
    ] + [f"{op.operation_id}: body" for op in SPEC.operations if _body_example(op) is ...]
    assert not missing, missing


@pytest.mark.parametrize("operation_id", sorted(OPS))
def test_the_examples_are_valid_for_their_schemas(operation_id: str) -> None:
    op = OPS[operation_id]
    for p in _params(op):
        jsonschema_rs.validator_for(strip_extensions(p["schema"])).validate(_example(p))
    body = _body_example(op)
    if op.body_schema is not None and body is not None:
        jsonschema_rs.validator_for(strip_extensions(op.body_schema)).validate(body)


@pytest.mark.parametrize("operation_id", sorted(i for i, op in OPS.items() if not op.session_only))
def test_the_examples_succeed_against_a_fresh_world(
    client: TestClient[Any], operation_id: str
) -> None:
    op = OPS[operation_id]
    answer = _send(client, op, {"Authorization": f"Bearer {OWNER_KEY}"})
    if answer.status_code == 409 and op.kind in ("delete", "action"):
        # no seeded record of its kind is free; the spec says so rather than pretend
        assert "answers 409" in op.raw.get("description", ""), answer.text
        return
    assert 200 <= answer.status_code < 300, answer.text
    if op.kind == "list":
        assert answer.json()["data"]["items"], f"{operation_id} listed nothing"


@pytest.mark.parametrize("operation_id", sorted(i for i, op in OPS.items() if op.session_only))
def test_a_session_only_operation_refuses_a_key_and_wants_a_credential(
    client: TestClient[Any], operation_id: str
) -> None:
    op = OPS[operation_id]
    with_key = _send(client, op, {"Authorization": f"Bearer {OWNER_KEY}"})
    assert (with_key.status_code, with_key.json()["error"]["code"]) == (403, "API_KEY_FORBIDDEN")
    without = _send(client, op, {})
    assert (without.status_code, without.json()["error"]["code"]) == (401, "AUTH_REQUIRED")
    assert without.headers["www-authenticate"].startswith("Bearer")
    documented = _resolved(op)["responses"]
    assert documented["401"]["content"]["application/json"]["example"]["error"]["code"] == (
        "AUTH_REQUIRED"
    )
    assert "API_KEY_FORBIDDEN" in documented["401"]["description"]

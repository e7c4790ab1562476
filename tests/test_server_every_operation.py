"""Every operation in the spec answers, in strict mode, with a documented status.

The list of operations is read from the spec, so a new operation is covered with no test change.
"""

from __future__ import annotations

from typing import Any

import pytest

from opsmerge_sandbox.spec import load_spec
from tests.conftest import ADMIN, key_named, make_app
from tests.operation_calls import call_for

OPERATIONS = load_spec().operations


@pytest.fixture(scope="module")
def strict_client() -> Any:
    from litestar.testing import TestClient

    app = make_app(rate_limit=100_000)
    with TestClient(app, base_url="http://sandbox.local") as c:
        c.app_state = app.state.sandbox  # type: ignore[attr-defined]
        yield c


@pytest.mark.parametrize("op", OPERATIONS, ids=[o.operation_id for o in OPERATIONS])
def test_operation_answers_with_a_documented_status_in_strict_mode(
    strict_client: Any, op: Any
) -> None:
    state = strict_client.app_state
    call = call_for(state, op)
    headers = {"Authorization": f"Bearer {key_named(strict_client.app, 'Owner - full')}"}
    create = next(
        (
            o
            for o in OPERATIONS
            if o.kind == "create"
            and not o.session_only
            and o.hints.parent is None
            and o.hints.collection == op.hints.collection
        ),
        None,
    )
    if (
        op.kind == "delete"
        and not op.hints.soft_delete
        and create is not None
        and not op.session_only
    ):
        # a record nothing refers to yet: create one first with the collection's create operation
        made = call_for(state, create)
        created = strict_client.post("/api/v1" + made.path, json=made.json, headers=headers)
        assert created.status_code == 201, created.text
        call.path = op.path.replace("{id}", created.json()["data"]["id"])
    r = strict_client.request(call.method, "/api/v1" + call.path, json=call.json, headers=headers)
    if op.kind == "delete" and r.status_code == 409 and create is None:
        # a seeded record others refer to is refused as IN_USE: find one nothing outside the
        # delete's cascade refers to
        assert r.json()["error"]["code"] == "IN_USE", r.text
        for record in state.bases[op.hints.collection].records[1:200]:
            path = "/api/v1" + op.path.replace("{id}", record["id"])
            r = strict_client.request("DELETE", path, headers=headers)
            if r.status_code != 409:
                break
            assert r.json()["error"]["code"] == "IN_USE", r.text
    if op.kind == "action" and r.status_code == 409 and create is not None:
        # every seeded record the action could take is held back (each contract in force has
        # billed, so none is voided): one made now is not
        assert r.json()["error"]["code"] == "CONFLICT", r.text
        made = call_for(state, create)
        created = strict_client.post("/api/v1" + made.path, json=made.json, headers=headers)
        assert created.status_code == 201, created.text
        path = "/api/v1" + op.path.replace("{id}", created.json()["data"]["id"])
        r = strict_client.request(call.method, path, json=call.json, headers=headers)
    assert str(r.status_code) in op.responses, (op.operation_id, r.status_code, r.text)
    body = r.json()
    if op.session_only:
        assert r.status_code == 403 and body["error"]["code"] == "API_KEY_FORBIDDEN"
        return
    # strict mode turns any mismatch with the spec into a 500, so success here means the answer
    # validated against the operation's schema, headers included
    assert r.status_code < 300, (op.operation_id, call, r.text)
    assert "data" in body
    assert r.headers["x-ratelimit-limit"] == "100000"
    strict_client.post("/_sandbox/reset", headers=ADMIN)


def test_strict_mode_turns_a_response_that_breaks_its_schema_into_a_loud_500(tmp_path: Any) -> None:
    import yaml
    from litestar.testing import TestClient

    from opsmerge_sandbox.spec import SPEC_PATH

    raw = yaml.safe_load(SPEC_PATH.read_text())
    # the spec now promises a list field the sandbox never sends
    page = raw["components"]["schemas"]["AgentPageData"]
    page["required"].append("next_cursor")
    page["properties"]["next_cursor"] = {"type": "string"}
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    app = make_app(spec_path=path)
    with TestClient(app, base_url="http://sandbox.local") as c:
        r = c.get(
            "/api/v1/agents?per_page=1",
            headers={"Authorization": f"Bearer {key_named(app, 'Owner - full')}"},
        )
    assert r.status_code == 500
    assert r.json()["error"]["code"] == "INTERNAL_ERROR"
    assert "strict mode" in r.json()["error"]["message"]
    assert "next_cursor" in r.json()["error"]["message"]

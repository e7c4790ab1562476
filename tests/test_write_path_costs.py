"""The API's write path reads the spec once, at start: what a create costs is its own record's
work, not the schema read again for each field of each record it writes."""

from __future__ import annotations

from typing import Any

import pytest
from litestar.testing import TestClient

from opsmerge_sandbox.app import create_app
from opsmerge_sandbox.jsontypes import json_types
from opsmerge_sandbox.pipeline import resources
from opsmerge_sandbox.pipeline.handle import Handle
from opsmerge_sandbox.settings import Settings
from tests.conftest import ADMIN_TOKEN, bearer

OWNER = "om_sbx_owner_full_pG5aQxpYERgXwi9iPGPE2lWARD"


def _handle(app: Any) -> Handle:
    (handle,) = [s for s in app.state.pipeline.stages.request if isinstance(s, Handle)]
    return handle


def test_a_create_fills_the_fields_it_left_out_without_reading_the_schema_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    app = create_app(Settings(admin_token=ADMIN_TOKEN))
    reads: list[Any] = []

    def counted(prop: Any) -> Any:
        reads.append(prop)
        return json_types(prop)

    monkeypatch.setattr(resources, "json_types", counted)
    with TestClient(app) as client:
        for n in range(3):
            r = client.post(
                "/api/v1/tickets",
                json={"subject": f"fill {n}", "client_id": "cli_acme"},
                headers={**bearer(OWNER), "X-Sandbox-Workspace": "fill-costs"},
            )
            assert r.status_code == 201, r.text
            ticket = r.json()["data"]
            schema = app.state.sandbox.spec.collections["tickets"].schema
            assert list(ticket) == [f for f in schema["properties"] if f in ticket]
    assert reads == []


def test_records_filled_from_one_plan_share_no_empty_list_or_mapping() -> None:
    app = create_app(Settings(admin_token=ADMIN_TOKEN))
    res = _handle(app).resources
    checked = 0
    for coll in app.state.sandbox.spec.collections.values():
        first, second = res.fill(coll, {}), res.fill(coll, {})
        assert first == second
        for name, value in first.items():
            if isinstance(value, list | dict) and "default" not in coll.schema["properties"][name]:
                assert value is not second[name], (coll.name, name)
                checked += 1
    assert checked > 0

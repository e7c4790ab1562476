"""The spec composes its schemas the way code generators read them, and keeps defaults on creation.

A generator reads a one-item `allOf` as an alias and turns a `default` into a value it always
sends; so records and request bodies put their own keywords in a second `allOf` entry, request
bodies carry no defaults and updates require nothing. The record's schema restates a field to
give its default, which is what the server fills in on creation and never on an update.
"""

from __future__ import annotations

from typing import Any

import pytest
from litestar.testing import TestClient

from opsmerge_sandbox.spec import flatten, load_spec
from tests.conftest import make_app

SPEC = load_spec()
SCHEMAS: dict[str, Any] = SPEC.raw["components"]["schemas"]
OWNER = {"Authorization": "Bearer om_sbx_owner_full_pG5aQxpYERgXwi9iPGPE2lWARD"}


def _defaults(schema: Any, where: str = "") -> list[str]:
    if isinstance(schema, dict):
        found = [where] if "default" in schema else []
        for key, value in schema.items():
            if key not in ("default", "enum", "example", "examples"):
                found += _defaults(value, f"{where}/{key}")
        return found
    if isinstance(schema, list):
        return [f for i, v in enumerate(schema) for f in _defaults(v, f"{where}/{i}")]
    return []


def test_no_schema_is_a_one_item_all_of() -> None:
    aliases = [n for n, s in SCHEMAS.items() if len(s.get("allOf", [None, None])) < 2]
    assert not aliases, aliases


def test_request_bodies_carry_no_defaults_and_updates_require_nothing() -> None:
    for op in SPEC.operations:
        if op.body_schema is None:
            continue
        assert not _defaults(op.body_schema), (op.operation_id, _defaults(op.body_schema))
        if op.kind == "update":
            assert not op.body_schema.get("required"), op.operation_id


def test_writable_schemas_carry_no_defaults() -> None:
    for name, schema in SCHEMAS.items():
        if name.endswith("Writable"):
            assert not _defaults(schema), (name, _defaults(schema))


def test_a_later_all_of_entry_adds_to_a_field_without_repeating_it() -> None:
    merged = flatten(
        {
            "allOf": [
                {"properties": {"p": {"type": "string", "enum": ["a", "b"], "x-ordinal": True}}},
                {"properties": {"p": {"default": "b"}, "q": {"type": "integer"}}},
                {"required": ["q"]},
            ],
            "required": ["p"],
        }
    )
    assert merged["properties"]["p"] == {
        "type": "string",
        "enum": ["a", "b"],
        "x-ordinal": True,
        "default": "b",
    }
    assert merged["required"] == ["p", "q"]


@pytest.mark.parametrize("collection", sorted(SPEC.collections))
def test_a_record_schema_keeps_its_rules_and_its_defaults(collection: str) -> None:
    coll = SPEC.collections[collection]
    parts = SCHEMAS[coll.schema_name]["allOf"]
    writable = SPEC.resolved["components"]["schemas"][parts[0]["$ref"].rsplit("/", 1)[1]]
    # every keyword of each writable field survives on the record (types, rules, x- hints)
    for name, prop in writable.get("properties", {}).items():
        assert _covers(coll.schema["properties"][name], flatten(prop)), name
    own = parts[1].get("properties", {})
    for name, prop in own.items():
        if "default" in prop:
            assert coll.schema["properties"][name]["default"] == prop["default"], name


def _covers(record: Any, writable: Any) -> bool:
    """`record` holds everything `writable` says (and may add to it, a default say)."""
    if isinstance(writable, dict):
        return isinstance(record, dict) and all(
            k in record and _covers(record[k], v) for k, v in writable.items()
        )
    return bool(record == writable)


def test_the_server_applies_the_record_defaults_on_create_and_never_on_update() -> None:
    ticket = SPEC.collections["tickets"].schema["properties"]
    defaults = {k: v["default"] for k, v in ticket.items() if "default" in v}
    assert {"type", "priority", "status", "queue"} <= set(defaults)
    with TestClient(make_app()) as client:
        body = {"subject": "Printer offline", "client_id": "cli_acme"}
        created = client.post("/api/v1/tickets", headers=OWNER, json=body)
        assert created.status_code == 201, created.text
        record = created.json()["data"]
        assert {k: record[k] for k in defaults} == defaults
        changed = {"priority": "Critical", "status": "In Progress", "type": "Problem"}
        url = f"/api/v1/tickets/{record['id']}"
        assert client.patch(url, headers=OWNER, json=changed).status_code == 200
        renamed = client.patch(url, headers=OWNER, json={"subject": "Printer offline again"})
        assert renamed.status_code == 200, renamed.text
        after = renamed.json()["data"]
        assert {k: after[k] for k in changed} == changed
        assert after["queue"] == record["queue"]

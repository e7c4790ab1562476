"""Generated bodies: valid against the request schema, the same on every run, references filled
with real ids, and invalid ones invalid in exactly the named way."""

from __future__ import annotations

from typing import Any

import jsonschema_rs
import pytest

from opsmerge_contracts import bodies
from opsmerge_contracts.bodies import (
    apply_relations,
    examples,
    fill_references,
    invalid_bodies,
    strip_extensions,
)
from opsmerge_sandbox.spec import load_spec

BODY_OPS = [
    op for op in load_spec().operations if op.body_schema and op.kind in ("create", "update")
]


def validator(schema: dict[str, Any]) -> Any:
    return jsonschema_rs.validator_for(strip_extensions(schema), validate_formats=True)


@pytest.mark.parametrize("op", BODY_OPS, ids=[op.operation_id for op in BODY_OPS])
def test_generated_bodies_are_valid_and_invalid_ones_are_not(op: Any) -> None:
    valid = validator(op.body_schema)
    drawn = examples(op.body_schema, 3)
    assert drawn, f"no body for {op.operation_id}"
    for body in drawn:
        assert valid.is_valid(body), (op.operation_id, body)
    for mutation in invalid_bodies(op.body_schema, drawn[0], seed=op.operation_id):
        assert not valid.is_valid(mutation.body), (op.operation_id, mutation.name)


def test_generation_is_deterministic() -> None:
    schema = load_spec().operation("createTicket").body_schema
    assert schema is not None
    first = examples(schema, 3)
    bodies._CACHE.clear()
    assert examples(schema, 3) == first


def test_extensions_are_stripped_but_enum_values_kept() -> None:
    schema = {
        "type": "object",
        "x-collection": {},
        "properties": {"a": {"type": "string", "x-ref": "clients", "enum": ["x-keep"]}},
    }
    assert strip_extensions(schema) == {
        "type": "object",
        "properties": {"a": {"type": "string", "enum": ["x-keep"]}},
    }


def test_references_are_filled_with_ids_the_target_has() -> None:
    records = {
        "clients": [{"id": "cli_a"}, {"id": "cli_b"}],
        "contacts": [{"id": "con_1", "client_id": "cli_a"}, {"id": "con_2", "client_id": "cli_b"}],
        # the spec names as assignees only active users whose role may work tickets
        # (`x-ref.where: {status: [active], role_ids->permissions: {contains-any: [...]}}`)
        "users": [
            {"id": "usr_0", "status": "invited", "role_ids": ["rol_1"]},
            {"id": "usr_2", "status": "active", "role_ids": ["rol_2"]},  # a billing clerk
            {"id": "usr_1", "status": "active", "role_ids": ["rol_1"]},
        ],
        "roles": [
            {"id": "rol_1", "permissions": ["psa_tickets:write"]},
            {"id": "rol_2", "permissions": ["psa_billing:write"]},
            {"id": "rol_3", "permissions": []},
        ],
    }

    def holds(record: dict[str, Any], field: str, wanted: Any) -> bool:
        if "->" in field:  # one hop through the user's roles, as the id pool follows it
            mine, theirs = field.split("->")
            reached = [
                value
                for other in records["roles"]
                if other["id"] in record.get(mine, [])
                for value in other[theirs]
            ]
            return bool(set(reached) & set(wanted["contains-any"]))
        value = record.get(field)
        return value in wanted if isinstance(wanted, list) else value == wanted

    def pick(collection: str, where: dict[str, Any], exclude: list[Any]) -> Any:
        for record in records.get(collection, []):
            if record["id"] in exclude:
                continue
            if all(holds(record, k, v) for k, v in where.items()):
                return record["id"]
        return None

    ticket = load_spec().operation("createTicket").body_schema
    assert ticket is not None
    body = fill_references(
        ticket,
        {"subject": "s", "client_id": "junk", "contact_id": "junk", "assignee_id": "junk"},
        pick,
    )
    assert body["client_id"] == "cli_a"
    assert body["contact_id"] == "con_1"  # the contact belongs to the chosen client
    assert body["assignee_id"] == "usr_1"
    invite = load_spec().operation("inviteUser").body_schema
    assert invite is not None
    filled = fill_references(invite, {"email": "a@b.example.com", "role_ids": ["x", "y"]}, pick)
    assert filled["role_ids"] == ["rol_1", "rol_2"]


def test_relations_between_fields_are_honoured() -> None:
    ticket = load_spec().operation("createTicket").body_schema
    contract = load_spec().operation("createContract").body_schema
    invoice = load_spec().operation("createInvoice").body_schema
    assert ticket and contract and invoice
    assert apply_relations(ticket, {"status": "New", "resolution": "fixed"})["resolution"] is None
    assert (
        apply_relations(ticket, {"status": "Resolved", "resolution": "fixed"})["resolution"]
        == "fixed"
    )
    dates = apply_relations(contract, {"start_date": "2026-05-01", "end_date": "2026-01-01"})
    assert dates["end_date"] >= dates["start_date"]
    due = apply_relations(invoice, {"issue_date": "2026-05-01", "due_date": "2020-01-01"})
    assert due["due_date"] == "2026-05-31"


def test_a_body_naming_one_number_of_a_bounded_pair_sends_both_in_the_rules_order() -> None:
    """A write rule bounding one number by another (warning days at least critical days) is
    kept by every generated body: the partner left out (a default, or on an update a stored
    value the body cannot see) is sent too, following the body's own value."""
    domain = load_spec().collections["domains"].schema
    assert bodies.bounds(domain) == [("ssl_warning_days", "min", "ssl_critical_days")]
    assert bodies.keep_bounds(domain, {"ssl_critical_days": 200}) == {
        "ssl_critical_days": 200, "ssl_warning_days": 200}
    assert bodies.keep_bounds(domain, {"ssl_warning_days": 3}) == {
        "ssl_warning_days": 3, "ssl_critical_days": 3}
    assert bodies.keep_bounds(domain, {"ssl_warning_days": 5, "ssl_critical_days": 9}) == {
        "ssl_warning_days": 5, "ssl_critical_days": 5}
    assert bodies.keep_bounds(domain, {"ssl_critical_days": 3}) == {
        "ssl_critical_days": 3, "ssl_warning_days": 30}  # the default already keeps the order
    assert bodies.keep_bounds(domain, {"domain": "x.example.com"}) == {"domain": "x.example.com"}

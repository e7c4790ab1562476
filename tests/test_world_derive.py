"""Computed fields: the server's creates and updates get them the way seeded records do."""

from __future__ import annotations

from opsmerge_sandbox.spec import Collection, Spec
from opsmerge_sandbox.world import derive_fields


def _with_x(spec: Spec, hint: str) -> Collection:
    for c in spec.collections.values():
        if any(hint in p for p in c.schema["properties"].values()):
            return c
    raise AssertionError(f"the spec has no {hint} field")


def test_sequence_counts_from_its_start_and_template_uses_mapped_vars(spec: Spec) -> None:
    tickets = _with_x(spec, "x-sequence")
    (seq_field, rule), = [(f, p["x-sequence"]) for f, p in tickets.schema["properties"].items()
                          if "x-sequence" in p]
    record = {"type": "Incident"}
    derive_fields(tickets, record, 401, 2026)
    assert record[seq_field] == rule["start"] + 400
    assert record["reference"] == f"INC-{rule['start'] + 400}"


def test_update_keeps_the_number_and_recomputes_the_template(spec: Spec) -> None:
    tickets = spec.collections["tickets"]
    record = {"type": "Incident"}
    derive_fields(tickets, record, 7, 2026)
    number = record["number"]
    record["type"] = "Problem"
    derive_fields(tickets, record, 7, 2026)
    assert record["number"] == number
    assert record["reference"] == f"PRB-{number}"


def test_template_uses_year_and_padded_seq(spec: Spec) -> None:
    invoices = spec.collections["invoices"]
    record = {"lines": []}
    derive_fields(invoices, record, 42, 2027)
    assert record["number"] == "INV-2027-0042"


def test_invoice_totals_are_derived_from_lines_with_tax_by_code(spec: Spec) -> None:
    invoices = spec.collections["invoices"]
    record = {"lines": [
        {"description": "a", "quantity": 2, "unit_price": 10.5, "tax_code": "VAT Standard 20%"},
        {"description": "b", "quantity": 1, "unit_price": 100, "tax_code": "VAT Zero 0%"},
        {"description": "c", "quantity": 3, "unit_price": 1.1},  # default code: standard rate
    ]}
    derive_fields(invoices, record, 1, 2026)
    assert record["subtotal"] == 124.3
    assert record["tax"] == 4.86
    assert record["total"] == 129.16


def test_seeded_invoices_add_up(spec: Spec) -> None:
    from opsmerge_sandbox.world import build_world, load_recipe

    world = build_world(spec, load_recipe(), collections=["invoices"])
    for inv in world["invoices"]:
        subtotal = round(sum(line["quantity"] * line["unit_price"] for line in inv["lines"]), 2)
        assert inv["subtotal"] == subtotal
        assert inv["total"] == round(inv["subtotal"] + inv["tax"], 2)
    numbers = sorted(inv["number"] for inv in world["invoices"] if inv["number"][4:8] == "2026")
    assert numbers[:3] == ["INV-2026-0001", "INV-2026-0002", "INV-2026-0003"]

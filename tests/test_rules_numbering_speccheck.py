"""`spec check` (and the loader) refuse a bad declaration of each numbering and defaults rule.

Each broken spec is the bundled one with one property hint changed; the problem must be the only
one, reported at the collection's schema, with words that say what is wrong.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest

from opsmerge_sandbox.catalogue import load_catalogue
from opsmerge_sandbox.extensions import ExtensionError
from opsmerge_sandbox.spec import load_spec, parse_spec
from opsmerge_sandbox.speccheck import lint_document

Raw = dict[str, Any]
SPEC = load_spec()
CATALOGUE = load_catalogue()


def _hinted(raw: Raw, hint: str) -> tuple[str, dict[str, Any]]:
    """(the collection schema, the raw property) of the first property carrying `hint`."""
    schemas = raw["components"]["schemas"]
    for coll in SPEC.collections.values():
        parts = [schemas[coll.schema_name]]
        parts += [
            schemas[p["$ref"].rsplit("/", 1)[1]] if "$ref" in p else p
            for p in schemas[coll.schema_name].get("allOf", [])
        ]
        for part in parts:
            for prop in (part.get("properties") or {}).values():
                if hint in prop:
                    return coll.schema_name, prop
    raise AssertionError(f"no property carries {hint}")


def _field_of_type(raw: Raw, schema_name: str, wanted: str, hint: str) -> dict[str, Any]:
    """A property of `schema_name` (or its parts) of type `wanted`, with no enum and no `hint`."""
    schemas = raw["components"]["schemas"]
    parts = [schemas[schema_name]] + [
        schemas[p["$ref"].rsplit("/", 1)[1]] if "$ref" in p else p
        for p in schemas[schema_name].get("allOf", [])
    ]
    for part in parts:
        for prop in (part.get("properties") or {}).values():
            if prop.get("type") == wanted and "enum" not in prop and hint not in prop:
                return prop
    raise AssertionError(f"{schema_name} has no plain {wanted} field")


def _set(hint: str, value: Any) -> Callable[[Raw], str]:
    def mutate(raw: Raw) -> str:
        schema, prop = _hinted(raw, hint)
        prop[hint] = value
        return schema

    return mutate


def _move(hint: str, wanted_type: str) -> Callable[[Raw], str]:
    """Put the hint on a field of the wrong type in the same schema."""

    def mutate(raw: Raw) -> str:
        schema, prop = _hinted(raw, hint)
        _field_of_type(raw, schema, wanted_type, hint)[hint] = prop.pop(hint)
        return schema

    return mutate


def _edit(hint: str, change: Callable[[Any], None]) -> Callable[[Raw], str]:
    def mutate(raw: Raw) -> str:
        schema, prop = _hinted(raw, hint)
        change(prop[hint])
        return schema

    return mutate


CASES = [
    pytest.param(_set("x-ordinal", "yes"), "x-ordinal must be true", id="ordinal-not-true"),
    pytest.param(_move("x-ordinal", "string"), "x-ordinal needs an enum", id="ordinal-no-enum"),
    pytest.param(
        _edit("x-default-from", lambda d: d.update({"field": "issue_date", "lookup": "contacts"})),
        "needs exactly one of field (with add-days) or lookup",
        id="default-from-both-forms",
    ),
    pytest.param(
        _set("x-default-from", {"field": "no_such_field", "add-days": 30}),
        "x-default-from.field 'no_such_field' is not a field of the schema",
        id="default-from-unknown-field",
    ),
    pytest.param(
        _set("x-default-from", {"field": "issue_date", "add-days": "30"}),
        "add-days must be a whole number of days",
        id="default-from-days-not-a-number",
    ),
    pytest.param(
        _set("x-default-from", {"lookup": "nowhere", "take": "id"}),
        "x-default-from.lookup 'nowhere' names no schema with a matching x-collection",
        id="default-from-unknown-collection",
    ),
    pytest.param(
        _set("x-default-from", {"lookup": "contacts", "where": {"client_id": "$caller.user_id"}}),
        "must be $record.<a field of the schema>",
        id="default-from-where-not-the-record",
    ),
    pytest.param(
        _set("x-not-before", "no_such_field"),
        "x-not-before must name another field, got 'no_such_field'",
        id="not-before-unknown-field",
    ),
    pytest.param(
        _move("x-exclusive", "string"),
        "x-exclusive belongs on a boolean field",
        id="exclusive-not-a-flag",
    ),
    pytest.param(
        _set("x-exclusive", {"per": "no_such_field"}),
        "x-exclusive.per must name another field, got 'no_such_field'",
        id="exclusive-unknown-scope",
    ),
    pytest.param(
        _set("x-exclusive", {"per": "client_id", "within": "x"}),
        "x-exclusive has an unknown key 'within'",
        id="exclusive-unknown-key",
    ),
    pytest.param(_set("x-forward-only", 1), "x-forward-only must be true", id="forward-not-true"),
    pytest.param(
        _set("x-touches", "yes"), "x-touches must be true, got 'yes'", id="touches-not-true"
    ),
    pytest.param(
        _move("x-touches", "boolean"),
        "x-touches belongs on a reference (a field with an x-ref)",
        id="touches-not-a-reference",
    ),
    pytest.param(_set("x-merge", "deep"), "x-merge must be true", id="merge-not-true"),
    pytest.param(
        _edit("x-sequence", lambda s: s["next-from"].update(collection="nowhere")),
        "x-sequence.next-from.collection 'nowhere' names no schema",
        id="sequence-counter-unknown-collection",
    ),
    pytest.param(
        _edit("x-sequence", lambda s: s["next-from"].update(field="no_such_field")),
        "x-sequence.next-from.field 'no_such_field' is not a field of",
        id="sequence-counter-unknown-field",
    ),
    pytest.param(
        _edit("x-sequence", lambda s: s["next-from"].pop("id")),
        "x-sequence.next-from.id must be a record id",
        id="sequence-counter-without-record",
    ),
    pytest.param(
        _edit("x-template", lambda t: t.update({"per-year-of": "lines"})),
        "x-template.per-year-of must name a date field of the schema, got 'lines'",
        id="template-year-of-not-a-date",
    ),
    pytest.param(
        _edit("x-template", lambda t: t.update(restart="yearly")),
        "x-template has an unknown key 'restart'",
        id="template-unknown-key",
    ),
]


def _override_keys_broken(raw: Raw) -> str:
    schemas = raw["components"]["schemas"]
    for coll in SPEC.collections.values():
        parts = schemas[coll.schema_name].get("allOf") or [{}, {}]
        own = parts[1] if len(parts) > 1 else {}
        for prop in (own.get("properties") or {}).values():
            for var in ((prop.get("x-template") or {}).get("vars") or {}).values():
                if "override" in var:
                    var["override"]["keys"] = ["incident"]
                    return coll.schema_name
    raise AssertionError("no template variable has an override")


def _forward_only_on_text(raw: Raw) -> str:
    return _move("x-forward-only", "string")(raw)


def _merge_on_number(raw: Raw) -> str:
    return _move("x-merge", "integer")(raw)


CASES += [
    pytest.param(_override_keys_broken, "override.keys must map each value", id="override-keys"),
    pytest.param(
        _forward_only_on_text, "x-forward-only belongs on a field of type", id="forward-on-text"
    ),
    pytest.param(
        _merge_on_number, "x-merge belongs on a field of type object", id="merge-on-number"
    ),
]


def test_the_bundled_rules_have_no_problems() -> None:
    assert not [
        p for p in lint_document(copy.deepcopy(SPEC.raw), CATALOGUE) if p.rule == "collections"
    ]


@pytest.mark.parametrize(("mutate", "words"), CASES)
def test_a_bad_rule_declaration_is_reported_at_its_schema_and_refused_at_load(
    mutate: Callable[[Raw], str], words: str
) -> None:
    raw = copy.deepcopy(SPEC.raw)
    schema = mutate(raw)
    problems = [p for p in lint_document(raw, CATALOGUE) if p.rule == "collections"]
    assert len(problems) == 1, problems
    assert problems[0].where == f"components.schemas.{schema}"
    assert words in problems[0].message
    with pytest.raises(ExtensionError, match="vendor extensions are invalid"):
        parse_spec(raw)


def test_today_takes_no_field() -> None:
    raw = copy.deepcopy(SPEC.raw)
    op = next(o for o in SPEC.operations if "$today" in o.hints.defaults.values())
    field = next(k for k, v in op.hints.defaults.items() if v == "$today")
    raw["paths"][op.path][op.method.lower()]["x-sandbox"]["defaults"][field] = "$today.date"
    with pytest.raises(ExtensionError, match=r"'\$today.date' is not an expression"):
        parse_spec(raw)

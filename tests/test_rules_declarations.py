"""A rule declared badly in the spec is a problem the spec check names, never a silent no-op."""

from __future__ import annotations

from typing import Any

import pytest

from opsmerge_sandbox.extensions import parse_operation

COLLECTIONS = {"users", "tickets", "ticket_comments"}


def _problems(ext: dict[str, Any]) -> list[str]:
    _, problems = parse_operation(ext, "op", COLLECTIONS)
    return [p.message for p in problems]


GUARD = {"field": "role_ids", "contains": "rol_admin", "code": "FORBIDDEN", "message": "no"}


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ({"change": "flipped"}, "change is 'flipped'; expected one of added, removed, changed"),
        ({"unless-caller": {"field": "role_ids"}}, "unless-caller needs exactly one of contains"),
        ({"unless-caller": "owner"}, "unless-caller needs a field name"),
        ({"unless-caller": {"field": "r", "equals": 1, "last": True}}, "unknown key 'last'"),
        ({"unless-self": "yes"}, "unless-self must be true or false"),
        ({"keeps": "lines"}, "keeps must be a list of field names"),
        ({"keeps": ["lines"], "change": "added"}, "takes change or keeps, not both"),
        ({"equals": 1, "not-equals": 2}, "needs exactly one of contains, equals or not-equals"),
    ],
)
def test_a_bad_guard_is_named(extra: dict[str, Any], expected: str) -> None:
    ext = {"kind": "update", "collection": "users", "refuse-when": [{**GUARD, **extra}]}
    found = _problems(ext)
    assert any(expected in p and "refuse-when[0]" in p for p in found), found


def test_a_good_guard_parses_into_typed_parts() -> None:
    ext = {
        "kind": "update",
        "collection": "users",
        "refuse-when": [
            {
                **GUARD,
                "change": "changed",
                "unless-self": True,
                "unless-caller": {"field": "role_ids", "contains": "rol_owner"},
            },
        ],
    }
    hints, problems = parse_operation(ext, "op", COLLECTIONS)
    assert problems == []
    [guard] = hints.refuse_when
    assert guard.change == "changed" and guard.unless_self
    assert guard.unless_caller is not None and guard.unless_caller.value == "rol_owner"
    before, after = {"role_ids": ["rol_admin"]}, {"role_ids": []}
    assert guard.hits_write(before, after) and not guard.hits_write(before, before)


def test_a_keeps_guard_hits_a_change_to_a_kept_field_of_a_record_that_met_its_test() -> None:
    ext = {
        "kind": "update",
        "collection": "tickets",
        "refuse-when": [
            {"field": "status", "not-equals": "Draft", "keeps": ["lines", "total"],
             "code": "CONFLICT", "message": "issued"},
        ],
    }
    hints, problems = parse_operation(ext, "op", COLLECTIONS)
    assert problems == []
    [guard] = hints.refuse_when
    issued = {"status": "Open", "lines": [1], "total": 1, "notes": None}
    assert guard.kept_field(issued, {**issued, "total": 2}) == "total"
    assert guard.kept_field(issued, {**issued, "notes": "x"}) is None
    draft = {**issued, "status": "Draft"}
    assert guard.kept_field(draft, {**draft, "lines": [2]}) is None
    assert guard.kept_field(None, draft) is None and not guard.hits_write(None, draft)


def test_cascade_and_soft_delete_belong_on_deletes_and_name_collections() -> None:
    found = _problems({"kind": "delete", "collection": "tickets", "cascade": ["comments"]})
    assert any("cascade 'comments' names no schema" in p for p in found), found
    found = _problems({"kind": "update", "collection": "tickets", "cascade": ["ticket_comments"]})
    assert any("cascade belongs on a delete operation" in p for p in found), found
    found = _problems({"kind": "update", "collection": "users", "soft-delete": {"status": "x"}})
    assert any("soft-delete belongs on a delete operation" in p for p in found), found
    found = _problems({"kind": "delete", "collection": "users", "soft-delete": ["status"]})
    assert any("soft-delete must be a mapping" in p for p in found), found


def _lint_without_409(pick: Any) -> list[str]:
    import copy

    from opsmerge_sandbox.catalogue import load_catalogue
    from opsmerge_sandbox.spec import load_spec
    from opsmerge_sandbox.speccheck import lint_document

    spec = load_spec()
    op = next(o for o in spec.operations if pick(o))
    raw = copy.deepcopy(spec.raw)
    raw["paths"][op.path][op.method.lower()]["responses"].pop("409")
    return [
        f"{p.where}: {p.message}"
        for p in lint_document(raw, load_catalogue())
        if p.rule == "x-sandbox"
    ]


def test_a_state_rule_or_a_cascade_must_document_the_409_it_gives() -> None:
    found = _lint_without_409(lambda o: bool(o.hints.when) and not o.hints.cascade)
    assert any("x-sandbox.when CONFLICT answers 409, which is not documented" in p for p in found)
    found = _lint_without_409(lambda o: bool(o.hints.cascade))
    assert any("x-sandbox.cascade IN_USE answers 409, which is not documented" in p for p in found)

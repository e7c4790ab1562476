"""`spec check` refuses a broken `x-sandbox-audit`, and a write whose audit entries its own log's
schema would refuse (an action or object type the log's enums do not offer).

Each broken spec is the bundled one with one thing changed; an audit problem must say what is
wrong, in words, where it is.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest

from opsmerge_sandbox.catalogue import load_catalogue
from opsmerge_sandbox.spec import load_spec
from opsmerge_sandbox.speccheck import lint_document
from opsmerge_sandbox.speccheck.problems import Problem

Raw = dict[str, Any]
SPEC = load_spec()
CATALOGUE = load_catalogue()


def _audit_problems(raw: Raw) -> list[Problem]:
    return [p for p in lint_document(raw, CATALOGUE) if p.rule == "audit"]


def _model(change: Callable[[dict[str, Any]], None]) -> Callable[[Raw], None]:
    def mutate(raw: Raw) -> None:
        change(raw["x-sandbox-audit"])

    return mutate


def _operation(raw: Raw, operation_id: str) -> dict[str, Any]:
    for item in raw["paths"].values():
        for op in item.values():
            if isinstance(op, dict) and op.get("operationId") == operation_id:
                return op
    raise AssertionError(f"no operation {operation_id}")


def _verb(operation_id: str, verb: str) -> Callable[[Raw], None]:
    def mutate(raw: Raw) -> None:
        _operation(raw, operation_id)["x-sandbox"]["audit"] = verb

    return mutate


def test_the_bundled_spec_declares_its_audit_log_and_every_entry_it_writes() -> None:
    assert _audit_problems(SPEC.raw) == []


CASES = [
    pytest.param(
        _model(lambda m: m.update(collection="nowhere")),
        "x-sandbox-audit",
        "collection 'nowhere' names no collection",
        id="unknown-collection",
    ),
    pytest.param(
        _model(lambda m: m["fields"].pop("diff")),
        "x-sandbox-audit",
        "fields lacks 'diff'",
        id="part-missing",
    ),
    pytest.param(
        _model(lambda m: m["fields"].update(diff="changes")),
        "x-sandbox-audit",
        "fields.diff 'changes' is not a field of audit_log",
        id="part-not-a-field",
    ),
    pytest.param(
        _model(lambda m: m.update(retention="90d")),
        "x-sandbox-audit",
        "has an unknown key 'retention'",
        id="unknown-key",
    ),
    pytest.param(
        _model(lambda m: m["object-types"].update(nowhere="thing")),
        "x-sandbox-audit",
        "object-types names no collection 'nowhere'",
        id="object-type-of-no-collection",
    ),
    pytest.param(
        _model(lambda m: m["object-types"].update(settings="Settings Page")),
        "x-sandbox-audit",
        "object-types.settings must be a snake_case object type, got 'Settings Page'",
        id="object-type-not-a-name",
    ),
    pytest.param(
        _verb("updateTicketNumbering", "shredded"),
        "PATCH /settings/ticket-numbering (updateTicketNumbering)",
        "records audit entries with action 'settings.shredded', which audit_log.action does "
        "not offer",
        id="verb-not-in-the-action-enum",
    ),
    pytest.param(
        _model(lambda m: m["object-types"].update(settings="configuration")),
        "PATCH /settings/ticket-numbering (updateTicketNumbering)",
        "records audit entries with object_type 'configuration', which "
        "audit_log.object_type does not offer",
        id="object-type-not-in-its-enum",
    ),
]


CASES += [
    pytest.param(
        _model(lambda m: m["field-verbs"]["tickets"].update(colour="recoloured")),
        "x-sandbox-audit",
        "field-verbs.tickets.colour is not a field of tickets",
        id="field-verb-of-no-field",
    ),
    pytest.param(
        _model(lambda m: m["field-verbs"].update(nowhere={"status": "moved"})),
        "x-sandbox-audit",
        "field-verbs names no collection 'nowhere'",
        id="field-verbs-of-no-collection",
    ),
    pytest.param(
        _model(lambda m: m["field-verbs"]["tickets"].update(status="status_flipped")),
        "PATCH /tickets/{id} (updateTicket)",
        "records audit entries with action 'ticket.status_flipped'",
        id="field-verb-not-in-the-action-enum",
    ),
    pytest.param(
        _model(lambda m: m["field-verbs"]["contacts"].update(portal_user={"verb": "granted"})),
        "x-sandbox-audit",
        "field-verbs.contacts.portal_user must be a verb or {verb, to: <the value>}",
        id="field-verb-to-a-value-without-the-value",
    ),
    pytest.param(
        _model(
            lambda m: m["field-verbs"]["contacts"].update(
                portal_user={"verb": "portal_access_revoked", "to": False}
            )
        ),
        "PATCH /contacts/{id} (updateContact)",
        "records audit entries with action 'contact.portal_access_revoked'",
        id="field-verb-to-a-value-not-in-the-action-enum",
    ),
]


def _soft_delete_unnamed(raw: Raw) -> None:
    """The user delete (which deactivates) without its verb, and user.modified off the enum."""
    del _operation(raw, "deleteUser")["x-sandbox"]["audit"]
    parts = raw["components"]["schemas"]["AuditEntry"]["allOf"]
    (action,) = [p["properties"]["action"] for p in parts if "action" in p.get("properties", {})]
    i = action["enum"].index("user.modified")
    del action["enum"][i], action["x-weights"][i]


CASES.append(
    pytest.param(
        _soft_delete_unnamed,
        "DELETE /users/{id} (deleteUser)",
        "records audit entries with action 'user.modified'",  # the user stays: modified
        id="soft-delete-records-a-modification",
    )
)


CASES += [
    pytest.param(
        _model(lambda m: m.update({"key-use": {"verb": "touched", "every-seconds": 3600}})),
        "x-sandbox-audit",
        "key-use records entries with action 'api_key.touched'",
        id="key-use-off-the-enum",
    ),
    pytest.param(
        _model(lambda m: m.update({"key-use": {"verb": "used", "every-seconds": 0}})),
        "x-sandbox-audit",
        "key-use must be {verb: <snake_case verb>, every-seconds: <seconds, at least 1>}",
        id="key-use-never",
    ),
]


@pytest.mark.parametrize(("mutate", "where", "words"), CASES)
def test_spec_check_names_what_is_wrong_with_the_audit_log(
    mutate: Callable[[Raw], None], where: str, words: str
) -> None:
    raw = copy.deepcopy(SPEC.raw)
    mutate(raw)
    problems = _audit_problems(raw)
    assert problems, "no audit problem reported"
    assert any(p.where == where and words in p.message for p in problems), problems

"""Facts the issue demands of the bundled spec and its error catalogue.

The sandbox serves, seeds and contract-checks whatever the spec declares, so these facts are what
make it the OpsMerge API rather than any API: the families the issue names, their signature
actions, the stability tiers, a deprecation, and one catalogue that every error code agrees with.
Facts are derived from the loaded spec; only the families the issue names are spelled out.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator
from typing import Any

import pytest

from opsmerge_sandbox.catalogue import CATALOGUE_PATH
from opsmerge_sandbox.spec import HTTP_METHODS, Operation, load_spec
from opsmerge_sandbox.yamlio import load_yaml

SPEC = load_spec()
CATALOGUE = SPEC.catalogue

NAMED_FAMILIES = (
    "clients",
    "contacts",
    "sites",
    "agents",
    "checks",
    "alerts",
    "scripts",
    "script_runs",
    "tickets",
    "ticket_comments",
    "time_entries",
    "contracts",
    "invoices",
    "users",
    "roles",
    "audit_log",
    "api_keys",
)


def _serving(collection: str) -> list[Operation]:
    return [op for op in SPEC.operations if op.hints.collection == collection]


def _action(collection: str, verb: str) -> Operation:
    found = [
        op
        for op in _serving(collection)
        if op.kind == "action" and op.method == "POST" and op.path.endswith(f"/{verb}")
    ]
    assert len(found) == 1, f"{collection} needs exactly one POST .../{verb} action"
    return found[0]


def test_the_spec_has_at_least_70_operations() -> None:
    assert len(SPEC.operations) >= 70


@pytest.mark.parametrize("collection", NAMED_FAMILIES)
def test_each_named_family_is_listed(collection: str) -> None:
    assert collection in SPEC.collections, f"no schema declares x-collection {collection}"
    assert any(op.kind == "list" and op.method == "GET" for op in _serving(collection))


def test_auth_me_answers_any_valid_key() -> None:
    [identity] = [op for op in SPEC.operations if op.kind == "identity"]
    assert (identity.method, identity.path) == ("GET", "/auth/me")
    assert identity.scopes == () and not identity.session_only


def test_agents_can_be_rebooted_with_an_execute_scope() -> None:
    reboot = _action("agents", "reboot")
    assert reboot.scopes == ("agents:execute",)


@pytest.mark.parametrize("verb", ["acknowledge", "resolve"])
def test_alerts_can_be_acknowledged_and_resolved(verb: str) -> None:
    action = _action("alerts", verb)
    assert action.scopes and action.scopes[0].startswith("alerts:")
    assert action.hints.sets, "the action must change the alert"


def test_running_a_script_creates_a_script_run() -> None:
    run = _action("scripts", "run")
    assert run.scopes == ("scripts:execute",)
    assert run.hints.creates is not None and run.hints.creates.collection == "script_runs"
    assert any(op.kind == "get" for op in _serving("script_runs"))


def test_ticket_comments_hang_off_tickets() -> None:
    comments = _serving("ticket_comments")
    kinds = {op.kind for op in comments}
    assert {"list", "create"} <= kinds
    assert all(op.hints.parent and op.hints.parent.collection == "tickets" for op in comments)


def _property(collection: str, name: str) -> dict[str, Any]:
    return SPEC.collections[collection].schema["properties"][name]


def test_ticket_references_look_like_inc_1042() -> None:
    reference = _property("tickets", "reference")
    assert re.search(reference["pattern"], "INC-1042")
    assert not re.search(reference["pattern"], "1042")


def test_invoice_numbers_look_like_inv_2026_0001() -> None:
    number = _property("invoices", "number")
    assert re.search(number["pattern"], "INV-2026-0001")
    assert not re.search(number["pattern"], "INV-26-1")


def test_the_audit_log_is_read_only() -> None:
    audit = _serving("audit_log")
    assert audit and {op.method for op in audit} == {"GET"}
    assert not any(
        op.path.startswith("/audit-log") and op.method != "GET" for op in SPEC.operations
    )


def test_api_keys_are_session_only() -> None:
    keys = _serving("api_keys")
    assert {"list", "create", "delete"} <= {op.kind for op in keys}
    for op in keys:
        assert op.session_only and op.scopes == (), op.operation_id


def test_at_least_one_family_is_beta() -> None:
    by_tag: dict[str, set[str]] = {}
    for op in SPEC.operations:
        by_tag.setdefault(op.tag, set()).add(op.stability)
    assert any(tiers == {"beta"} for tiers in by_tag.values())


def test_a_few_operations_are_internal() -> None:
    assert len([op for op in SPEC.operations if op.stability == "internal"]) >= 2


def test_a_deprecated_operation_has_a_sunset_date_after_its_deprecation() -> None:
    deprecated = [op for op in SPEC.operations if op.deprecated]
    assert deprecated
    for op in deprecated:
        assert op.deprecated_at and op.sunset, op.operation_id
        assert dt.date.fromisoformat(str(op.sunset)) > dt.date.fromisoformat(str(op.deprecated_at))


# --- error codes -------------------------------------------------------------------------------


def _error_codes(node: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[tuple[Any, ...], str]]:
    """Every `{"error": {"code": ...}}` and every x-sandbox `*-code`, anywhere in the document."""
    if isinstance(node, dict):
        error = node.get("error")
        if isinstance(error, dict) and isinstance(error.get("code"), str):
            yield path, error["code"]
        for key, value in node.items():
            if isinstance(key, str) and key.endswith("-code") and isinstance(value, str):
                yield (*path, key), value
            yield from _error_codes(value, (*path, key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _error_codes(value, (*path, i))


def test_every_error_code_in_the_spec_is_in_the_catalogue() -> None:
    uses = list(_error_codes(SPEC.raw))
    assert uses, "the spec shows no error codes at all"
    unknown = {code for _, code in uses if code not in CATALOGUE.codes}
    assert not unknown


def _examples_by_status() -> Iterator[tuple[str, str, str]]:
    """(operation, status, code) for every error example an operation's responses show."""
    for item in SPEC.raw["paths"].values():
        for method in HTTP_METHODS:
            op = item.get(method)
            if not op:
                continue
            for status, response in op["responses"].items():
                if "$ref" in response:
                    response = SPEC.raw["components"]["responses"][
                        response["$ref"].rsplit("/", 1)[1]
                    ]
                for _, code in _error_codes(response.get("content", {})):
                    yield op["operationId"], str(status), code


def test_every_error_example_travels_with_its_catalogue_status() -> None:
    shown = list(_examples_by_status())
    assert shown
    wrong = [
        (op, status, code) for op, status, code in shown if str(CATALOGUE.status_of(code)) != status
    ]
    assert not wrong


def test_x_sandbox_codes_answer_a_documented_status() -> None:
    for op in SPEC.operations:
        for _, code in op.hints.codes():
            assert CATALOGUE.status_of(code) in op.documented_statuses, (op.operation_id, code)


EXPECTED_CODES = {
    "AUTH_REQUIRED": 401,
    "AUTH_DISABLED": 401,
    "SCOPE_DENIED": 403,
    "FORBIDDEN": 403,
    "API_KEY_FORBIDDEN": 403,
    "RATE_LIMITED": 429,
    "VALIDATION_ERROR": 400,
    "NOT_FOUND": 404,
    "METHOD_NOT_ALLOWED": 405,
    "CONFLICT": 409,
    "PAYLOAD_TOO_LARGE": 413,
    "UNSUPPORTED_MEDIA_TYPE": 415,
    "INTERNAL_ERROR": 500,
}


@pytest.mark.parametrize(("code", "status"), sorted(EXPECTED_CODES.items()))
def test_the_catalogue_has_the_documented_codes(code: str, status: int) -> None:
    assert CATALOGUE.status_of(code) == status


def test_catalogue_codes_are_unique_upper_snake_and_have_a_meaning() -> None:
    entries = load_yaml(CATALOGUE_PATH)["errors"]
    codes = [entry["code"] for entry in entries]
    assert len(codes) == len(set(codes))
    assert all(re.fullmatch(r"[A-Z][A-Z0-9]*(_[A-Z0-9]+)*", code) for code in codes)
    assert all(400 <= int(e["status"]) <= 599 and e["meaning"].strip() for e in entries)


def test_catalogue_defaults_name_codes_of_their_own_status() -> None:
    for status, code in CATALOGUE.defaults.items():
        assert CATALOGUE.status_of(code) == status, (status, code)

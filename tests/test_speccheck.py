"""`opsmerge-sandbox spec check`: the bundled spec passes; each convention rule catches its breach.

Every broken spec is the bundled one with one thing changed, so a rule that fires on anything
else shows up as an extra problem. The operations to break are picked from the loaded spec by
what they are (a list, a write, a deprecated one), not by name.
"""

from __future__ import annotations

import copy
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from opsmerge_sandbox.catalogue import load_catalogue
from opsmerge_sandbox.spec import Operation, load_spec
from opsmerge_sandbox.speccheck import Problem, check_spec, lint_document

Raw = dict[str, Any]
SPEC = load_spec()
CATALOGUE = load_catalogue()


def _label(op: Operation) -> str:
    return f"{op.method} {op.path} ({op.operation_id})"


def _pick(predicate: Callable[[Operation], bool]) -> Operation:
    return next(op for op in SPEC.operations if predicate(op))


READ_OP = _pick(lambda op: op.method == "GET" and bool(op.scopes) and op.kind == "get")
WRITE_OP = _pick(lambda op: op.method == "POST" and bool(op.scopes) and op.kind == "create")
LIST_OP = _pick(lambda op: op.kind == "list" and bool(op.scopes) and not op.deprecated)
DEPRECATED_OP = _pick(lambda op: op.deprecated)
PLAIN_OP = _pick(lambda op: not op.deprecated and op.kind == "get")
CODE_OP = _pick(lambda op: op.hints.conflict_code is not None)
GUARDED_OP = _pick(lambda op: bool(op.hints.refuse_when) and "409" not in op.responses)
WHEN_OP = _pick(lambda op: bool(op.hints.when))
NOW_OP = _pick(lambda op: "$now" in op.hints.sets.values())
NESTED_OP = _pick(lambda op: op.hints.parent is not None)
CASCADE_OP = _pick(lambda op: bool(op.hints.cascade))
CREATES_OP = _pick(lambda op: op.hints.creates is not None)
BLOCKED_UPDATE_OP = _pick(
    lambda op: op.kind == "update" and bool(SPEC.collections[op.hints.collection or ""].blockers)
)


def _guard(raw: Raw) -> dict[str, Any]:
    guards: list[dict[str, Any]] = _op(raw, GUARDED_OP)["x-sandbox"]["refuse-when"]
    return guards[0]


def _broken(mutate: Callable[[Raw], None]) -> Raw:
    raw = copy.deepcopy(SPEC.raw)
    mutate(raw)
    return raw


def _op(raw: Raw, op: Operation) -> dict[str, Any]:
    return raw["paths"][op.path][op.method.lower()]


def _success(raw: Raw, op: Operation) -> dict[str, Any]:
    return _op(raw, op)["responses"][str(op.success_status)]


def _inline_response(raw: Raw, op: Operation, status: str) -> dict[str, Any]:
    """Replace a `$ref`'d response by a copy of its target, so a change touches one operation."""
    responses = _op(raw, op)["responses"]
    node = responses[status]
    if "$ref" in node:
        name = node["$ref"].rsplit("/", 1)[1]
        node = copy.deepcopy(raw["components"]["responses"][name])
        responses[status] = node
    return node


@pytest.fixture(scope="module")
def bundled_problems() -> list[Problem]:
    return check_spec(SPEC.raw, CATALOGUE)


def test_bundled_spec_has_no_problems(bundled_problems: list[Problem]) -> None:
    assert bundled_problems == []


def _set(path: tuple[str, ...], value: Any) -> Callable[[dict[str, Any]], None]:
    def apply(node: dict[str, Any]) -> None:
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value

    return apply


# (test id, mutation, where, rule, words the message must contain)
BREACHES: list[tuple[str, Callable[[Raw], None], str, str, str]] = [
    (
        "operationId missing",
        lambda raw: _op(raw, READ_OP).pop("operationId"),
        f"{READ_OP.method} {READ_OP.path}",
        "operation-id",
        "no operationId",
    ),
    (
        "operationId duplicated",
        lambda raw: _op(raw, SPEC.operations[1]).__setitem__(
            "operationId", SPEC.operations[0].operation_id
        ),
        f"{SPEC.operations[1].method} {SPEC.operations[1].path} "
        f"({SPEC.operations[0].operation_id})",
        "operation-id",
        "already used by",
    ),
    (
        "two tags",
        lambda raw: _op(raw, READ_OP)["tags"].append("Extra"),
        _label(READ_OP),
        "tag",
        "exactly one tag",
    ),
    (
        "undeclared tag",
        lambda raw: _op(raw, READ_OP).__setitem__("tags", ["Nowhere"]),
        _label(READ_OP),
        "tag",
        "not declared",
    ),
    (
        "no summary",
        lambda raw: _op(raw, WRITE_OP).pop("summary"),
        _label(WRITE_OP),
        "summary",
        "no summary",
    ),
    (
        "unknown stability",
        lambda raw: _op(raw, WRITE_OP).__setitem__("x-stability", "experimental"),
        _label(WRITE_OP),
        "stability",
        "'experimental'",
    ),
    (
        "no security",
        lambda raw: _op(raw, READ_OP).pop("security"),
        _label(READ_OP),
        "security",
        "no security requirement",
    ),
    (
        "two scopes",
        lambda raw: _op(raw, READ_OP)["security"][0]["bearerAuth"].append("clients:read"),
        _label(READ_OP),
        "security",
        "at most one scope",
    ),
    (
        "scope not family:level",
        lambda raw: _op(raw, READ_OP).__setitem__("security", [{"bearerAuth": ["everything"]}]),
        _label(READ_OP),
        "security",
        "not family:level",
    ),
    (
        "write scope on a GET",
        lambda raw: _op(raw, READ_OP).__setitem__(
            "security", [{"bearerAuth": [f"{READ_OP.family}:write"]}]
        ),
        _label(READ_OP),
        "security",
        "reads need a :read scope",
    ),
    (
        "read scope on a POST",
        lambda raw: _op(raw, WRITE_OP).__setitem__(
            "security", [{"bearerAuth": [f"{WRITE_OP.family}:read"]}]
        ),
        _label(WRITE_OP),
        "security",
        ":write or :execute",
    ),
    (
        "sessionAuth with scopes",
        lambda raw: _op(raw, WRITE_OP).__setitem__("security", [{"sessionAuth": ["x:write"]}]),
        _label(WRITE_OP),
        "security",
        "sessionAuth takes no scopes",
    ),
    (
        "success body not the data envelope",
        lambda raw: _success(raw, READ_OP)["content"]["application/json"].__setitem__(
            "schema", {"type": "object", "properties": {"id": {"type": "string"}}}
        ),
        _label(READ_OP),
        "success-envelope",
        "data envelope",
    ),
    (
        "list body without the page fields",
        lambda raw: _success(raw, LIST_OP)["content"]["application/json"].__setitem__(
            "schema",
            {"type": "object", "required": ["data"], "properties": {"data": {"type": "array"}}},
        ),
        _label(LIST_OP),
        "success-envelope",
        "data.items, data.total, data.page, data.per_page",
    ),
    (
        "404 missing",
        lambda raw: _op(raw, READ_OP)["responses"].pop("404"),
        _label(READ_OP),
        "error-responses",
        "lacks error responses 404",
    ),
    (
        "error response with its own schema",
        lambda raw: _inline_response(raw, WRITE_OP, "400")["content"][
            "application/json"
        ].__setitem__("schema", {"type": "object"}),
        _label(WRITE_OP),
        "error-responses",
        "400 response does not use #/components/schemas/Error",
    ),
    (
        "success response without a rate-limit header",
        lambda raw: _success(raw, WRITE_OP)["headers"].pop("X-RateLimit-Reset"),
        _label(WRITE_OP),
        "rate-limit-headers",
        "lacks X-RateLimit-Reset",
    ),
    (
        "error response without rate-limit headers",
        lambda raw: _inline_response(raw, READ_OP, "404").pop("headers"),
        _label(READ_OP),
        "rate-limit-headers",
        "404 response lacks X-RateLimit-Limit, X-RateLimit-Remaining, X-RateLimit-Reset",
    ),
    (
        "429 without Retry-After",
        lambda raw: _inline_response(raw, LIST_OP, "429")["headers"].pop("Retry-After"),
        _label(LIST_OP),
        "auth-headers",
        "Retry-After",
    ),
    (
        "401 without WWW-Authenticate",
        lambda raw: _inline_response(raw, LIST_OP, "401")["headers"].pop("WWW-Authenticate"),
        _label(LIST_OP),
        "auth-headers",
        "WWW-Authenticate",
    ),
    (
        "deprecated without x-sunset",
        lambda raw: _op(raw, DEPRECATED_OP).pop("x-sunset"),
        _label(DEPRECATED_OP),
        "deprecation",
        "no x-sunset",
    ),
    (
        "deprecated without x-deprecated-at",
        lambda raw: _op(raw, DEPRECATED_OP).pop("x-deprecated-at"),
        _label(DEPRECATED_OP),
        "deprecation",
        "no x-deprecated-at",
    ),
    (
        "deprecated without the Sunset header",
        lambda raw: _success(raw, DEPRECATED_OP)["headers"].pop("Sunset"),
        _label(DEPRECATED_OP),
        "deprecation",
        "lacks Sunset",
    ),
    (
        "deprecated without the Deprecation header",
        lambda raw: _success(raw, DEPRECATED_OP)["headers"].pop("Deprecation"),
        _label(DEPRECATED_OP),
        "deprecation",
        "lacks Deprecation",
    ),
    (
        "sunset that is not a date",
        lambda raw: _op(raw, DEPRECATED_OP).__setitem__("x-sunset", "soon"),
        _label(DEPRECATED_OP),
        "deprecation",
        "not a YYYY-MM-DD date",
    ),
    (
        "sunset on an operation that is not deprecated",
        lambda raw: _op(raw, PLAIN_OP).__setitem__("x-sunset", "2030-01-01"),
        _label(PLAIN_OP),
        "deprecation",
        "not deprecated",
    ),
    (
        "list without per_page",
        lambda raw: _op(raw, LIST_OP).__setitem__(
            "parameters",
            [p for p in _op(raw, LIST_OP)["parameters"] if "PerPage" not in p.get("$ref", "")],
        ),
        _label(LIST_OP),
        "pagination",
        "no per_page query parameter",
    ),
    (
        "list whose per_page allows 200",
        lambda raw: _op(raw, LIST_OP).__setitem__(
            "parameters",
            [
                p
                if "PerPage" not in p.get("$ref", "")
                else {
                    "name": "per_page",
                    "in": "query",
                    "schema": {"type": "integer", "minimum": 1, "maximum": 200, "default": 50},
                }
                for p in _op(raw, LIST_OP)["parameters"]
            ],
        ),
        _label(LIST_OP),
        "pagination",
        "maximum 100",
    ),
    (
        "error example with a code the catalogue lacks",
        lambda raw: _inline_response(raw, READ_OP, "404")["content"][
            "application/json"
        ].__setitem__("example", {"error": {"code": "NO_SUCH_CODE", "message": "x"}}),
        _label(READ_OP),
        "error-examples",
        "NO_SUCH_CODE, which is not in the error catalogue",
    ),
    (
        "error example whose code has another status",
        lambda raw: _inline_response(raw, READ_OP, "404")["content"][
            "application/json"
        ].__setitem__("example", {"error": {"code": "SCOPE_DENIED", "message": "x"}}),
        _label(READ_OP),
        "error-examples",
        "SCOPE_DENIED, which the catalogue gives status 403",
    ),
    (
        "named error example with a wrong status",
        lambda raw: _inline_response(raw, READ_OP, "403")["content"][
            "application/json"
        ].__setitem__(
            "examples", {"gone": {"value": {"error": {"code": "NOT_FOUND", "message": "x"}}}}
        ),
        _label(READ_OP),
        "error-examples",
        "example 'gone'",
    ),
    (
        "x-sandbox collection without a schema",
        lambda raw: _op(raw, READ_OP)["x-sandbox"].__setitem__("collection", "nowhere"),
        _label(READ_OP),
        "x-sandbox",
        "'nowhere' names no schema with a matching x-collection",
    ),
    (
        "x-sandbox missing",
        lambda raw: _op(raw, READ_OP).pop("x-sandbox"),
        _label(READ_OP),
        "x-sandbox",
        "no x-sandbox",
    ),
    (
        "x-sandbox code outside the catalogue",
        lambda raw: _op(raw, CODE_OP)["x-sandbox"].__setitem__("conflict-code", "NO_SUCH_CODE"),
        _label(CODE_OP),
        "x-sandbox",
        "not in the error catalogue",
    ),
    (
        "refuse-when code outside the catalogue",
        lambda raw: _guard(raw).__setitem__("code", "NO_SUCH_CODE"),
        _label(GUARDED_OP),
        "x-sandbox",
        "refuse-when[0].code 'NO_SUCH_CODE' is not in the error catalogue",
    ),
    (
        "refuse-when code whose status is not documented",
        lambda raw: _guard(raw).__setitem__("code", "CONFLICT"),
        _label(GUARDED_OP),
        "x-sandbox",
        "refuse-when[0].code CONFLICT answers 409, which is not documented",
    ),
    (
        "a collection's refuse-while code that an update may answer, not documented",
        lambda raw: _op(raw, BLOCKED_UPDATE_OP)["responses"].pop("409"),
        _label(BLOCKED_UPDATE_OP),
        "x-sandbox",
        "x-refuse-while[0].code CONFLICT answers 409, which is not documented",
    ),
    (
        "refuse-when guard without a condition",
        lambda raw: _guard(raw).pop("contains"),
        _label(GUARDED_OP),
        "x-sandbox",
        "exactly one of contains, equals or not-equals",
    ),
    (
        "refuse-when guard without a message",
        lambda raw: _guard(raw).pop("message"),
        _label(GUARDED_OP),
        "x-sandbox",
        "needs a message",
    ),
    (
        "x-sandbox key the sandbox does not know",
        lambda raw: _op(raw, READ_OP)["x-sandbox"].__setitem__("colection", "clients"),
        _label(READ_OP),
        "x-sandbox",
        "x-sandbox has an unknown key 'colection'",
    ),
    (
        "x-sandbox.when that is not a mapping",
        lambda raw: _op(raw, WHEN_OP)["x-sandbox"].__setitem__("when", ["open"]),
        _label(WHEN_OP),
        "x-sandbox",
        "x-sandbox.when must be a mapping of field names",
    ),
    (
        "x-sandbox.when with one value instead of a list",
        lambda raw: _op(raw, WHEN_OP)["x-sandbox"]["when"].update(
            {f: v[0] for f, v in _op(raw, WHEN_OP)["x-sandbox"]["when"].items()}
        ),
        _label(WHEN_OP),
        "x-sandbox",
        "must be a non-empty list of allowed values",
    ),
    (
        "x-sandbox.set with a mistyped expression",
        lambda raw: _op(raw, NOW_OP)["x-sandbox"]["set"].update(
            {f: "$nwo" for f, v in _op(raw, NOW_OP)["x-sandbox"]["set"].items() if v == "$now"}
        ),
        _label(NOW_OP),
        "x-sandbox",
        "'$nwo' is not an expression",
    ),
    (
        "x-sandbox.parent without its path parameter",
        lambda raw: _op(raw, NESTED_OP)["x-sandbox"]["parent"].pop("param"),
        _label(NESTED_OP),
        "x-sandbox",
        "x-sandbox.parent.param must be a non-empty string, got None",
    ),
    (
        "x-sandbox.creates naming no collection",
        lambda raw: _op(raw, CREATES_OP)["x-sandbox"]["creates"].__setitem__(
            "collection", "nowhere"
        ),
        _label(CREATES_OP),
        "x-sandbox",
        "x-sandbox.creates.collection 'nowhere' names no schema",
    ),
    (
        "x-sandbox.cascade naming no collection",
        lambda raw: _op(raw, CASCADE_OP)["x-sandbox"].__setitem__("cascade", ["nothing_here"]),
        _label(CASCADE_OP),
        "x-sandbox",
        "cascade 'nothing_here' names no schema with a matching x-collection",
    ),
]


@pytest.mark.parametrize(
    ("mutate", "where", "rule", "words"),
    [pytest.param(m, w, r, words, id=name) for name, m, w, r, words in BREACHES],
)
def test_each_convention_breach_gives_exactly_its_problem(
    mutate: Callable[[Raw], None], where: str, rule: str, words: str
) -> None:
    problems = lint_document(_broken(mutate), CATALOGUE)
    assert len(problems) == 1, problems
    [problem] = problems
    assert (problem.where, problem.rule) == (where, rule)
    assert words in problem.message


def test_a_refuse_while_code_is_named_at_its_own_place_after_a_malformed_rule() -> None:
    """The check reads the rules the sandbox parsed, which leave a malformed one out: the code
    it names is still pointed at where it is declared, not where it lands among the parsed."""
    schema_name = SPEC.collections[BLOCKED_UPDATE_OP.hints.collection or ""].schema_name

    def mutate(raw: Raw) -> None:
        raw["components"]["schemas"][schema_name]["x-refuse-while"].insert(0, {"code": 7})
        _op(raw, BLOCKED_UPDATE_OP)["responses"].pop("409")

    problems = lint_document(_broken(mutate), CATALOGUE)
    codes = [p for p in problems if p.rule == "x-sandbox" and "answers 409" in p.message]
    assert codes and all("x-refuse-while[1].code CONFLICT" in p.message for p in codes), problems


def test_a_breach_in_a_shared_response_is_reported_once_at_the_component() -> None:
    raw = _broken(
        lambda raw: raw["components"]["responses"]["RateLimited"]["headers"].pop("Retry-After")
    )
    problems = lint_document(raw, CATALOGUE)
    users = [op for op in SPEC.operations if "429" in op.responses]
    assert len(problems) == 1, problems
    assert problems[0].where == "components.responses.RateLimited"
    assert "Retry-After" in problems[0].message
    assert f"and {len(users) - 3} more" in problems[0].message


def test_a_broken_ref_is_reported_where_it_is_and_nothing_crashes() -> None:
    def mutate(raw: Raw) -> None:
        _success(raw, WRITE_OP)["content"]["application/json"]["schema"] = {
            "$ref": "#/components/schemas/Nowhere"
        }

    problems = check_spec(_broken(mutate), CATALOGUE)
    refs = [p for p in problems if p.rule == "refs"]
    assert [p.where for p in refs] == [_label(WRITE_OP)]
    assert "#/components/schemas/Nowhere" in refs[0].message
    assert all(p.rule in ("refs", "openapi") for p in problems), problems


def test_duplicate_collection_names_are_reported_at_the_schema() -> None:
    first, second = list(SPEC.collections.values())[:2]
    raw = _broken(
        _set(("components", "schemas", second.schema_name, "x-collection", "name"), first.name)
    )
    problems = lint_document(raw, CATALOGUE)
    collection_problems = [p for p in problems if p.rule == "collections"]
    assert [p.where for p in collection_problems] == [f"components.schemas.{second.schema_name}"]


def _lifecycle_schema(raw: Raw) -> tuple[str, dict[str, Any]]:
    return next(
        (name, schema)
        for name, schema in raw["components"]["schemas"].items()
        if "x-lifecycle" in schema
    )


@pytest.mark.parametrize(
    ("mutate", "words"),
    [
        pytest.param(
            lambda schema: schema["x-lifecycle"]["steps"].insert(
                0, schema["x-lifecycle"]["steps"].pop(1)
            ),
            "x-lifecycle.steps[1].after 0 comes before the step above it",
            id="steps out of order",
        ),
        pytest.param(
            lambda schema: schema["x-lifecycle"]["steps"][0].__setitem__("after", "soon"),
            "x-lifecycle.steps[0].after must be a number of seconds, 0 or more, got 'soon'",
            id="a step without a time",
        ),
        pytest.param(
            lambda schema: schema.__setitem__("x-create-set", ["status"]),
            "x-create-set must be a mapping of field names",
            id="a create-set that is not a mapping",
        ),
    ],
)
def test_a_broken_collection_extension_is_reported_at_its_schema(
    mutate: Callable[[dict[str, Any]], None], words: str
) -> None:
    def change(raw: Raw) -> None:
        mutate(_lifecycle_schema(raw)[1])

    raw = _broken(change)
    problems = lint_document(raw, CATALOGUE)
    assert len(problems) == 1, problems
    [problem] = problems
    where = f"components.schemas.{_lifecycle_schema(raw)[0]}"
    assert (problem.where, problem.rule) == (where, "collections")
    assert words in problem.message


def test_an_error_schema_without_code_is_reported() -> None:
    raw = _broken(
        _set(("components", "schemas", "Error", "properties", "error", "required"), ["message"])
    )
    problems = lint_document(raw, CATALOGUE)
    assert [(p.where, p.rule) for p in problems] == [("components.schemas.Error", "error-schema")]


# --- the OpenAPI validator step ----------------------------------------------------------------


def test_a_response_without_description_is_reported_by_the_validator_at_its_operation() -> None:
    status = str(READ_OP.success_status)
    problems = check_spec(_broken(lambda raw: _success(raw, READ_OP).pop("description")), CATALOGUE)
    assert len(problems) == 1, problems
    [problem] = problems
    assert (problem.where, problem.rule) == (_label(READ_OP), "openapi")
    assert '"description" is a required property' in problem.message
    assert f"$.paths['{READ_OP.path}'].get.responses['{status}']" in problem.message


def test_paths_that_are_not_an_object_are_reported_without_a_crash() -> None:
    doc = {"openapi": "3.1.0", "info": {"title": "x", "version": "1"}, "paths": ["/agents"]}
    problems = [p for p in check_spec(doc, CATALOGUE) if p.rule == "openapi"]
    assert [p.where for p in problems] == ["paths"], problems
    assert "is not of type" in problems[0].message


def test_an_invalid_schema_keyword_is_placed_at_its_component() -> None:
    schemas = SPEC.raw["components"]["schemas"]

    def own_part(name: str) -> dict[str, Any]:
        parts = schemas[name].get("allOf") or [{}, {}]
        return dict(parts[1]) if len(parts) > 1 else {}

    collection = next(
        c
        for c in SPEC.collections.values()
        if "id" in own_part(c.schema_name).get("properties", {})
    )
    name = collection.schema_name
    where: Any = ("components", "schemas", name, "allOf", 1, "properties", "id", "type")
    raw = _broken(_set(where, "strng"))
    problems = check_spec(raw, CATALOGUE)
    assert [(p.where, p.rule) for p in problems] == [(f"components.schemas.{name}", "openapi")]
    assert f"$.components.schemas.{name}.allOf[1].properties.id.type" in problems[0].message


# --- the command -------------------------------------------------------------------------------


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "opsmerge_sandbox.cli", "spec", "check", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_cli_accepts_the_bundled_spec() -> None:
    result = _run()
    assert result.returncode == 0, result.stdout + result.stderr
    assert "OK" in result.stdout
    assert f"{len(SPEC.operations)} operations" in result.stdout


def test_cli_reports_a_broken_spec_with_exit_1(tmp_path: Path) -> None:
    raw = _broken(lambda raw: _op(raw, READ_OP).pop("summary"))
    path = tmp_path / "broken.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    result = _run(str(path))
    assert result.returncode == 1, result.stdout + result.stderr
    assert _label(READ_OP) in result.stdout
    assert "has no summary" in result.stdout
    assert "1 problem" in result.stdout


def test_cli_exits_2_with_a_readable_message_for_a_missing_file(tmp_path: Path) -> None:
    result = _run(str(tmp_path / "missing.yaml"))
    assert result.returncode == 2
    assert "cannot read" in result.stderr and "missing.yaml" in result.stderr
    assert "Traceback" not in result.stdout + result.stderr


def test_cli_exits_2_with_a_readable_message_for_invalid_yaml(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("openapi: 3.1.0\npaths: [unclosed\n")
    result = _run(str(path))
    assert result.returncode == 2
    assert "not valid YAML" in result.stderr and "line" in result.stderr
    assert "Traceback" not in result.stdout + result.stderr


def test_an_update_whose_body_cannot_enter_a_refuse_while_state_need_not_document_its_code() -> (
    None
):
    """An update is held to a collection's `x-refuse-while` code only when its body may set a
    rule's `into` field: a contract's status is not in its update's body, so voiding, which an
    update cannot do, asks no 409 of it; a client's update may set `status: archived`, so
    without its 409 the check says so (before, any update of such a collection was held)."""
    schema_name = SPEC.collections[BLOCKED_UPDATE_OP.hints.collection or ""].schema_name
    writable = f"{schema_name}Writable"

    def closed(raw: Raw) -> None:
        _op(raw, BLOCKED_UPDATE_OP)["responses"].pop("409")
        raw["components"]["schemas"][writable]["properties"].pop("status")

    def left_open(raw: Raw) -> None:
        _op(raw, BLOCKED_UPDATE_OP)["responses"].pop("409")

    def refuse_while(mutate: Callable[[Raw], None]) -> list[Problem]:
        problems = lint_document(_broken(mutate), CATALOGUE)
        return [p for p in problems if "x-refuse-while" in p.message]

    assert refuse_while(closed) == []
    assert [p.where for p in refuse_while(left_open)] == [_label(BLOCKED_UPDATE_OP)]
    assert "409" not in _op(SPEC.raw, _pick(lambda op: op.operation_id == "updateContract"))[
        "responses"
    ]

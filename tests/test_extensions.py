"""The spec's vendor extensions are parsed once, completely, into values no reader can change.

Every broken spec here is the bundled one with a few things changed, so the problems a test
expects are exactly the ones it made.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import os
import pickle
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from litestar.testing import TestClient

from opsmerge_sandbox import startcache
from opsmerge_sandbox.extensions import (
    OPERATION_KEYS,
    ExtensionError,
    OperationHints,
    freeze,
    parse_collections,
    parse_operation,
    thaw,
)
from opsmerge_sandbox.spec import SPEC_CODE, SPEC_PATH, Operation, load_spec, parse_spec
from tests.conftest import bearer, key_named, make_app

SPEC = load_spec()
Raw = dict[str, Any]

# each x-sandbox key of the spec -> the typed field that holds it
FIELD_OF = {
    "kind": "kind",
    "collection": "collection",
    "id": "fixed_id",
    "parent": "parent",
    "filter-fields": "filter_fields",
    "search": "search_fields",
    "defaults": "defaults",
    "set": "sets",
    "creates": "creates",
    "when": "when",
    "conflict-code": "conflict_code",
    "unique": "unique_fields",
    "refuse-when": "refuse_when",
    "soft-delete": "soft_delete",
    "cascade": "cascade",
    "audit": "audit",
    "filter-ranges": "filter_ranges",
}


def _where(op: Operation) -> str:
    return f"{op.method} {op.path} ({op.operation_id})"


def _pick(predicate: Any) -> Operation:
    return next(op for op in SPEC.operations if predicate(op))


def _op(raw: Raw, op: Operation) -> dict[str, Any]:
    return raw["paths"][op.path][op.method.lower()]


def test_every_x_sandbox_key_in_the_spec_lands_in_a_typed_field() -> None:
    seen = set()
    for op in SPEC.operations:
        raw = op.raw["x-sandbox"]
        for key, value in raw.items():
            seen.add(key)
            typed = getattr(op.hints, FIELD_OF[key])
            assert typed not in (None, (), {}, ""), (op.operation_id, key)
            if isinstance(value, str | bool):
                assert typed == value, (op.operation_id, key)
            elif key in ("search", "unique", "cascade"):
                assert list(typed) == value
            elif key in ("set", "defaults", "filter-fields", "soft-delete"):
                assert thaw(typed) == value
            elif key == "when":
                assert {f: list(v) for f, v in typed.items()} == value
    assert seen == set(FIELD_OF), "a key of the spec has no test here, or a field no key"


def test_every_key_the_parser_knows_has_a_field_and_a_line_in_the_readme() -> None:
    assert set(FIELD_OF) == OPERATION_KEYS
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    [row] = [line for line in readme.splitlines() if line.startswith("| `x-sandbox` |")]
    assert [key for key in sorted(OPERATION_KEYS) if f"`{key}`" not in row] == []


def test_operation_kind_comes_from_the_parsed_hints() -> None:
    assert all(op.kind == op.hints.kind and op.kind for op in SPEC.operations)


def test_the_hints_and_everything_in_them_are_read_only() -> None:
    action = _pick(lambda op: op.hints.sets and op.hints.when)
    hints = action.hints
    with pytest.raises(dataclasses.FrozenInstanceError):
        hints.kind = "list"  # type: ignore[misc]
    with pytest.raises(TypeError):
        hints.sets["status"] = "changed"  # type: ignore[index]
    with pytest.raises(TypeError):
        hints.when["status"] = ("anything",)  # type: ignore[index]
    assert isinstance(next(iter(hints.when.values())), tuple)
    lifecycle = next(c.lifecycle for c in SPEC.collections.values() if c.lifecycle)
    with pytest.raises(TypeError):
        lifecycle.steps[0].sets["status"] = "changed"  # type: ignore[index]
    created = next(c.create_set for c in SPEC.collections.values() if c.create_set)
    with pytest.raises(TypeError):
        created["status"] = "changed"  # type: ignore[index]


def test_frozen_values_thaw_into_fresh_json_containers() -> None:
    value = {"tags": ["a", {"b": [1, None]}], "n": 1}
    frozen = freeze(value)
    first, second = thaw(frozen), thaw(frozen)
    assert first == value and second == value
    assert first["tags"] is not second["tags"]
    assert isinstance(first["tags"], list) and isinstance(first["tags"][1]["b"], list)


# --- the whole spec at load --------------------------------------------------------------------


def test_loading_a_spec_with_broken_extensions_lists_every_problem_and_where() -> None:
    raw = copy.deepcopy(SPEC.raw)
    listing = _pick(lambda op: op.kind == "list")
    guarded = _pick(lambda op: bool(op.hints.when))
    _op(raw, listing)["x-sandbox"]["kind"] = "lsit"
    _op(raw, guarded)["x-sandbox"]["when"] = ["open"]
    schema_name, lifecycle = next(
        (name, s["x-lifecycle"])
        for name, s in raw["components"]["schemas"].items()
        if "x-lifecycle" in s
    )
    steps = lifecycle["steps"]
    steps[0], steps[1] = steps[1], steps[0]
    with pytest.raises(ExtensionError) as caught:
        parse_spec(raw, SPEC.path, SPEC.catalogue)
    found = [str(p) for p in caught.value.problems]
    assert len(found) == 3, found
    assert f"{_where(listing)}: x-sandbox.kind is 'lsit'; expected one of" in found[1] + found[2]
    assert f"{_where(guarded)}: x-sandbox.when must be a mapping of field names" in "".join(found)
    assert found[0].startswith(f"components.schemas.{schema_name}: x-lifecycle.steps[1].after")
    assert "list steps in order" in found[0]
    message = str(caught.value)
    assert all(p in message for p in found)


def test_a_sandbox_refuses_to_start_on_a_spec_whose_extensions_do_not_parse(
    tmp_path: Path,
) -> None:
    raw = yaml.safe_load(SPEC_PATH.read_text())
    op = _pick(lambda op: op.kind == "get")
    _op(raw, op)["x-sandbox"]["colection"] = _op(raw, op)["x-sandbox"].pop("collection")
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    with pytest.raises(ExtensionError) as caught:
        make_app(spec_path=path)
    assert [str(p) for p in caught.value.problems] == [
        f"{_where(op)}: x-sandbox has an unknown key 'colection' (known: "
        f"{', '.join(sorted(OPERATION_KEYS))})",
        f"{_where(op)}: x-sandbox.kind get needs x-sandbox.collection",
    ]


def test_serve_on_such_a_spec_exits_with_every_problem_and_no_traceback(tmp_path: Path) -> None:
    raw = yaml.safe_load(SPEC_PATH.read_text())
    listing = _pick(lambda op: op.kind == "list")
    guarded = _pick(lambda op: bool(op.hints.when))
    _op(raw, listing)["x-sandbox"]["kind"] = "lsit"
    _op(raw, guarded)["x-sandbox"]["when"] = "open"
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    done = subprocess.run(
        [sys.executable, "-m", "opsmerge_sandbox.cli", "serve", "--spec", str(path), "--port", "1"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "COLUMNS": "400"},
    )
    said = done.stdout + done.stderr
    assert done.returncode == 2 and "Traceback" not in said, said
    assert f"{_where(listing)}: x-sandbox.kind is 'lsit'" in said
    assert f"{_where(guarded)}: x-sandbox.when must be a mapping of field names" in said


def test_duplicate_collection_names_and_prefixes_are_problems() -> None:
    schemas = {
        "A": {"x-collection": {"name": "things", "id-prefix": "thg"}},
        "B": {"x-collection": {"name": "things", "id-prefix": "oth"}},
        "C": {"x-collection": {"name": "others", "id-prefix": "thg"}},
        "D": {"x-collection": {"name": "bare"}},
    }
    found, problems = parse_collections(schemas)
    assert sorted(found) == ["others", "things"] and found["things"][0] == "A"
    assert [str(p) for p in problems] == [
        "components.schemas.B: x-collection name 'things' is also used by A",
        "components.schemas.C: x-collection id-prefix 'thg' is also used by A",
        "components.schemas.D: x-collection needs name and id-prefix",
    ]


# --- the parser never crashes, whatever it is given ---------------------------------------------

_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4)
    | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)
_KEYS = st.sampled_from([*FIELD_OF, "unknown"])
_EXTENSION = st.dictionaries(_KEYS, _JSON, max_size=6) | _JSON
_GUARDS = st.lists(
    st.dictionaries(st.sampled_from(["field", "contains", "equals", "last", "code", "message"]),
                    _JSON, max_size=6),
    max_size=3,
)


@settings(max_examples=300, deadline=None)
@given(ext=_EXTENSION, guards=_GUARDS)
def test_any_x_sandbox_value_gives_hints_and_problems_never_an_exception(
    ext: Any, guards: Any
) -> None:
    if isinstance(ext, dict):
        ext["refuse-when"] = guards
    hints, problems = parse_operation(ext, "op", {"clients"})
    assert isinstance(hints, OperationHints)
    assert all(p.where == "op" and p.message for p in problems)
    if not problems:
        assert hints.kind and (hints.kind == "identity" or hints.collection == "clients")


@settings(max_examples=200, deadline=None)
@given(
    decl=_JSON | st.dictionaries(st.sampled_from(["name", "id-prefix", "x"]), _JSON),
    lifecycle=_JSON
    | st.fixed_dictionaries(
        {"steps": st.lists(st.dictionaries(st.sampled_from(["after", "set"]), _JSON))}
    ),
    create_set=_JSON,
)
def test_any_collection_extension_gives_problems_never_an_exception(
    decl: Any, lifecycle: Any, create_set: Any
) -> None:
    schema = {"x-collection": decl, "x-lifecycle": lifecycle, "x-create-set": create_set}
    found, problems = parse_collections({"S": schema})
    assert all(p.where == "components.schemas.S" for p in problems)
    assert all(isinstance(decl, dict) and name == decl.get("name") for name in found)


# --- the start-up cache ------------------------------------------------------------------------


def test_the_prepared_spec_survives_the_start_up_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.delenv("OPSMERGE_SANDBOX_NO_CACHE", raising=False)
    parts = [b"extensions-test"]
    startcache.cached("spec", parts, lambda: SPEC)

    def must_not_build() -> Any:
        raise AssertionError("the cache entry was not read back")

    again = startcache.cached("spec", parts, must_not_build)
    assert again is not SPEC
    assert [op.hints for op in again.operations] == [op.hints for op in SPEC.operations]
    assert again.collections == SPEC.collections
    assert pickle.loads(pickle.dumps(again.operations[0].hints)) == SPEC.operations[0].hints


def test_a_value_pickle_cannot_take_is_still_served_and_leaves_no_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.delenv("OPSMERGE_SANDBOX_NO_CACHE", raising=False)
    unpicklable = {"handle": lambda: None}
    assert startcache.cached("spec", [b"unpicklable"], lambda: unpicklable) is unpicklable
    assert list((tmp_path / "opsmerge-sandbox").iterdir()) == []


def test_the_spec_cache_key_covers_every_module_that_builds_the_spec() -> None:
    """An edit to any of them must rebuild the cached spec rather than reuse a stale one."""
    script = (
        "import json, sys, opsmerge_sandbox.spec; "
        "print(json.dumps(sorted(m.__file__ for n, m in sys.modules.items() "
        "if n.startswith('opsmerge_sandbox.') and getattr(m, '__file__', None))))"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, env=env
    )
    package = Path(startcache.PACKAGE)
    imported = {str(Path(f).relative_to(package)) for f in json.loads(out.stdout)}
    assert imported <= set(SPEC_CODE)


# --- what the handlers make of the hints --------------------------------------------------------


@pytest.fixture()
def list_setting_app(tmp_path: Path) -> Iterator[tuple[TestClient, str]]:
    """The bundled spec with a create whose `set` holds a list (a frozen tuple once parsed)."""
    raw = yaml.safe_load(SPEC_PATH.read_text())
    create = _pick(
        lambda op: op.kind == "create"
        and op.body_schema is not None
        and "tags" in op.body_schema.get("properties", {})
    )
    _op(raw, create)["x-sandbox"]["set"] = {"tags": ["from-the-spec"]}
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    app = make_app(spec_path=path)
    with TestClient(app, base_url="http://sandbox.local") as client:
        client.headers.update(bearer(key_named(app, "Owner - full")))
        yield client, create.operation_id


def test_a_list_an_operation_sets_reaches_each_record_as_its_own_list(
    list_setting_app: tuple[TestClient, str],
) -> None:
    client, operation_id = list_setting_app
    op = client.app.state.sandbox.spec.operation(operation_id)  # type: ignore[attr-defined]
    assert op.hints.sets["tags"] == ("from-the-spec",)
    state = client.app.state.sandbox  # type: ignore[attr-defined]
    made = []
    for name in ("First Ltd", "Second Ltd"):
        body = {"name": name}
        response = client.post("/api/v1" + op.path, json=body)
        assert response.status_code == 201, response.text
        assert response.json()["data"]["tags"] == ["from-the-spec"]
        made.append(state.workspaces.get().get(op.hints.collection, response.json()["data"]["id"]))
    assert made[0]["tags"] == ["from-the-spec"] and isinstance(made[0]["tags"], list)
    assert made[0]["tags"] is not made[1]["tags"]

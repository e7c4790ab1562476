"""The keys' domain lives in data: recipe key roles, the spec's key-records mapping, the spec's
owner statuses; and no Python module names a seeded id or a scope of the spec."""

from __future__ import annotations

import copy
import io
import re
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from rich.console import Console

from opsmerge_sandbox.catalogue import load_catalogue
from opsmerge_sandbox.commands.serve import banner
from opsmerge_sandbox.pipeline.authorize import AuthModel
from opsmerge_sandbox.settings import Settings
from opsmerge_sandbox.spec import Spec, load_spec, parse_spec
from opsmerge_sandbox.speccheck import lint_document
from opsmerge_sandbox.world import build_world, load_recipe
from opsmerge_sandbox.world.generator import GenerationError
from opsmerge_sandbox.world.recipe import KeySpec, RecipeError, demo_keys, key_status

ROOT = Path(__file__).resolve().parent.parent
SPEC = load_spec()
SMALL = str(ROOT / "tests" / "contracts_small_recipe.yaml")
EPOCH = datetime(2026, 11, 1, 9, tzinfo=UTC)
HEAD = "seed: 1\nepoch: '2026-01-01T00:00:00Z'\norganisation: {id: o, name: O, region: eu}\n"


def _mapping() -> dict[str, Any]:
    return copy.deepcopy(SPEC.raw["x-sandbox-auth"]["keys"])


def _with_mapping(mapping: Any) -> Spec:
    raw = copy.deepcopy(SPEC.raw)
    raw["x-sandbox-auth"]["keys"] = mapping
    return parse_spec(raw, SPEC.path, SPEC.catalogue)


def _field_showing(mapping: dict[str, Any], source: str) -> str:
    return next(f for f, s in mapping["fields"].items() if s == source)


# --- recipe key roles ----------------------------------------------------------------------------


def test_the_demo_key_is_found_by_its_role_in_every_shipped_recipe() -> None:
    for name in ("default", "large", SMALL):
        demos = demo_keys(load_recipe(name))
        assert [k.role for k in demos] == ["demo"], name
        assert all(k.role is None for k in load_recipe(name).keys if k not in demos)


def test_a_key_without_a_role_is_never_a_demo_key_whatever_its_name(tmp_path: Path) -> None:
    path = tmp_path / "named.yaml"
    path.write_text(
        HEAD + "keys: [{id: key_a, key: om_a, name: Public docs demo, user_id: usr_a},\n"
        "       {id: key_b, key: om_b, name: b, user_id: usr_a, role: demo}]\n"
    )
    assert [k.id for k in demo_keys(load_recipe(str(path)))] == ["key_b"]


def test_the_hosted_banner_prints_only_the_keys_whose_role_is_demo(tmp_path: Path) -> None:
    path = tmp_path / "renamed.yaml"
    path.write_text(
        HEAD + "keys: [{id: key_a, key: om_named_demo_but_no_role, name: Public docs demo,\n"
        "        user_id: usr_a},\n"
        "       {id: key_b, key: om_the_visitor_key, name: Visitors, user_id: usr_a, role: demo}]\n"
    )
    state = SimpleNamespace(recipe=load_recipe(str(path)), default_rate_limit=300)
    printed = {}
    for hosted in (True, False):
        out = io.StringIO()
        banner(Console(file=out, width=300), Settings(hosted=hosted), "127.0.0.1", 4010, state,
               generated_token=True)
        printed[hosted] = out.getvalue()
    assert "om_the_visitor_key" in printed[True]
    assert "om_named_demo_but_no_role" not in printed[True]
    assert "om_named_demo_but_no_role" in printed[False] and "om_the_visitor_key" in printed[False]


@pytest.mark.parametrize("role", ["admin", "Demo", 3, ["demo"]])
def test_an_unknown_key_role_is_refused_naming_the_key_and_the_roles(
    tmp_path: Path, role: Any
) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(
        HEAD + f"keys: [{{id: key_a, key: om_a, name: a, user_id: usr_a, role: {role!r}}}]\n"
    )
    with pytest.raises(RecipeError, match=r"keys\[0\]: role must be one of \('demo',\)"):
        load_recipe(str(path))


# --- key status: one decision, the spec's owner statuses ----------------------------------------


def _key(**over: Any) -> KeySpec:
    base: dict[str, Any] = dict(id="key_x", key="om_x", name="x", user_id="usr_a", access="full",
                                scopes=(), expires_at=None, revoked=False, rate_limit=None)
    return KeySpec(**{**base, **over})


def test_key_status_reads_which_owner_statuses_disable_a_key_from_the_spec() -> None:
    spec_auth = AuthModel.from_spec(SPEC.resolved)
    other = AuthModel.from_spec(
        {"x-sandbox-auth": {**SPEC.resolved["x-sandbox-auth"], "inactive-statuses": ["suspended"],
                            "status-field": "state"}}
    )
    [default_inactive] = sorted(spec_auth.inactive_statuses)
    users = {"usr_a": {"state": "suspended", spec_auth.status_field: default_inactive}}
    assert key_status(_key(), users, EPOCH, other) == "owner_deactivated"
    users = {"usr_a": {"state": "on leave", spec_auth.status_field: default_inactive}}
    assert key_status(_key(), users, EPOCH, other) == "active"
    assert key_status(_key(), users, EPOCH) == "owner_deactivated"  # the bundled spec's own


def test_key_status_of_a_key_whose_owner_is_unknown_is_owner_deactivated() -> None:
    assert key_status(_key(user_id="usr_nobody"), {}, EPOCH) == "owner_deactivated"


# --- the key-records mapping ---------------------------------------------------------------------


def test_key_records_follow_the_spec_mapping_not_fixed_field_names() -> None:
    recipe = load_recipe(SMALL)
    mapping = _mapping()
    name_field = _field_showing(mapping, "name")
    owner_field = _field_showing(mapping, "user_id")
    mapping["fields"][name_field] = "prefix"  # show the prefix where the name was
    mapping["fields"][owner_field] = None
    spec = _with_mapping(mapping)
    world = build_world(spec, recipe, collections=[mapping["collection"]])
    records = {r["id"]: r for r in world[mapping["collection"]]}
    for key in recipe.keys:
        assert records[key.id][name_field] == key.key[:12] + "\u2026"
        assert records[key.id][owner_field] is None


def test_a_spec_without_a_key_mapping_mirrors_no_keys() -> None:
    raw = copy.deepcopy(SPEC.raw)
    collection = raw["x-sandbox-auth"].pop("keys")["collection"]
    spec = parse_spec(raw, SPEC.path, SPEC.catalogue)
    recipe = load_recipe(SMALL)
    ids = {r["id"] for r in build_world(spec, recipe, collections=[collection])[collection]}
    assert not ids & {k.id for k in recipe.keys}


@pytest.mark.parametrize(
    ("change", "words"),
    [
        (lambda m: m.update(collection="nowhere"), "keys.collection 'nowhere' names no"),
        (lambda m: m["fields"].update(no_such_field="name"), "no_such_field is not a property"),
        (lambda m: m["fields"].update({next(iter(m["fields"])): "secret"}), "shows 'secret'"),
        (lambda m: m.update(fields=[]), "keys.fields must map"),
    ],
)
def test_a_bad_key_mapping_is_refused_by_the_spec_check_and_the_generator(
    change: Any, words: str
) -> None:
    mapping = _mapping()
    change(mapping)
    raw = copy.deepcopy(SPEC.raw)
    raw["x-sandbox-auth"]["keys"] = mapping
    problems = [p for p in lint_document(raw, load_catalogue()) if p.rule == "auth-keys"]
    assert len(problems) == 1, problems
    assert problems[0].where == "x-sandbox-auth" and words in problems[0].message
    with pytest.raises(GenerationError, match=re.escape(words)):
        build_world(_with_mapping(mapping), load_recipe(SMALL), collections=[])


def test_the_bundled_key_mapping_passes_the_spec_check() -> None:
    problems = [p for p in lint_document(copy.deepcopy(SPEC.raw), load_catalogue())
                if p.rule == "auth-keys"]
    assert problems == []


def test_recipe_keys_that_do_not_use_the_key_collection_prefix_are_refused(
    tmp_path: Path,
) -> None:
    path = tmp_path / "stray.yaml"
    path.write_text(HEAD + "keys: [{id: tok_a, key: om_a, name: a, user_id: usr_a}]\n")
    with pytest.raises(GenerationError, match=r"\['tok_a'\] do not use the id prefix"):
        build_world(SPEC, load_recipe(str(path)), collections=[])


# --- no domain literals in Python ----------------------------------------------------------------


def test_no_python_module_names_a_seeded_id_or_a_scope_of_the_spec() -> None:
    """The spec and the recipes hold the domain: a module naming one of their ids or scopes
    stops working, quietly, for any other spec or recipe."""
    recipe = load_recipe()
    names = {k.id for k in recipe.keys} | {
        r["id"] for records in recipe.records.values() for r in records
    }
    names |= {s for op in SPEC.operations for s in op.scopes}
    quoted = re.compile(r"""["']([^"'\s]+)["']""")
    found = []
    for folder in ("sandbox", "contracts"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            for number, line in enumerate(path.read_text().splitlines(), start=1):
                hits = names.intersection(quoted.findall(line))
                found += [f"{path.relative_to(ROOT)}:{number}: {h}" for h in sorted(hits)]
    assert found == []


@pytest.mark.parametrize(
    ("key", "value", "words"),
    [
        ("keyless-statuses", ["invited", "pending"], "keyless-statuses names 'pending', which"),
        ("inactive-statuses", ["suspended"], "inactive-statuses names 'suspended', which"),
        ("keyless-statuses", "invited", "keyless-statuses must be a list of status values"),
    ],
)
def test_the_spec_check_refuses_a_user_status_the_users_do_not_have(
    key: str, value: Any, words: str
) -> None:
    raw = copy.deepcopy(SPEC.raw)
    raw["x-sandbox-auth"][key] = value
    problems = [p for p in lint_document(raw, load_catalogue()) if p.rule == "auth"]
    assert len(problems) == 1 and words in problems[0].message, problems

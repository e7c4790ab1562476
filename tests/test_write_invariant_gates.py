"""The gate tables a create's invariants are judged through (`record_invariants`), held to the
plain reading of the rules, rule by rule in order, on random records: the same refusal (or
none) and the same fixes, for gates on a field of the record, on a path through a reference
(values listed, null among them, or any value), and on a path that reads a list."""

from __future__ import annotations

import random
from typing import Any

from opsmerge_sandbox.errors import ApiError
from opsmerge_sandbox.pipeline.record_invariants import (
    WriteInvariants,
    _derive_run,
)

RULES: list[dict[str, Any]] = [
    {"when": {"refs->id": [None]}, "require": {"status": ["open", "shut"]}},  # only null listed
    {"when": {"refs->id": [None]}, "require": {"note": ["n", "m"]}, "fix": {"note": "m"}},
    {"when": {"ref->kind": ["p", "q"]}, "require": {"level": ["hi"]}},
    {"when": {"ref->kind": ["q"]}, "require": {"level": ["hi", "top"]}, "fix": {"level": "hi"}},
    {"when": {"ref->kind": [None, "p"]}, "require": {"note": {"null": False}}},
    {"when": {"ref->kind": {"null": False}}, "require": {"status": ["open", "shut"]}},
    {"when": {"note": {"null": False}}, "require": {"status": ["open"]}},
    {"when": {"note": {"null": False}}, "require": {"level": ["lo", "hi"]}, "fix": {"level": "lo"}},
    {"when": {"refs->kind": ["p"]}, "require": {"status": ["shut"]}},
    {"when": {"refs->kind": ["q"]}, "require": {"level": ["top"]}, "fix": {"level": "top"}},
    {"require": {"level": {"null": False}}},
    {"when": {"status": ["shut"]}, "require": {"note": {"null": False}}},
]
SCHEMAS: dict[str, Any] = {
    "a": {
        "properties": {
            "id": {"type": "string"},
            "ref": {"type": ["string", "null"], "x-ref": "b"},
            "refs": {"type": "array", "items": {"type": "string", "x-ref": "b"}},
            "status": {"type": ["string", "null"]},
            "level": {"type": ["string", "null"]},
            "note": {"type": ["string", "null"]},
        },
        "x-invariants": [
            {
                "id": f"rule-{i}",
                "class": "test",
                "on-write": "derive" if "fix" in rule else "refuse",
                **rule,
            }
            for i, rule in enumerate(RULES)
        ],
    },
    "b": {"properties": {"id": {"type": "string"}, "kind": {"type": ["string", "null"]}}},
}
OTHERS = {"b1": {"id": "b1", "kind": "p"}, "b2": {"id": "b2", "kind": "q"}}
OTHERS |= {"b3": {"id": "b3", "kind": None}, "b4": {"id": "b4", "kind": "r"}}


def _lookup(collection: str, rid: Any) -> dict[str, Any] | None:
    return OTHERS.get(rid) if collection == "b" else None


def _record(rng: random.Random) -> dict[str, Any]:
    return {
        "id": "a1",
        "ref": rng.choice([None, "b1", "b2", "b3", "b4", "gone"]),
        "refs": rng.sample(["b1", "b2", "b3", "b4"], rng.randint(0, 2)),
        "status": rng.choice([None, "open", "shut", "else"]),
        "level": rng.choice([None, "lo", "hi", "top"]),
        "note": rng.choice([None, "n"]),
    }


def _refusal(judge: Any, *args: Any) -> str | None:
    try:
        judge(*args)
    except ApiError as err:
        return err.message
    return None


def _one_by_one(rules: WriteInvariants, env: Any, record: dict[str, Any]) -> None:
    """`check` as the rules read: each in order, through its gate."""
    for path, get, run in rules.checks["a"]:
        rules._check_run(env, path, get, run, record, None)


def test_the_tables_judge_and_fix_as_the_rules_do_one_by_one() -> None:
    rules = WriteInvariants(SCHEMAS)
    env = rules.env(_lookup, 0)
    rng = random.Random(3)
    refused = 0
    for _ in range(3000):
        record = _record(rng)
        plain = dict(record)
        got = _refusal(rules.check, env, "a", record)
        assert got == _refusal(_one_by_one, rules, env, plain), record
        refused += got is not None
        rules.derive(env, "a", record)
        for _ in range(4):
            fixed = False
            for path, get, run, *_ in rules.fixes["a"]:
                fixed = _derive_run(env, path, get, run, plain) or fixed
            if not fixed:
                break
        assert record == plain
    assert 0 < refused < 3000

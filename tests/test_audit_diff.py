"""The audit diff (`audit._diff`) against the plain reading of what it means, on records of
every shape its fast paths take apart: a create (from nothing), an update of the same fields in
the same order, and one whose fields differ or come in another order."""

from __future__ import annotations

import random
from typing import Any

from opsmerge_sandbox.pipeline.audit import _diff

UNLOGGED = frozenset({"updated_at", "secret"})
VALUES: list[Any] = [None, 0, 1, 1.0, True, False, "", "a", "b", [], [1], {}, {"x": 1}]


def _plain(before: dict[str, Any] | None, after: dict[str, Any] | None) -> dict[str, Any]:
    """What the diff means: every field changed (a create: every one set), in the records'
    order, leaving out the unlogged ones."""
    old, new = before or {}, after or {}
    names = dict.fromkeys([*old, *new])
    return {
        n: (old.get(n), new.get(n))
        for n in names
        if n not in UNLOGGED
        and (new.get(n) is not None if before is None else old.get(n) != new.get(n))
    }


def _record(rng: random.Random, names: list[str]) -> dict[str, Any]:
    return {n: rng.choice(VALUES) for n in names}


def test_the_diff_is_the_plain_reading_of_every_change_in_the_records_order() -> None:
    rng = random.Random(7)
    fields = ["id", "a", "b", "c", "secret", "updated_at", "d"]
    for _ in range(2000):
        before = _record(rng, fields) if rng.random() < 0.7 else None
        names = list(fields)
        if rng.random() < 0.3:
            rng.shuffle(names)  # the same fields in another order
        if rng.random() < 0.3:
            names = [*names[: rng.randint(0, len(names))], "e"]  # fields gone and added
        after = _record(rng, names)
        if before is not None and rng.random() < 0.5:
            after = {**before, **{n: after[n] for n in rng.sample(names, min(2, len(names)))}}
        got = _diff(before, after, UNLOGGED)
        want = _plain(before, after)
        assert got == want and list(got) == list(want), (before, after)


def test_a_create_with_nothing_set_and_a_removal_log_what_they_should() -> None:
    assert _diff(None, None, UNLOGGED) == {}
    assert _diff(None, {}, UNLOGGED) == {}
    assert _diff({"a": 1, "updated_at": "t"}, None, UNLOGGED) == {"a": (1, None)}

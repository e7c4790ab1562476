"""The spec's `x-invariants` that writes keep, judged on the record a create or update is about
to store.

- `on-write: refuse`: a write that breaks the rule is refused with a 400 naming the field, and
  nothing changes. A `refs-before` rule refuses a reference to a record created after the
  record's write (possible once a workspace's clock and its records disagree).
- `on-write: derive`: the server owns what the rule reads. `derive` sets the rule's `fix` fields
  on a record that breaks it (a status from the dates, a tax code left out) before the server
  computes its derived fields; `check` then judges every derive rule like a refuse rule, so a
  value the client gave that leaves the rule broken is refused too.
- `on-write: seeded-only`: not judged on writes (values a client supplies).

On an update only the rules reading a changed field are refused; fixes apply on every write, so a
record written on a later clock moves to the status its dates give it then. References are read
from the workspace the write goes to, and `$epoch` / `$today` are the sandbox clock's now.
"""

from __future__ import annotations

from collections.abc import Container, Mapping
from typing import Any, TypeVar

from opsmerge_sandbox.errors import ApiError, Detail
from opsmerge_sandbox.world.conditions import (
    Env,
    Getter,
    Lookup,
    Test,
    compile_path,
    condition_fields,
    is_plain,
    no_lookup,
)
from opsmerge_sandbox.world.invariants import (
    Invariant,
    apply_fix,
    check_record,
    compile_invariants,
    refs_before_problem,
)

Record = dict[str, Any]
_FIX_ROUNDS = 4  # a fix can make another rule's `when` hold (Draft -> Open -> Overdue)


class WriteInvariants:
    """The invariants writes keep (refuse and derive), by collection, compiled at start."""

    def __init__(self, schemas: Mapping[str, Mapping[str, Any]]) -> None:
        self.schemas = schemas
        # derive rules that hold on reads too (`on-read: derive`: they read the clock and only
        # the record): what they fix follows the clock (an Open invoice is Overdue once its due
        # date has passed, whether or not anyone has written to it since)
        self.clock_fixes: dict[str, list[Invariant]] = {}
        self.clock_fields: dict[str, frozenset[str]] = {}
        # the rules a write runs, in order, each with its gate: a rule whose `when` is one path
        # through a reference and its values (a client's priority floor) reads that path once
        # per run of rules gated on it, not once per rule
        fixes: dict[str, list[tuple[Gate | None, _Fix]]] = {}
        checks: dict[str, list[tuple[Gate | None, _Check]]] = {}
        # every rule writes keep, compiled once (`dependents.py` reads them too)
        self.compiled = tuple(
            inv for inv in compile_invariants(schemas) if inv.decl_on_write in ("refuse", "derive")
        )
        for inv in self.compiled:
            gate = _gate(inv, schemas)
            if inv.fix:
                fixes.setdefault(inv.collection, []).append((gate, (_values(gate), inv)))
                if _reads_clock_only(inv):
                    self.clock_fixes.setdefault(inv.collection, []).append(inv)
                    fields = self.clock_fields.get(inv.collection, frozenset())
                    self.clock_fields[inv.collection] = fields | frozenset(inv.fix)
            reads = frozenset(
                condition_fields(inv.raw.get("when")) + condition_fields(inv.raw.get("require"))
            )
            if inv.kind == "refs-before":  # every reference and the record's own time
                reads = frozenset(_reference_fields(schemas.get(inv.collection) or {}))
                reads |= {str(inv.raw["refs-before"])}
            elif inv.each is not None:
                reads = frozenset({inv.each})
            if inv.kind in ("require", "refs-before"):
                judge = _REFS_BEFORE if inv.kind == "refs-before" else _EACH if inv.each else _ONE
                rule = (_values(gate), inv, reads, judge, inv.when.fast(), inv.require.fast())
                checks.setdefault(inv.collection, []).append((gate, rule))
        # per run of derive rules: (path, reader, the rules, then (position, rule) of those the
        # path's value opens: when null, for a value no gate lists, for each listed value)
        self.fixes = {
            name: tuple((path, get, rules, _fix_opening(rules)) for path, get, rules in runs)
            for name, runs in ((n, _runs(r)) for n, r in fixes.items())
        }
        self.checks = {name: _runs(rules) for name, rules in checks.items()}
        # what a create judges (every rule): per run, the rules its path's value opens
        self.opening = {
            name: tuple((path, get, rules, _opening(rules)) for path, get, rules in runs)
            for name, runs in self.checks.items()
        }

    def env(self, lookup: Lookup, now: int) -> Env:
        """What one write's rules read beyond its record: `lookup` (a workspace's, or one
        write's remembered reads) and `$epoch` / `$today` at `now`; made once per write and
        handed to `derive` and `check`."""
        return Env(lookup, now, {}, self.schemas)

    def derive(self, env: Env, collection: str, record: Record) -> None:
        """Set the `fix` fields of each derive rule the record breaks, until none is left to fix."""
        runs = self.fixes.get(collection)
        if not runs:
            return
        for _ in range(_FIX_ROUNDS):
            fixed = False
            for path, get, rules, tables in runs:
                opened = _opened(path, get, record, env, tables)
                if opened is None:  # a list, or a value no table holds: rule by rule
                    fixed = _derive_run(env, path, get, rules, record) or fixed
                    continue
                for at, inv in opened:
                    if apply_fix(inv, record, env):
                        fixed = True
                        # the rest of the run sees the record as fixed: its gates read again
                        _derive_run(env, path, get, rules[at + 1 :], record)
                        break
            if not fixed:
                return

    def follow_clock(self, collection: str, record: Record, now: int) -> Record | None:
        """The record as the clock shows it now (a copy with its clock rules' fixes), or None
        when the clock changes nothing."""
        rules = self.clock_fixes.get(collection)
        if not rules:
            return None
        env = Env(no_lookup, now, {}, self.schemas)
        if all(check_record(inv, record, env) is None for inv in rules):
            return None
        shown = dict(record)
        for _ in range(_FIX_ROUNDS):
            if not any([apply_fix(inv, shown, env) for inv in rules]):
                break
        return shown

    def check(
        self,
        env: Env,
        collection: str,
        record: Record,
        changed: Container[str] | None = None,
    ) -> None:
        """Refuse the record (400 VALIDATION_ERROR naming the field) if it breaks one; on an
        update only the invariants reading a changed field are judged."""
        if changed is not None:
            self._check_changed(env, collection, record, changed)
            return
        for path, get, rules, tables in self.opening.get(collection, ()):
            opened = _opened(path, get, record, env, tables)
            if opened is None:  # a value no table holds: judged rule by rule
                self._check_run(env, path, get, rules, record, None)
                continue
            for inv, judge, when, require in opened:
                if judge is _ONE:
                    # the rule's whole condition in one call; only a broken one is read again
                    if not when(record, env) or require(record, env):
                        continue
                    why = check_record(inv, record, env)
                elif judge is _EACH:
                    why = check_record(inv, record, env)
                else:
                    why = refs_before_problem(inv, record, env, live=True)
                if why is not None:
                    raise _refusal(inv, why)

    def _check_changed(
        self, env: Env, collection: str, record: Record, changed: Container[str]
    ) -> None:
        """`check` of an update: only the rules reading a changed field."""
        for path, get, rules in self.checks.get(collection, ()):
            self._check_run(env, path, get, rules, record, changed)

    @staticmethod
    def _check_run(
        env: Env,
        path: str | None,
        get: Getter | None,
        rules: tuple[_Check, ...],
        record: Record,
        changed: Container[str] | None,
    ) -> None:
        """Judge one run of rules, each through its gate, reading the path once (when one of
        them is judged at all)."""
        value: Any = _UNREAD
        for values, inv, reads, judge, _, _ in rules:
            if changed is not None and not any(f in changed for f in reads):
                continue
            if path is not None:
                if value is _UNREAD:
                    value = record.get(path) if get is None else get(record, env)
                if not _passes(values, value):
                    continue
            if judge == _REFS_BEFORE:
                why = refs_before_problem(inv, record, env, live=True)
            else:
                why = check_record(inv, record, env)
            if why is not None:
                raise _refusal(inv, why)


def _derive_run(
    env: Env, path: str | None, get: Getter | None, rules: tuple[_Fix, ...], record: Record
) -> bool:
    """Fix the record by each rule of a run whose gate is open, reading the path again after
    each fix; whether anything was fixed."""
    fixed = False
    value: Any = _UNREAD
    for values, inv in rules:
        if path is not None:
            if value is _UNREAD:
                value = record.get(path) if get is None else get(record, env)
            if not _passes(values, value):
                continue
        if apply_fix(inv, record, env):
            fixed = True
            value = _UNREAD  # a fix may change what the gate reads
    return fixed


def _opened(
    path: str | None,
    get: Getter | None,
    record: Record,
    env: Env,
    tables: _Tables[_Rules],
) -> _Rules | None:
    """The rules of a run its path's value opens, from the run's tables (`_tables`); None
    when no table holds the value (a list with no `every`, a mapping), so the run is judged
    rule by rule."""
    unset, unlisted, listed, every = tables
    if path is None:
        return unlisted
    value = record.get(path) if get is None else get(record, env)
    if value is None:
        return unset
    if listed is None:  # every gate wants a value, whatever it is (a list too)
        return unlisted
    if value.__class__ in _KEYS:
        return listed.get(value, unlisted)
    if value.__class__ is list:
        return every
    return None


def _passes(values: frozenset[Any] | None, value: Any) -> bool:
    """Whether one gate is open for its path's value: set, for a gate that wants any value;
    else among its values (a list reads through to the rule itself)."""
    if values is None:
        return value is not None
    return isinstance(value, list) or value in values


def _refusal(inv: Invariant, why: str) -> ApiError:
    """The 400 of a record that breaks `inv`, naming the field `why` starts with."""
    field = why.split(" ", 1)[0].split("->", 1)[0].split("[", 1)[0]
    message = inv.message or f"breaks the rule {inv.id}"
    return ApiError(
        "VALIDATION_ERROR",
        f"{field}: {message} ({why}).",
        [Detail("body", field, f"{message} ({why})")],
    )


# a `when` of one path and its values (None: any value but null), or, for a rule about one
# field of the record that must be set, that field's name (tested at once, nothing to keep)
Gate = tuple[str, Getter, frozenset[Any] | None] | str
_UNREAD: Any = object()  # a gate's path not read yet in this run
# how `check` judges a rule: its condition on the record, on each item of an array field, or
# the records its references name (`refs-before`)
_ONE, _EACH, _REFS_BEFORE = "one", "each", "refs-before"
# (the gate's values, the rule) of a derive rule; (the gate's values, the rule, the fields it
# reads, how it is judged, its `when` and `require` as plain functions) of a checked one
_Fix = tuple[frozenset[Any] | None, Invariant]
_Check = tuple[frozenset[Any] | None, Invariant, frozenset[str], str, Test, Test]


_Judged = tuple[Invariant, str, Test, Test]  # a rule as a create judges it


def _opening(rules: tuple[_Check, ...]) -> _Tables[tuple[_Judged, ...]]:
    """`_tables` of a run of checked rules, as a create judges them; a list opens every one."""
    judged = [(values, (inv, judge, when, require))
              for values, inv, _, judge, when, require in rules]
    return (*_tables(judged), tuple(entry for _, entry in judged))


def _tables(
    gated: list[tuple[frozenset[Any] | None, _Entry]],
) -> tuple[tuple[_Entry, ...], tuple[_Entry, ...], dict[Any, tuple[_Entry, ...]] | None]:
    """A run's entries by what its path's value opens, worked out once from its gates: (those
    open when it reads null, those open for a value no gate lists, those open for each value a
    gate lists, None when every gate wants any value)."""

    def opened(value: Any) -> tuple[_Entry, ...]:
        return tuple(entry for values, entry in gated if _passes(values, value))

    if all(values is None for values, _ in gated):
        return opened(None), opened(_UNREAD), None
    listed = {v for values, _ in gated if values is not None for v in values if v is not None}
    return opened(None), opened(_UNREAD), {v: opened(v) for v in listed}


_Opened = tuple[tuple[int, Invariant], ...]  # (position in its run, rule) of opened derive rules
# the kinds of value a gate's table is looked up by; any other (a mapping) is judged rule by rule
_KEYS = frozenset({str, int, float, bool})


def _fix_opening(rules: tuple[_Fix, ...]) -> _Tables[_Opened]:
    """`_tables` of a run of derive rules, each with its position in the run; a list is judged
    rule by rule (no `every`)."""
    return (*_tables([(values, (at, inv)) for at, (values, inv) in enumerate(rules)]), None)


def _values(gate: Gate | None) -> frozenset[Any] | None:
    """The values a gate's path must hold (None: any value but null)."""
    return None if gate is None or isinstance(gate, str) else gate[2]


_Rule = TypeVar("_Rule")
_Entry = TypeVar("_Entry")
_Rules = TypeVar("_Rules")
# a run's tables: the rules open when its path reads null, for a value no gate lists, for
# each listed value (None: every gate wants any value), and for a list (None: rule by rule)
_Tables = tuple[_Rules, _Rules, dict[Any, _Rules] | None, _Rules | None]


def _runs(
    rules: list[tuple[Gate | None, _Rule]],
) -> tuple[tuple[str | None, Getter | None, tuple[_Rule, ...]], ...]:
    """The rules in their order, in runs of neighbours gated on the same path: (the path, its
    reader or None for a field of the record itself, the rules), the path None for rules with
    no gate. A run reads its path once (again after a fix), where each rule read it before."""
    out: list[tuple[str | None, Getter | None, list[_Rule]]] = []
    for gate, rule in rules:
        if gate is None:
            path, get = None, None
        elif isinstance(gate, str):
            path, get = gate, None
        else:
            path, get = gate[0], gate[1]
        if out and out[-1][0] == path:  # one path reads one value (its first reader kept)
            out[-1][2].append(rule)
        else:
            out.append((path, get, [rule]))
    return tuple((path, get, tuple(rules)) for path, get, rules in out)


def _gate(inv: Invariant, schemas: Mapping[str, Any]) -> Gate | None:
    """(path, reader, values) of a rule whose `when` is one path through a reference with a
    list of plain values, or one path that must be set (`{field: {null: false}}`: a rule about
    a value only some records have; the field's name alone when it is the record's own), else
    None."""
    when = inv.raw.get("when")
    if not isinstance(when, Mapping) or len(when) != 1:
        return None
    [(path, values)] = when.items()
    # `{'null': false}`; YAML reads a bare `null:` key as None
    if isinstance(values, Mapping) and [*values.items()] in ([("null", False)], [(None, False)]):
        if is_plain(str(path)):
            return str(path)
        return str(path), compile_path(inv.collection, str(path), schemas), None
    if "->" not in str(path) or not isinstance(values, list):
        return None
    if not all(isinstance(v, str | int | None) for v in values):
        return None
    return str(path), compile_path(inv.collection, str(path), schemas), frozenset(values)


def _reads_clock_only(inv: Invariant) -> bool:
    """Whether a rule holds on reads too (`on-read: derive`): one that reads the clock and
    nothing beyond its record (no `->` paths)."""
    text = repr((inv.raw.get("when"), inv.raw.get("require")))
    return inv.raw.get("on-read") == "derive" and inv.each is None and "->" not in text


def _reference_fields(schema: Mapping[str, Any]) -> list[str]:
    out = []
    for name, prop in (schema.get("properties") or {}).items():
        items = prop.get("items") if isinstance(prop.get("items"), Mapping) else {}
        if "x-ref" in prop or "x-ref-by" in prop or "x-ref" in items:
            out.append(name)
    return out

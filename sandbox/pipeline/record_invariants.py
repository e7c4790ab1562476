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
from typing import Any

from opsmerge_sandbox.errors import ApiError, Detail
from opsmerge_sandbox.store.workspace import Workspace
from opsmerge_sandbox.world.conditions import (
    Env,
    Getter,
    compile_path,
    condition_fields,
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
        # per pass, not once per rule
        self.fixes: dict[str, list[tuple[Invariant, Gate | None]]] = {}
        self.checks: dict[str, list[tuple[Invariant, frozenset[str], Gate | None]]] = {}
        for inv in compile_invariants(schemas):
            if inv.decl_on_write not in ("refuse", "derive"):
                continue
            gate = _gate(inv, schemas)
            if inv.fix:
                self.fixes.setdefault(inv.collection, []).append((inv, gate))
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
                self.checks.setdefault(inv.collection, []).append((inv, reads, gate))

    def derive(self, ws: Workspace, collection: str, record: Record, now: int) -> None:
        """Set the `fix` fields of each derive rule the record breaks, until none is left to fix."""
        rules = self.fixes.get(collection)
        if not rules:
            return
        env = Env(ws.get, now, {}, self.schemas)
        for _ in range(_FIX_ROUNDS):
            read: dict[str, Any] = {}
            fixed = False
            for inv, gate in rules:
                if (gate is None or _open(gate, record, env, read)) and apply_fix(inv, record, env):
                    fixed = True
                    read.clear()  # a fix may change what a gate reads
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
        ws: Workspace,
        collection: str,
        record: Record,
        now: int,
        changed: Container[str] | None = None,
    ) -> None:
        """Refuse the record (400 VALIDATION_ERROR naming the field) if it breaks one; on an
        update only the invariants reading a changed field are judged."""
        rules = self.checks.get(collection)
        if not rules:
            return
        env = Env(ws.get, now, {}, self.schemas)
        read: dict[str, Any] = {}
        for inv, reads, gate in rules:
            if changed is not None and not any(f in changed for f in reads):
                continue
            if gate is not None and not _open(gate, record, env, read):
                continue
            if inv.kind == "refs-before":
                why = refs_before_problem(inv, record, env, live=True)
            else:
                why = check_record(inv, record, env)
            if why is not None:
                field = why.split(" ", 1)[0].split("->", 1)[0].split("[", 1)[0]
                message = inv.message or f"breaks the rule {inv.id}"
                raise ApiError(
                    "VALIDATION_ERROR",
                    f"{field}: {message} ({why}).",
                    [Detail("body", field, f"{message} ({why})")],
                )


# a `when` of one path and its values (None: any value but null), or, for a rule about one
# field of the record that must be set, that field's name (tested at once, nothing to keep)
Gate = tuple[str, Getter, frozenset[Any] | None] | str


def _open(gate: Gate, record: Record, env: Env, read: dict[str, Any]) -> bool:
    """Whether a gated rule's `when` may hold: its path is read once per pass (`read` keeps
    it), and a rule whose values lack what it holds is skipped."""
    if isinstance(gate, str):
        return record.get(gate) is not None
    path, get, values = gate
    if path not in read:
        read[path] = get(record, env)
    value = read[path]
    if values is None:
        return value is not None
    return isinstance(value, list) or value in values


def _is_field(path: str) -> bool:
    """Whether a path is one field of the record itself (no reference, no member)."""
    return "->" not in path and "." not in path and not path.startswith("$")


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
        if _is_field(str(path)):
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

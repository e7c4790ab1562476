"""Real records from the target, for paths that need an id and bodies that refer to one.

Contracts never invent ids for things that must exist: they read the collection's list operation
(the one `x-sandbox.collection` names) and take ids from it. Reads are cached per run and
dropped when a test changed the world. The caller's own user and roles are protected: no contract
updates or deletes the records its key depends on. A record that names a closed one (`x-closed`:
a site of a client that has left) is taken only when nothing else matches: a write naming it
would name the closed record anew, which the API refuses.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import httpx

from opsmerge_sandbox.spec import Operation, Spec
from opsmerge_sandbox.world.closings import Closing, closing_references, closings
from opsmerge_sandbox.world.conditions import Env, no_lookup

PAGE = 100


class IdPool:
    def __init__(
        self, spec: Spec, client: Callable[[], httpx.Client], seed: str = "opsmerge"
    ) -> None:
        self.spec = spec
        self._client = client
        self._cache: dict[str, list[dict[str, Any]]] = {}
        self._children: dict[tuple[str, str], list[dict[str, Any]]] = {}
        self.protected: set[str] = set()
        self._rng = random.Random(seed)
        schemas = {n: c.schema for n, c in spec.collections.items()}
        self._closings: dict[str, Closing] = closings(schemas)
        self._env = Env(no_lookup, 0, {}, schemas)
        # by collection, (field, collection it names) of each reference to one that closes
        self._closable = closing_references(schemas)

    def invalidate(self) -> None:
        self._cache.clear()
        self._children.clear()

    def _get(self, path: str, params: dict[str, Any] | None = None) -> httpx.Response:
        with self._client() as client:
            return client.get(path, params=params, extensions={"opsmerge": {"record": False}})

    # --- which operations serve a collection ---------------------------------------------------

    def ops(self, collection: str, kind: str) -> list[Operation]:
        return [
            op
            for op in self.spec.operations
            if op.kind == kind
            and op.hints.collection == collection
            and not op.session_only
        ]

    def list_op(self, collection: str) -> Operation | None:
        ops = self.ops(collection, "list")
        top = [op for op in ops if op.hints.parent is None and not op.deprecated]
        return next(iter(top or [op for op in ops if op.hints.parent is None]), None)

    def nested_list_op(self, collection: str) -> Operation | None:
        nested = [op for op in self.ops(collection, "list") if op.hints.parent is not None]
        return nested[0] if nested else None

    # --- records -------------------------------------------------------------------------------

    def records(self, collection: str) -> list[dict[str, Any]]:
        """Up to a page of the collection's records (top-level list, else through a parent)."""
        if collection in self._cache:
            return self._cache[collection]
        found: list[dict[str, Any]] = []
        op = self.list_op(collection)
        if op is not None and "{" not in op.path:
            found = self._page(op.path, {"per_page": PAGE})
        else:
            nested = self.nested_list_op(collection)
            if nested is not None and nested.hints.parent is not None:
                for record in self.records(nested.hints.parent.collection)[:10]:
                    found += self.children(nested, str(record["id"]))
                    if len(found) >= 10:
                        break
        self._cache[collection] = found
        return found

    def children(
        self, nested: Operation, parent_id: str, per_page: int = PAGE
    ) -> list[dict[str, Any]]:
        parent = nested.hints.parent
        if parent is None:
            raise ValueError(f"{nested.operation_id} does not list records under a parent")
        key = (nested.operation_id, parent_id)
        if key not in self._children:
            self._children[key] = self._page(
                nested.path.replace("{" + parent.param + "}", parent_id), {"per_page": per_page}
            )
        return self._children[key]

    def _page(self, path: str, params: dict[str, Any]) -> list[dict[str, Any]]:
        response = self._get(path, params)
        try:
            body = response.json() if response.status_code == 200 else None
        except ValueError:
            return []
        data = body.get("data") if isinstance(body, dict) else None
        items = data.get("items") if isinstance(data, dict) else None
        return [i for i in items or [] if isinstance(i, dict) and "id" in i]

    def find(
        self,
        collection: str,
        where: Mapping[str, Any] | None = None,
        exclude: Sequence[Any] = (),
        writable: bool = False,
    ) -> dict[str, Any] | None:
        """A record whose fields match `where` (a value, or a list of allowed values)."""
        where = where or {}
        hops = {f: t for f, t in where.items() if "->" in f}
        where = {f: t for f, t in where.items() if f not in hops}
        candidates = [r for r in self.records(collection) if _matches(r, where)]
        if not candidates and where:
            candidates = [r for r in self._filtered(collection, where) if _matches(r, where)]
        if hops:
            candidates = [r for r in candidates if self._reaches(collection, r, hops)]
        skip = set(map(str, exclude)) | (self.protected if writable else set())
        candidates = [r for r in candidates if str(r["id"]) not in skip]
        active = [r for r in candidates if r.get("status") in ("active", "online", "open")]
        pool = active or candidates
        pool = [r for r in pool if not self._names_closed(collection, r)] or pool
        return pool[self._rng.randrange(len(pool))] if pool else None

    def _names_closed(self, collection: str, record: Mapping[str, Any]) -> bool:
        """Whether the record is closed itself, or names a closed record the pool has read."""
        closing = self._closings.get(collection)
        if closing is not None and closing.closed_at(record, self._env) is not None:
            return True
        for field, target in self._closable.get(collection, ()):
            named = record.get(field)
            if named is None:
                continue
            other = next((r for r in self.records(target) if r.get("id") == named), None)
            rule = self._closings[target]
            if other is not None and rule.closed_at(other, self._env) is not None:
                return True
        return False

    def _reaches(
        self, collection: str, record: dict[str, Any], hops: Mapping[str, Any]
    ) -> bool:
        """Whether each `field->theirs: {contains-any: [...]}` holds: some record the field
        names has one of the values in `theirs`."""
        props = self.spec.collections[collection].schema.get("properties") or {}
        for path, test in hops.items():
            mine, _, theirs = (p.strip() for p in path.partition("->"))
            prop = props.get(mine) or {}
            ref = prop.get("x-ref") or (prop.get("items") or {}).get("x-ref")
            target = ref.get("collection") if isinstance(ref, dict) else ref
            if not isinstance(target, str) or "->" in theirs:
                continue  # not one hop this pool can follow: the target judges it
            named = record.get(mine)
            ids = set(map(str, named if isinstance(named, list) else [named]))
            reached: list[Any] = []
            for other in self.records(target):
                if str(other.get("id")) in ids:
                    value = other.get(theirs)
                    reached += value if isinstance(value, list) else [value]
            if not set(map(str, reached)) & set(map(str, test.get("contains-any") or ())):
                return False
        return True

    def _filtered(self, collection: str, where: Mapping[str, Any]) -> list[dict[str, Any]]:
        """Ask the list operation to filter, for the fields it can filter on."""
        op = self.list_op(collection)
        if op is None or "{" in op.path:
            return []
        query_params = {p.name for p in op.params if p.location == "query"}
        found: list[dict[str, Any]] = []
        for field, wanted in where.items():
            if field not in query_params:
                continue
            for value in wanted if isinstance(wanted, list | tuple) else [wanted]:
                if value is None:
                    continue
                found += self._page(op.path, {"per_page": PAGE, field: value})
            break
        return found

    def pick(self, collection: str, where: dict[str, Any], exclude: list[Any]) -> Any:
        """An id for a body's reference (the signature `bodies.fill_references` expects)."""
        record = self.find(collection, where, exclude)
        return record["id"] if record else None

    def real_id(
        self,
        collection: str,
        writable: bool = False,
        when: Mapping[str, Any] | None = None,
        exclude: Sequence[str] = (),
    ) -> str | None:
        record = self.find(collection, when, exclude=exclude, writable=writable)
        return str(record["id"]) if record else None


def _matches(record: dict[str, Any], where: Mapping[str, Any]) -> bool:
    for field, wanted in where.items():
        allowed = wanted if isinstance(wanted, list | tuple) else [wanted]
        if record.get(field) not in allowed:
            return False
    return True

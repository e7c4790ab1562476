"""The spec, loaded once: operations, collections and flattened schemas.

Everything the sandbox and the contracts know about the API comes from here. Loading resolves
every local `$ref` and merges `allOf` into plain object schemas, so validators, the world
generator and the body generator all work on simple, self-contained schemas. The vendor
extensions (`x-sandbox`, `x-collection`, ...) are parsed here too, once, by `sandbox.extensions`:
a spec whose extensions do not parse is refused with every problem listed.
"""

from __future__ import annotations

import copy
from collections.abc import Container, Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from opsmerge_sandbox.catalogue import Catalogue, load_catalogue
from opsmerge_sandbox.events.declarations import EventModel, parse_events
from opsmerge_sandbox.extensions import (
    Blocker,
    ExtensionError,
    ExtensionProblem,
    Follower,
    Lifecycle,
    OperationHints,
    parse_collections,
    parse_operation,
)
from opsmerge_sandbox.ref_options import cover_rounds, ref_of
from opsmerge_sandbox.yamlio import load_yaml

SPEC_PATH = Path(__file__).parent / "openapi" / "opsmerge.yaml"
HTTP_METHODS = ("get", "put", "post", "delete", "patch", "head", "options")
# the modules whose code builds a `Spec`: part of the start-up cache's key for it (and
# native.py, which every import of the package runs first)
SPEC_CODE = (
    "spec.py",
    "native.py",
    "extensions.py",
    "ref_options.py",
    "catalogue.py",
    "yamlio.py",
    "events/__init__.py",
    "events/declarations.py",
)

Schema = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Param:
    name: str
    location: str  # path | query | header
    required: bool
    schema: Schema


@dataclass(slots=True)
class Operation:
    """One operation of the spec with everything the pipeline needs, prepared at startup."""

    operation_id: str
    method: str  # upper case
    path: str  # OpenAPI template relative to the server base, e.g. /agents/{id}
    tag: str
    summary: str
    stability: str
    deprecated: bool
    deprecated_at: str | None
    sunset: str | None
    scopes: tuple[str, ...]  # required scopes; empty for "any valid key"
    session_only: bool  # only a session may call it: every API key gets API_KEY_FORBIDDEN
    hints: OperationHints  # the x-sandbox extension, parsed
    params: tuple[Param, ...]
    body_schema: Schema | None
    body_required: bool
    responses: dict[str, Schema | None]  # status -> flattened JSON body schema
    raw: dict[str, Any] = field(repr=False)
    documented_statuses: frozenset[int] = field(init=False)
    success_status: int = field(init=False)
    kind: str = field(init=False)  # x-sandbox.kind: which handler serves it

    def __post_init__(self) -> None:
        # read on every request (the fault stage, the handlers): computed once here
        self.documented_statuses = frozenset(int(s) for s in self.responses if s.isdigit())
        self.success_status = min((s for s in self.documented_statuses if s < 300), default=200)
        self.kind = self.hints.kind

    @property
    def family(self) -> str | None:
        return self.scopes[0].split(":", 1)[0] if self.scopes else None


@dataclass(slots=True)
class Collection:
    """A collection of records, declared by `x-collection` on its resource schema."""

    name: str
    schema_name: str
    id_prefix: str
    schema: Schema  # flattened
    lifecycle: Lifecycle | None
    create_set: Mapping[str, Any]  # read-only; thaw values before writing them into a record
    # `x-refuse-while`: writes into a state refused while other records hold theirs
    blockers: tuple[Blocker, ...] = ()
    # `x-on-enter`: writes into a state that change the records naming the record with it
    followers: tuple[Follower, ...] = ()


@dataclass(slots=True)
class Spec:
    path: Path
    raw: dict[str, Any]
    resolved: dict[str, Any]
    operations: list[Operation]
    collections: dict[str, Collection]
    catalogue: Catalogue
    base_path: str
    events: EventModel | None = None  # the root `x-sandbox-events`: rules that fire

    def operation(self, operation_id: str) -> Operation:
        for op in self.operations:
            if op.operation_id == operation_id:
                return op
        raise KeyError(operation_id)

    @property
    def families(self) -> list[str]:
        return sorted({op.family for op in self.operations if op.family})

    @property
    def scopes(self) -> frozenset[str]:
        """Every scope some operation requires: the only ones a key can hold or use."""
        return frozenset(scope for op in self.operations for scope in op.scopes)

    def schema(self, name: str) -> Schema:
        return flatten(self.resolved["components"]["schemas"][name])


def strip_extensions(schema: Any) -> Any:
    """The schema without our `x-` hints, which validators and generators would misread.

    Values of `enum`, `const`, `default` and `examples` are data, not schema, and stay as given.
    """
    if isinstance(schema, dict):
        return {
            k: (strip_extensions(v) if k not in ("enum", "const", "default", "examples") else v)
            for k, v in schema.items()
            if not k.startswith("x-")
        }
    if isinstance(schema, list):
        return [strip_extensions(v) for v in schema]
    return schema


# the times every record keeps of itself, which a log's diff of a change leaves out
BOOKKEEPING = frozenset({"created_at", "updated_at"})


def unlogged_fields(schema: Mapping[str, Any]) -> frozenset[str]:
    """What an audit diff of a record leaves out: its bookkeeping times and the secrets only a
    create's answer shows (`x-shown-once`). The API's entries and the seeded ones agree."""
    props = schema.get("properties") or {}
    return BOOKKEEPING | frozenset(f for f, p in props.items() if p.get("x-shown-once"))


def ref_arms(schema: Schema) -> list[Schema]:
    """The property and each of its `x-cases` arms that names a reference (`x-ref` or
    `x-ref-by`): where the records a field can name, and what it copies from them, are said."""
    arms = [c for c in schema.get("x-cases") or () if isinstance(c, dict)]
    return [s for s in (schema, *arms) if "x-ref" in s or "x-ref-by" in s]


def ref_copies(schema: Schema) -> list[str]:
    """The fields a property's references copy into the record: its own `x-ref`'s and those of
    its `x-cases` arms (whichever arm holds, the copy lands before those fields are made), and
    the field a `cover-with` sets."""
    found: list[str] = []
    for hint in ref_arms(schema):
        found += [f for f in (ref_of(hint) or ("", {}, {}))[1] if f not in found]
        ref = hint.get("x-ref")
        try:
            rounds = cover_rounds(ref) if isinstance(ref, dict) else None
        except ValueError:  # reported by the spec check; nothing is set then
            rounds = None
        if rounds is not None and rounds[0] not in found:
            found.append(rounds[0])
    return found


def resolve_refs(doc: dict[str, Any]) -> dict[str, Any]:
    """A copy of `doc` with every local `$ref` replaced by what it points at.

    Sibling keys next to a `$ref` are kept (OpenAPI 3.1 allows them). The spec has no
    recursive schemas, which the resolver checks rather than assumes.
    """

    def lookup(ref: str) -> Any:
        if not ref.startswith("#/"):
            raise ValueError(f"only local references are supported, got {ref!r}")
        node: Any = doc
        for part in ref[2:].split("/"):
            node = node[part.replace("~1", "/").replace("~0", "~")]
        return node

    def walk(node: Any, stack: tuple[str, ...]) -> Any:
        if isinstance(node, dict):
            if "$ref" in node and isinstance(node["$ref"], str):
                ref = node["$ref"]
                if ref in stack:
                    raise ValueError(f"recursive reference {ref}")
                target = walk(lookup(ref), (*stack, ref))
                extra = {k: walk(v, stack) for k, v in node.items() if k != "$ref"}
                if extra and isinstance(target, dict):
                    return {**target, **extra}
                return target
            return {k: walk(v, stack) for k, v in node.items()}
        if isinstance(node, list):
            return [walk(v, stack) for v in node]
        return node

    return walk(doc, ())


def _merged(first: Any, second: Any) -> Any:
    """`second` laid over `first`: nested mappings merge, anything else in `second` wins.

    A later `allOf` part may restate a property to add to it (a record's `default`, a line's
    default tax code) without repeating its type, as generators read composition.
    """
    if not isinstance(first, dict) or not isinstance(second, dict):
        return copy.deepcopy(second)
    out = dict(first)
    for key, value in second.items():
        out[key] = _merged(first[key], value) if key in first else value
    return out


def flatten(schema: Schema) -> Schema:
    """Merge `allOf` parts into one object schema, recursively.

    A property named by several parts is merged (see `_merged`), the later part's keywords winning.

    `unevaluatedProperties: false` over an `allOf` becomes `additionalProperties: false` on the
    merged object: with the parts merged, the two mean the same thing, and every tool knows the
    second.
    """
    return _flatten(schema, whole=True)


def _flatten(schema: Schema, whole: bool) -> Schema:
    """`flatten`; a part (`whole` false) keeps `required` names that another part defines."""
    if not isinstance(schema, dict):
        return schema
    out: Schema = {}
    parts = [schema, *schema.get("allOf", [])]
    for part in parts:
        part = _flatten(part, whole=False) if part is not schema else part
        for key, value in part.items():
            if key == "allOf":
                continue
            if key == "properties":
                props = out.setdefault("properties", {})
                for name, prop in value.items():
                    props[name] = _merged(props[name], prop) if name in props else prop
            elif key == "required":
                merged = out.setdefault("required", [])
                merged.extend(v for v in value if v not in merged)
            elif key not in out:
                out[key] = copy.deepcopy(value) if isinstance(value, dict | list) else value
    if out.pop("unevaluatedProperties", True) is False:
        out["additionalProperties"] = False
    if "properties" in out:
        out["properties"] = {k: flatten(v) for k, v in out["properties"].items()}
        if "required" in out and whole:
            out["required"] = [r for r in out["required"] if r in out["properties"]]
    if isinstance(out.get("items"), dict):
        out["items"] = flatten(out["items"])
    if isinstance(out.get("additionalProperties"), dict):
        out["additionalProperties"] = flatten(out["additionalProperties"])
    for key in ("oneOf", "anyOf"):
        if key in out:
            out[key] = [flatten(s) for s in out[key]]
    return out


def merge_collection_schemas(schemas: dict[str, Any]) -> None:
    """Replace each collection's schema (`x-collection`) by its flattened form, in place.

    A record's schema is composed (`allOf`: the writable fields, then its own, where it may
    restate a field to give its default); the vendor extensions are read from the merged fields.
    """
    for name, schema in schemas.items():
        if isinstance(schema, dict) and "x-collection" in schema:
            schemas[name] = flatten(schema)


def _operation(
    path: str,
    method: str,
    raw_op: dict,
    resolved_op: dict,
    path_params: list,
    collections: Container[str],
    problems: list[ExtensionProblem],
) -> Operation:
    security = resolved_op.get("security")
    scopes: tuple[str, ...] = ()
    session_only = False
    if security:
        schemes = {name for req in security for name in req}
        session_only = "bearerAuth" not in schemes
        for req in security:
            if "bearerAuth" in req:
                scopes = tuple(req["bearerAuth"])
    params: dict[tuple[str, str], Param] = {}
    for p in [*path_params, *resolved_op.get("parameters", [])]:
        params[(p["name"], p["in"])] = Param(
            p["name"],
            p["in"],
            bool(p.get("required", p["in"] == "path")),
            flatten(p.get("schema", {})),
        )
    body = resolved_op.get("requestBody")
    body_schema = None
    if body:
        body_schema = flatten(body["content"]["application/json"]["schema"])
    responses: dict[str, Schema | None] = {}
    for status, resp in resolved_op.get("responses", {}).items():
        content = (resp.get("content") or {}).get("application/json")
        responses[str(status)] = (
            flatten(content["schema"]) if content and "schema" in content else None
        )
    where = f"{method.upper()} {path} ({resolved_op['operationId']})"
    hints, found = parse_operation(resolved_op.get("x-sandbox"), where, collections)
    problems.extend(found)
    return Operation(
        operation_id=resolved_op["operationId"],
        method=method.upper(),
        path=path,
        tag=(resolved_op.get("tags") or ["default"])[0],
        summary=resolved_op.get("summary", ""),
        stability=resolved_op.get("x-stability", "stable"),
        deprecated=bool(resolved_op.get("deprecated", False)),
        deprecated_at=resolved_op.get("x-deprecated-at"),
        sunset=resolved_op.get("x-sunset"),
        scopes=scopes,
        session_only=session_only,
        hints=hints,
        params=tuple(params.values()),
        body_schema=body_schema,
        body_required=bool(body and body.get("required")),
        responses=responses,
        raw=raw_op,
    )


def parse_spec(
    raw: dict[str, Any], path: Path = SPEC_PATH, catalogue: Catalogue | None = None
) -> Spec:
    """Prepare a spec; `ExtensionError` lists every problem in its vendor extensions."""
    resolved = resolve_refs(raw)
    schemas = resolved.get("components", {}).get("schemas", {})
    merge_collection_schemas(schemas)
    declared, problems = parse_collections(schemas)
    collections = {
        name: Collection(
            name=name,
            schema_name=schema_name,
            id_prefix=hints.id_prefix,
            schema=flatten(schemas[schema_name]),
            lifecycle=hints.lifecycle,
            create_set=hints.create_set,
            blockers=hints.blockers,
            followers=hints.followers,
        )
        for name, (schema_name, hints) in declared.items()
    }
    operations: list[Operation] = []
    for p, item in resolved.get("paths", {}).items():
        for method in HTTP_METHODS:
            if method in item:
                raw_op = raw["paths"][p][method]
                params = item.get("parameters", [])
                operations.append(
                    _operation(p, method, raw_op, item[method], params, collections, problems)
                )
    properties = {name: c.schema.get("properties", {}) for name, c in collections.items()}
    events, found = parse_events(resolved, properties)
    problems.extend(found)
    if problems:
        raise ExtensionError(problems)
    servers = resolved.get("servers") or [{"url": ""}]
    base = servers[0]["url"].rstrip("/")
    return Spec(
        path=path,
        raw=raw,
        resolved=resolved,
        operations=operations,
        collections=collections,
        catalogue=catalogue or load_catalogue(),
        base_path=base if base.startswith("/") else "",
        events=events,
    )


def load_spec(path: Path | str = SPEC_PATH) -> Spec:
    """Load and prepare a spec once per process (and, through the cache, once per version)."""
    return _load_spec(str(Path(path).resolve()))


@cache
def _load_spec(path_text: str) -> Spec:
    from opsmerge_sandbox.catalogue import CATALOGUE_PATH
    from opsmerge_sandbox.startcache import cached, code_bytes

    path = Path(path_text)
    parts = [*code_bytes(*SPEC_CODE), path.read_bytes(), CATALOGUE_PATH.read_bytes()]
    spec = cached("spec", parts, lambda: parse_spec(load_yaml(path), path))
    spec.path = path  # the cache is keyed by content; the same content may live elsewhere
    return spec

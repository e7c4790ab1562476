"""The raw OpenAPI document as the convention rules see it, built once per check.

The rules read the raw YAML, not `sandbox.spec.Spec`: a spec that breaks a convention may not
load at all, and the rules must still say where it breaks. `Document` gives them the lookups
they share (following `$ref`, responses and parameters with the shared component they came
from) so that each rule stays a few lines about its one convention.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from opsmerge_sandbox.catalogue import Catalogue
from opsmerge_sandbox.extensions import (
    Blocker,
    ExtensionProblem,
    OperationHints,
    parse_collections,
    parse_operation,
)
from opsmerge_sandbox.spec import HTTP_METHODS, flatten


class BrokenRef(Exception):
    """A `$ref` that points nowhere: the `refs` rule reports it once, other rules step aside."""


def _unparsed() -> OperationHints:
    return OperationHints(kind="")


@dataclass(frozen=True, slots=True)
class OperationView:
    """One operation of the raw document, as the rules see it.

    `hints` is its `x-sandbox` as `sandbox.extensions` parses it for the sandbox itself, with
    what failed to parse in `hint_problems` (the broken parts are left at their defaults).
    """

    method: str  # upper case
    path: str
    raw: dict[str, Any]
    path_item: dict[str, Any]
    hints: OperationHints = field(default_factory=_unparsed)
    hint_problems: tuple[str, ...] = ()

    @property
    def operation_id(self) -> str | None:
        value = self.raw.get("operationId")
        return value if isinstance(value, str) and value else None

    @property
    def where(self) -> str:
        label = f"{self.method} {self.path}"
        return f"{label} ({self.operation_id})" if self.operation_id else label

    @property
    def name(self) -> str:
        return self.operation_id or f"{self.method} {self.path}"


@dataclass(frozen=True, slots=True)
class ResponseView:
    """A response of an operation with its `$ref` followed; `component` names a shared one."""

    status: str
    body: dict[str, Any]
    component: str | None  # e.g. "components.responses.RateLimited"

    @property
    def label(self) -> str:
        return f"{self.status} response"

    @property
    def is_error(self) -> bool:
        return self.status == "default" or self.status[:1] in ("4", "5")

    @property
    def is_success(self) -> bool:
        return self.status[:1] == "2"

    def header_names(self) -> set[str]:
        headers = self.body.get("headers")
        return {str(h).lower() for h in headers} if isinstance(headers, dict) else set()


@dataclass(slots=True)
class Document:
    """The raw document plus the lookups every rule needs, built once per check."""

    raw: dict[str, Any]
    catalogue: Catalogue
    operations: list[OperationView] = field(default_factory=list)
    collections: dict[str, str] = field(default_factory=dict)  # collection -> schema name
    # what is wrong with the schemas' x-collection, x-lifecycle and x-create-set
    collection_problems: list[ExtensionProblem] = field(default_factory=list)
    # collection -> its `x-refuse-while` rules, as the sandbox parses them
    blockers: dict[str, tuple[Blocker, ...]] = field(default_factory=dict)
    first_with_id: dict[str, OperationView] = field(default_factory=dict)

    def lookup(self, ref: str) -> Any:
        if not ref.startswith("#/"):
            raise BrokenRef(ref)
        node: Any = self.raw
        for part in ref[2:].split("/"):
            part = part.replace("~1", "/").replace("~0", "~")
            if isinstance(node, dict) and part in node:
                node = node[part]
            elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
                node = node[int(part)]
            else:
                raise BrokenRef(ref)
        return node

    def deref(self, node: Any) -> Any:
        return self.deref_chain(node)[0]

    def deref_chain(self, node: Any) -> tuple[Any, list[str]]:
        """Follow `$ref` until a real node; also return the refs passed through, in order."""
        chain: list[str] = []
        while isinstance(node, dict) and isinstance(node.get("$ref"), str):
            ref = node["$ref"]
            if ref in chain:
                raise BrokenRef(ref)
            chain.append(ref)
            node = self.lookup(ref)
        return node, chain

    def resolve(self, node: Any, stack: tuple[str, ...] = ()) -> Any:
        """A copy of one subtree with every `$ref` replaced (recursion stops at a repeat)."""
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str):
                if ref in stack:
                    return {}
                target = self.resolve(self.lookup(ref), (*stack, ref))
                # keywords beside a `$ref` (OpenAPI 3.1) add to what it points at, as at load
                extra = {k: self.resolve(v, stack) for k, v in node.items() if k != "$ref"}
                return {**target, **extra} if extra and isinstance(target, dict) else target
            return {k: self.resolve(v, stack) for k, v in node.items()}
        if isinstance(node, list):
            return [self.resolve(v, stack) for v in node]
        return node

    def responses(self, op: OperationView) -> list[ResponseView]:
        raw = op.raw.get("responses")
        if not isinstance(raw, dict):
            return []
        out: list[ResponseView] = []
        for status, node in raw.items():
            body, chain = self.deref_chain(node)
            if not isinstance(body, dict):
                continue
            component = None
            if chain and chain[-1].startswith("#/components/responses/"):
                component = "components.responses." + chain[-1].rsplit("/", 1)[1]
            out.append(ResponseView(str(status), body, component))
        return out

    def parameters(
        self, op: OperationView
    ) -> dict[tuple[str, str], tuple[dict[str, Any], str | None]]:
        """(name, in) -> (parameter, shared component or None); operation-level ones win."""
        params: dict[tuple[str, str], tuple[dict[str, Any], str | None]] = {}
        for source in (op.path_item.get("parameters"), op.raw.get("parameters")):
            for node in source if isinstance(source, list) else []:
                param, chain = self.deref_chain(node)
                if isinstance(param, dict):
                    component = None
                    if chain and chain[-1].startswith("#/components/parameters/"):
                        component = "components.parameters." + chain[-1].rsplit("/", 1)[1]
                    params[(str(param.get("name")), str(param.get("in")))] = (param, component)
        return params

    def body_fields(self, op: OperationView) -> set[str] | None:
        """The fields an operation's JSON body may set (its schema's properties, the read-only
        ones left out); None when the body names no closed set of them."""
        body = self.deref(op.raw.get("requestBody"))
        schema = self._json_schema_of(body if isinstance(body, dict) else {})
        if schema is None or schema.get("additionalProperties", True) is not False:
            return None
        props = schema.get("properties")
        if not isinstance(props, dict):
            return None
        return {n for n, p in props.items() if not (isinstance(p, dict) and p.get("readOnly"))}

    def json_schema(self, response: ResponseView) -> dict[str, Any] | None:
        return self._json_schema_of(response.body)

    def _json_schema_of(self, holder: dict[str, Any]) -> dict[str, Any] | None:
        """The flattened `application/json` schema of a request body or response, if any."""
        content = holder.get("content")
        media = content.get("application/json") if isinstance(content, dict) else None
        if not isinstance(media, dict) or "schema" not in media:
            return None
        schema = flatten(self.resolve(media["schema"]))
        return schema if isinstance(schema, dict) else None


def build_document(raw: dict[str, Any], catalogue: Catalogue) -> Document:
    doc = Document(raw, catalogue)
    # a record's vendor extensions are read from its merged fields, as the sandbox reads them
    schemas = {
        name: flatten(doc.resolve(s)) if isinstance(s, dict) and "x-collection" in s else s
        for name, s in component_section(raw, "schemas").items()
    }
    declared, doc.collection_problems = parse_collections(schemas)
    doc.collections = {name: schema_name for name, (schema_name, _) in declared.items()}
    doc.blockers = {name: hints.blockers for name, (_, hints) in declared.items()}
    paths = raw.get("paths")
    for path, item in paths.items() if isinstance(paths, dict) else ():
        if not isinstance(item, dict):
            continue
        for method in HTTP_METHODS:
            op = item.get(method)
            if isinstance(op, dict):
                view = OperationView(method.upper(), str(path), op, item)
                hints, problems = parse_operation(op.get("x-sandbox"), view.where, doc.collections)
                view = dataclasses.replace(
                    view, hints=hints, hint_problems=tuple(p.message for p in problems)
                )
                doc.operations.append(view)
                if view.operation_id:
                    doc.first_with_id.setdefault(view.operation_id, view)
    return doc


def component_section(raw: dict[str, Any], section: str) -> dict[str, Any]:
    """`components.<section>` of the raw document, or an empty mapping when it is not one."""
    components = raw.get("components")
    found = components.get(section) if isinstance(components, dict) else None
    return found if isinstance(found, dict) else {}


def count_operations(raw: dict[str, Any]) -> int:
    paths = raw.get("paths")
    items = paths.values() if isinstance(paths, dict) else ()
    return sum(1 for item in items if isinstance(item, dict) for m in HTTP_METHODS if m in item)

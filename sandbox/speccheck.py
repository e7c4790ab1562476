"""`opsmerge-sandbox spec check`: validate an OpenAPI document, then lint the OpsMerge conventions.

The sandbox and the contracts read everything from the spec, so a spec that breaks a convention
breaks them quietly (an operation without scopes is served to every key, an error example with a
code the catalogue lacks teaches clients a code the server never sends). The check runs in two
steps: `openapi_spec_validator` answers "is this OpenAPI 3.1?", then one small rule per
convention answers "is this the OpsMerge API the tools expect?". Each rule names the operation
it found a problem in; a problem in a shared component (`components.responses.RateLimited`, say)
is reported once, at the component, with the operations that use it.
"""

from __future__ import annotations

import argparse
import datetime as dt
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sandbox.catalogue import CATALOGUE_PATH, Catalogue, load_catalogue, parse_catalogue
from sandbox.spec import HTTP_METHODS, SPEC_PATH, flatten
from sandbox.yamlio import load_yaml

STABILITY_TIERS = frozenset({"stable", "beta", "internal"})
SANDBOX_KINDS = frozenset({"list", "get", "create", "update", "delete", "action", "identity"})
REQUIRED_ERROR_STATUSES = ("400", "401", "403", "404", "429")
RATE_LIMIT_HEADERS = ("X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset")
ERROR_SCHEMA_REF = "#/components/schemas/Error"
SCOPE_PATTERN = re.compile(r"^[a-z][a-z_]*:(read|write|execute)$")
OPERATION_ID_PATTERN = re.compile(r"^[a-z][A-Za-z0-9]*$")
READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_MAX_MESSAGE = 300


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with the document: where it is, what is wrong, and which check said so."""

    where: str
    message: str
    rule: str = "openapi"


class _BrokenRef(Exception):
    """A `$ref` that points nowhere: the `refs` rule reports it once, other rules step aside."""


@dataclass(frozen=True, slots=True)
class OperationView:
    """One operation of the raw document, as the rules see it."""

    method: str  # upper case
    path: str
    raw: dict[str, Any]
    path_item: dict[str, Any]

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

    @property
    def sandbox(self) -> dict[str, Any]:
        value = self.raw.get("x-sandbox")
        return value if isinstance(value, dict) else {}


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


@dataclass(frozen=True, slots=True)
class Finding:
    """What a rule yields: a message, and the shared component it belongs to, if any."""

    message: str
    component: str | None = None


@dataclass(slots=True)
class Document:
    """The raw document plus the lookups every rule needs, built once per check."""

    raw: dict[str, Any]
    catalogue: Catalogue
    operations: list[OperationView] = field(default_factory=list)
    collections: dict[str, str] = field(default_factory=dict)  # collection -> schema name
    first_with_id: dict[str, OperationView] = field(default_factory=dict)

    def lookup(self, ref: str) -> Any:
        if not ref.startswith("#/"):
            raise _BrokenRef(ref)
        node: Any = self.raw
        for part in ref[2:].split("/"):
            part = part.replace("~1", "/").replace("~0", "~")
            if isinstance(node, dict) and part in node:
                node = node[part]
            elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
                node = node[int(part)]
            else:
                raise _BrokenRef(ref)
        return node

    def deref(self, node: Any) -> Any:
        return self.deref_chain(node)[0]

    def deref_chain(self, node: Any) -> tuple[Any, list[str]]:
        """Follow `$ref` until a real node; also return the refs passed through, in order."""
        chain: list[str] = []
        while isinstance(node, dict) and isinstance(node.get("$ref"), str):
            ref = node["$ref"]
            if ref in chain:
                raise _BrokenRef(ref)
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
                return self.resolve(self.lookup(ref), (*stack, ref))
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

    def json_schema(self, response: ResponseView) -> dict[str, Any] | None:
        content = response.body.get("content")
        media = content.get("application/json") if isinstance(content, dict) else None
        if not isinstance(media, dict) or "schema" not in media:
            return None
        schema = flatten(self.resolve(media["schema"]))
        return schema if isinstance(schema, dict) else None


def build_document(raw: dict[str, Any], catalogue: Catalogue) -> Document:
    doc = Document(raw, catalogue)
    paths = raw.get("paths")
    for path, item in paths.items() if isinstance(paths, dict) else ():
        if not isinstance(item, dict):
            continue
        for method in HTTP_METHODS:
            op = item.get(method)
            if isinstance(op, dict):
                view = OperationView(method.upper(), str(path), op, item)
                doc.operations.append(view)
                if view.operation_id:
                    doc.first_with_id.setdefault(view.operation_id, view)
    for name, schema in _component(raw, "schemas").items():
        decl = schema.get("x-collection") if isinstance(schema, dict) else None
        if isinstance(decl, dict) and isinstance(decl.get("name"), str):
            doc.collections.setdefault(decl["name"], name)
    return doc


def _component(raw: dict[str, Any], section: str) -> dict[str, Any]:
    components = raw.get("components")
    found = components.get(section) if isinstance(components, dict) else None
    return found if isinstance(found, dict) else {}


# --- operation rules: one convention each, one signature, one registry -------------------------

OperationRule = Callable[[Document, OperationView], Iterable[Finding]]
OPERATION_RULES: list[tuple[str, OperationRule]] = []


def operation_rule(name: str) -> Callable[[OperationRule], OperationRule]:
    def register(func: OperationRule) -> OperationRule:
        OPERATION_RULES.append((name, func))
        return func

    return register


@operation_rule("operation-id")
def _operation_id(doc: Document, op: OperationView) -> Iterator[Finding]:
    value = op.raw.get("operationId")
    if not isinstance(value, str) or not value:
        yield Finding("has no operationId")
        return
    if not OPERATION_ID_PATTERN.match(value):
        yield Finding(f"operationId {value!r} is not lowerCamelCase")
    first = doc.first_with_id[value]
    if first is not op:
        yield Finding(f"operationId {value!r} is already used by {first.method} {first.path}")


@operation_rule("tag")
def _tag(doc: Document, op: OperationView) -> Iterator[Finding]:
    tags = op.raw.get("tags")
    if not isinstance(tags, list) or len(tags) != 1:
        count = len(tags) if isinstance(tags, list) else 0
        yield Finding(f"needs exactly one tag, has {count}")
        return
    declared = doc.raw.get("tags")
    if isinstance(declared, list):
        names = {t.get("name") for t in declared if isinstance(t, dict)}
        if tags[0] not in names:
            yield Finding(f"tag {tags[0]!r} is not declared in the top-level tags")


@operation_rule("summary")
def _summary(doc: Document, op: OperationView) -> Iterator[Finding]:
    summary = op.raw.get("summary")
    if not isinstance(summary, str) or not summary.strip():
        yield Finding("has no summary")


@operation_rule("stability")
def _stability(doc: Document, op: OperationView) -> Iterator[Finding]:
    tier = op.raw.get("x-stability")
    if tier not in STABILITY_TIERS:
        allowed = ", ".join(sorted(STABILITY_TIERS))
        yield Finding(f"x-stability is {tier!r}; expected one of {allowed}")


@operation_rule("security")
def _security(doc: Document, op: OperationView) -> Iterator[Finding]:
    security = op.raw.get("security", doc.raw.get("security"))
    if security is None:
        yield Finding("has no security requirement (use [] for a public operation)")
        return
    if not isinstance(security, list):
        yield Finding("security must be a list of requirements")
        return
    schemes = _component(doc.raw, "securitySchemes")
    bearer = 0
    for requirement in security:
        if not isinstance(requirement, dict) or len(requirement) != 1:
            yield Finding("each security requirement must name exactly one scheme")
            continue
        [(scheme, scopes)] = requirement.items()
        if scheme not in schemes:
            yield Finding(f"security scheme {scheme!r} is not declared in components")
        if scheme == "sessionAuth":
            if scopes:
                yield Finding("sessionAuth takes no scopes")
        elif scheme == "bearerAuth":
            bearer += 1
            yield from _bearer_scopes(op, scopes)
        else:
            yield Finding(f"security scheme {scheme!r} is neither bearerAuth nor sessionAuth")
    if bearer > 1:
        yield Finding("lists bearerAuth more than once")


def _bearer_scopes(op: OperationView, scopes: Any) -> Iterator[Finding]:
    if not isinstance(scopes, list) or len(scopes) > 1:
        yield Finding(f"bearerAuth takes at most one scope, got {scopes!r}")
        return
    for scope in scopes:
        if not isinstance(scope, str) or not SCOPE_PATTERN.match(scope):
            yield Finding(f"scope {scope!r} is not family:level (level read, write or execute)")
            continue
        level = scope.split(":", 1)[1]
        if op.method in READ_METHODS and level != "read":
            yield Finding(f"scope {scope!r} on a {op.method}: reads need a :read scope")
        elif op.method not in READ_METHODS and level == "read":
            yield Finding(f"scope {scope!r} on a {op.method}: changes need :write or :execute")


@operation_rule("success-envelope")
def _success_envelope(doc: Document, op: OperationView) -> Iterator[Finding]:
    successes = [r for r in doc.responses(op) if r.is_success]
    if not successes:
        yield Finding("has no success (2xx) response")
    for response in successes:
        schema = doc.json_schema(response)
        if schema is None:
            yield Finding(f"{response.label} has no application/json schema")
            continue
        props = schema.get("properties") or {}
        if (
            schema.get("type") != "object"
            or "data" not in schema.get("required", [])
            or ("data" not in props)
        ):
            yield Finding(f"{response.label} is not the data envelope (an object requiring data)")
            continue
        if op.sandbox.get("kind") == "list":
            yield from _page_shape(response, props["data"])


def _page_shape(response: ResponseView, data: Any) -> Iterator[Finding]:
    props = data.get("properties", {}) if isinstance(data, dict) else {}
    required = data.get("required", []) if isinstance(data, dict) else []
    keys = ("items", "total", "page", "per_page")
    missing = [k for k in keys if k not in props or k not in required]
    if missing:
        yield Finding(f"{response.label} of a list lacks required data.{', data.'.join(missing)}")
    elif props["items"].get("type") != "array":
        yield Finding(f"{response.label} of a list: data.items is not an array")


@operation_rule("error-responses")
def _error_responses(doc: Document, op: OperationView) -> Iterator[Finding]:
    responses = doc.responses(op)
    present = {r.status for r in responses}
    missing = [s for s in REQUIRED_ERROR_STATUSES if s not in present]
    if missing:
        yield Finding(f"lacks error responses {', '.join(missing)}")
    for response in responses:
        if not response.is_error:
            continue
        content = response.body.get("content")
        media = content.get("application/json") if isinstance(content, dict) else None
        schema = media.get("schema") if isinstance(media, dict) else None
        chain = doc.deref_chain(schema)[1] if schema is not None else []
        if ERROR_SCHEMA_REF not in chain:
            yield Finding(f"{response.label} does not use {ERROR_SCHEMA_REF}", response.component)


@operation_rule("rate-limit-headers")
def _rate_limit_headers(doc: Document, op: OperationView) -> Iterator[Finding]:
    """Every response describes the key's bucket, except a 401: without a key there is none."""
    for response in doc.responses(op):
        if response.status == "401":
            continue
        names = response.header_names()
        missing = [h for h in RATE_LIMIT_HEADERS if h.lower() not in names]
        if missing:
            yield Finding(f"{response.label} lacks {', '.join(missing)}", response.component)


@operation_rule("auth-headers")
def _auth_headers(doc: Document, op: OperationView) -> Iterator[Finding]:
    for response in doc.responses(op):
        if response.status == "429" and "retry-after" not in response.header_names():
            yield Finding("429 response lacks Retry-After", response.component)
        if response.status == "401" and "www-authenticate" not in response.header_names():
            yield Finding("401 response lacks WWW-Authenticate", response.component)


@operation_rule("deprecation")
def _deprecation(doc: Document, op: OperationView) -> Iterator[Finding]:
    dates = {key: op.raw.get(key) for key in ("x-deprecated-at", "x-sunset")}
    if op.raw.get("deprecated") is not True:
        for key, value in dates.items():
            if value is not None:
                yield Finding(f"has {key} but is not deprecated: true")
        return
    parsed: dict[str, dt.date] = {}
    for key, value in dates.items():
        if value is None:
            yield Finding(f"is deprecated but has no {key}")
        elif (day := _date(value)) is None:
            yield Finding(f"{key} {value!r} is not a YYYY-MM-DD date")
        else:
            parsed[key] = day
    if len(parsed) == 2 and parsed["x-sunset"] <= parsed["x-deprecated-at"]:
        yield Finding("x-sunset must come after x-deprecated-at")
    for response in (r for r in doc.responses(op) if r.is_success):
        names = response.header_names()
        missing = [h for h in ("Deprecation", "Sunset") if h.lower() not in names]
        if missing:
            yield Finding(f"{response.label} of a deprecated operation lacks {', '.join(missing)}")


def _date(value: Any) -> dt.date | None:
    if isinstance(value, dt.date):  # YAML reads an unquoted date as a date
        return value
    try:
        return dt.date.fromisoformat(str(value))
    except ValueError:
        return None


@operation_rule("pagination")
def _pagination(doc: Document, op: OperationView) -> Iterator[Finding]:
    if op.sandbox.get("kind") != "list":
        return
    params = doc.parameters(op)
    expected = {
        "page": {"type": "integer", "minimum": 1},
        "per_page": {"type": "integer", "minimum": 1, "maximum": 100, "default": 50},
    }
    for name, want in expected.items():
        if (name, "query") not in params:
            yield Finding(f"list operation has no {name} query parameter")
            continue
        param, component = params[(name, "query")]
        schema = doc.resolve(param.get("schema", {}))
        wrong = [f"{k} {want[k]}" for k in want if schema.get(k) != want[k]]
        if wrong:
            yield Finding(f"query parameter {name} must have {', '.join(wrong)}", component)


@operation_rule("error-examples")
def _error_examples(doc: Document, op: OperationView) -> Iterator[Finding]:
    for response in doc.responses(op):
        if not response.is_error:
            continue
        for label, example in _examples(doc, response.body):
            error = example.get("error") if isinstance(example, dict) else None
            code = error.get("code") if isinstance(error, dict) else None
            if not isinstance(code, str):
                yield Finding(f"{response.label} {label} has no error.code", response.component)
            elif code not in doc.catalogue.codes:
                yield Finding(
                    f"{response.label} {label} uses {code}, which is not in the error catalogue",
                    response.component,
                )
            elif not _status_matches(response.status, doc.catalogue.status_of(code)):
                yield Finding(
                    f"{response.label} {label} uses {code}, which the catalogue gives status "
                    f"{doc.catalogue.status_of(code)}",
                    response.component,
                )


def _examples(doc: Document, response: dict[str, Any]) -> Iterator[tuple[str, Any]]:
    content = response.get("content")
    for media_type, media in content.items() if isinstance(content, dict) else ():
        if not isinstance(media, dict):
            continue
        if "example" in media:
            yield f"example ({media_type})", media["example"]
        examples = media.get("examples")
        for name, node in examples.items() if isinstance(examples, dict) else ():
            example = doc.deref(node)
            if isinstance(example, dict) and "value" in example:
                yield f"example {name!r} ({media_type})", example["value"]


def _status_matches(status: str, catalogue_status: int) -> bool:
    if status == "default":
        return catalogue_status >= 400
    if status.upper().endswith("XX"):
        return str(catalogue_status)[0] == status[0]
    return status == str(catalogue_status)


@operation_rule("x-sandbox")
def _x_sandbox(doc: Document, op: OperationView) -> Iterator[Finding]:
    ext = op.raw.get("x-sandbox")
    if not isinstance(ext, dict):
        yield Finding("has no x-sandbox extension (how the sandbox serves it)")
        return
    kind = ext.get("kind")
    if kind not in SANDBOX_KINDS:
        allowed = ", ".join(sorted(SANDBOX_KINDS))
        yield Finding(f"x-sandbox.kind is {kind!r}; expected one of {allowed}")
    if kind not in (None, "identity") and "collection" not in ext:
        yield Finding(f"x-sandbox.kind {kind} needs x-sandbox.collection")
    for key, name in _collection_names(ext):
        if name not in doc.collections:
            yield Finding(f"{key} {name!r} names no schema with a matching x-collection")
    documented = {r.status for r in doc.responses(op)}
    for key, code in ext.items():
        if not (key == "code" or str(key).endswith("-code")):
            continue
        if code not in doc.catalogue.codes:
            yield Finding(f"x-sandbox.{key} {code!r} is not in the error catalogue")
        elif str(doc.catalogue.status_of(code)) not in documented:
            status = doc.catalogue.status_of(code)
            yield Finding(f"x-sandbox.{key} {code} answers {status}, which is not documented")


def _collection_names(ext: dict[str, Any]) -> Iterator[tuple[str, Any]]:
    if "collection" in ext:
        yield "x-sandbox.collection", ext["collection"]
    for key in ("parent", "creates"):
        sub = ext.get(key)
        if isinstance(sub, dict) and "collection" in sub:
            yield f"x-sandbox.{key}.collection", sub["collection"]


# --- document rules: things that belong to no single operation --------------------------------

DocumentRule = Callable[[Document], Iterable[Problem]]
DOCUMENT_RULES: list[DocumentRule] = []


def document_rule(func: DocumentRule) -> DocumentRule:
    DOCUMENT_RULES.append(func)
    return func


@document_rule
def _refs(doc: Document) -> Iterator[Problem]:
    """Every `$ref` is local and points at something (other rules rely on it)."""
    for parts, ref in _walk_refs(doc.raw, ()):
        try:
            doc.lookup(ref)
        except _BrokenRef:
            where, _ = locate(doc.raw, parts)
            reason = "is not a local reference" if not ref.startswith("#/") else "points nowhere"
            yield Problem(where, f"$ref {ref!r} {reason} (at {format_path(parts)})", "refs")


def _walk_refs(node: Any, parts: tuple[Any, ...]) -> Iterator[tuple[tuple[Any, ...], str]]:
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str):
            yield parts, ref
        for key, value in node.items():
            if isinstance(value, dict | list):
                yield from _walk_refs(value, (*parts, key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            if isinstance(value, dict | list):
                yield from _walk_refs(value, (*parts, i))


@document_rule
def _error_schema(doc: Document) -> Iterator[Problem]:
    """The one Error schema is the error envelope every error response points at."""
    where = "components.schemas.Error"
    schema = _component(doc.raw, "schemas").get("Error")
    if not isinstance(schema, dict):
        yield Problem(where, "is missing: every error response must use it", "error-schema")
        return
    try:
        flat = flatten(doc.resolve(schema))
    except _BrokenRef:
        return
    error = flat.get("properties", {}).get("error", {})
    inner = set(error.get("required", []))
    if "error" not in flat.get("required", []) or not {"code", "message"} <= inner:
        yield Problem(where, "must require error with error.code and error.message", "error-schema")


@document_rule
def _collections(doc: Document) -> Iterator[Problem]:
    """x-collection names and id prefixes are unique: the store and the ids rely on it."""
    seen: dict[tuple[str, Any], str] = {}
    for name, schema in _component(doc.raw, "schemas").items():
        decl = schema.get("x-collection") if isinstance(schema, dict) else None
        if decl is None:
            continue
        where = f"components.schemas.{name}"
        if not isinstance(decl, dict) or not decl.get("name") or not decl.get("id-prefix"):
            yield Problem(where, "x-collection needs name and id-prefix", "collections")
            continue
        for key in ("name", "id-prefix"):
            other = seen.setdefault((key, decl[key]), name)
            if other != name:
                message = f"x-collection {key} {decl[key]!r} is also used by {other}"
                yield Problem(where, message, "collections")


# --- running the rules ---------------------------------------------------------------------------


def lint_document(raw: dict[str, Any], catalogue: Catalogue) -> list[Problem]:
    """Every convention rule over the document; problems in shared components are merged."""
    doc = build_document(raw, catalogue)
    problems: list[Problem] = []
    for doc_rule in DOCUMENT_RULES:
        problems.extend(doc_rule(doc))
    shared: dict[tuple[str, str, str], list[str]] = {}
    for op in doc.operations:
        for name, rule in OPERATION_RULES:
            try:
                findings = list(rule(doc, op))
            except _BrokenRef:
                continue  # reported once by the refs rule
            except (TypeError, AttributeError, KeyError, ValueError) as exc:
                findings = [Finding(f"could not apply this rule ({type(exc).__name__}: {exc})")]
            for finding in findings:
                if finding.component:
                    key = (finding.component, finding.message, name)
                    shared.setdefault(key, []).append(op.name)
                else:
                    problems.append(Problem(op.where, finding.message, name))
    for (component, message, name), users in shared.items():
        shown = ", ".join(users[:3]) + (f" and {len(users) - 3} more" if len(users) > 3 else "")
        problems.append(Problem(component, f"{message} (used by {shown})", name))
    return list(dict.fromkeys(problems))


def validate_document(raw: dict[str, Any]) -> list[Problem]:
    """OpenAPI 3.1 validation, each error made readable and placed at its operation or component."""
    from openapi_spec_validator import OpenAPIV31SpecValidator
    from openapi_spec_validator.validation.exceptions import DuplicateOperationIDError
    from referencing.exceptions import Unresolvable

    problems: list[Problem] = []
    try:
        for error in OpenAPIV31SpecValidator(raw).iter_errors():
            if isinstance(error, DuplicateOperationIDError):
                continue  # the operation-id rule says it, naming both operations
            problems.append(_from_validation_error(raw, error))
    except Unresolvable as exc:
        ref = str(getattr(exc, "ref", "?"))
        ref = "#" + ref if ref.startswith("/") else ref
        message = f"validation stopped early at the unresolvable $ref {ref!r}; fix it and re-run"
        problems.append(Problem("document", message))
    except Exception as exc:  # its later stages assume an already valid structure
        if not problems:
            problems.append(Problem("document", f"the validator failed: {_short(repr(exc))}"))
    return problems


def check_spec(raw: dict[str, Any], catalogue: Catalogue) -> list[Problem]:
    """Validation problems first, then convention problems; empty when the spec is sound."""
    return validate_document(raw) + lint_document(raw, catalogue)


def _from_validation_error(raw: dict[str, Any], error: Any) -> Problem:
    from jsonschema.exceptions import best_match

    if error.context:
        error = best_match(error.context) or error
    message = _short(str(error.message).split("\n\n", 1)[0])
    parts = _document_path(raw, error)
    if parts is None:
        return Problem("document", message)
    where, _ = locate(raw, parts)
    return Problem(where, f"{message} (at {format_path(parts)})" if parts else message)


def _document_path(raw: dict[str, Any], error: Any) -> tuple[Any, ...] | None:
    """The error's path in the document.

    Whole-document errors carry it. Errors from checking one schema carry a path relative to that
    schema: find the node the path leads from (by identity first, then by equality), if unique.
    """
    path = _in_document(raw, tuple(error.absolute_path))
    if path is not None:
        return path
    path = tuple(error.absolute_path)
    by_identity: list[tuple[Any, ...]] = []
    by_equality: list[tuple[Any, ...]] = []
    for base, node in _nodes(raw, ()):
        found = _follow(node, path)
        if found is error.instance:
            by_identity.append(base + path)
        elif found is not _MISSING and found == error.instance:
            by_equality.append(base + path)
    for candidates in (by_identity, by_equality):
        if len(candidates) == 1:
            return candidates[0]
    return None


_MISSING = object()


def _in_document(raw: dict[str, Any], path: tuple[Any, ...]) -> tuple[Any, ...] | None:
    """The path with the document's own keys (the validator reports `200` for `'200'`), or None
    when it does not lead anywhere from the root (a path relative to one schema, then)."""
    node: Any = raw
    keys: list[Any] = []
    for part in path:
        if isinstance(node, dict):
            key = part if part in node else str(part)
            if key not in node:
                return None
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            key = part
        else:
            return None
        keys.append(key)
        node = node[key]
    return tuple(keys)


def _follow(node: Any, path: tuple[Any, ...]) -> Any:
    for part in path:
        in_dict = isinstance(node, dict) and part in node
        in_list = isinstance(node, list) and isinstance(part, int) and part < len(node)
        if not (in_dict or in_list):
            return _MISSING
        node = node[part]
    return node


def _nodes(node: Any, parts: tuple[Any, ...]) -> Iterator[tuple[tuple[Any, ...], Any]]:
    if isinstance(node, dict):
        yield parts, node
        for key, value in node.items():
            yield from _nodes(value, (*parts, key))
    elif isinstance(node, list):
        yield parts, node
        for i, value in enumerate(node):
            yield from _nodes(value, (*parts, i))


def locate(raw: dict[str, Any], parts: tuple[Any, ...]) -> tuple[str, tuple[Any, ...]]:
    """A readable place for a JSON path: its operation or component, and the rest of the path."""
    if len(parts) >= 3 and parts[0] == "paths" and str(parts[2]).lower() in HTTP_METHODS:
        paths = raw.get("paths")
        item = paths.get(parts[1]) if isinstance(paths, dict) else None
        op = item.get(parts[2]) if isinstance(item, dict) else None
        op_id = op.get("operationId") if isinstance(op, dict) else None
        label = f"{str(parts[2]).upper()} {parts[1]}"
        return (f"{label} ({op_id})" if isinstance(op_id, str) else label), parts[3:]
    if len(parts) >= 2 and parts[0] == "paths":
        return f"paths.{parts[1]}", parts[2:]
    if len(parts) >= 3 and parts[0] == "components":
        return f"components.{parts[1]}.{parts[2]}", parts[3:]
    if parts:
        return str(parts[0]), parts[1:]
    return "document", ()


def format_path(parts: Iterable[Any]) -> str:
    """A JSON path such as `$.paths['/clients'].get.responses['200']`."""
    out = "$"
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        elif re.fullmatch(r"[A-Za-z_][A-Za-z0-9_-]*", str(part)):
            out += f".{part}"
        else:
            out += f"[{str(part)!r}]"
    return out


def _short(text: str) -> str:
    return text if len(text) <= _MAX_MESSAGE else text[: _MAX_MESSAGE - 3] + "..."


def count_operations(raw: dict[str, Any]) -> int:
    paths = raw.get("paths")
    items = paths.values() if isinstance(paths, dict) else ()
    return sum(1 for item in items if isinstance(item, dict) for m in HTTP_METHODS if m in item)


# --- the command ---------------------------------------------------------------------------------


class UnreadableSpec(Exception):
    """The file is missing, is not YAML, or is not a mapping: nothing to check."""


def read_spec(path: Path) -> tuple[dict[str, Any], Catalogue]:
    """The document and its catalogue: the `x-error-catalogue` file beside it, else the bundled."""
    import yaml

    try:
        raw = load_yaml(path)
    except OSError as exc:
        raise UnreadableSpec(f"cannot read {path}: {exc.strerror or exc}") from None
    except yaml.YAMLError as exc:
        raise UnreadableSpec(f"{path} is not valid YAML: {_yaml_reason(exc)}") from None
    if not isinstance(raw, dict):
        raise UnreadableSpec(f"{path} is not an OpenAPI document (its top level is not a mapping)")
    name = raw.get("x-error-catalogue")
    beside = path.parent / name if isinstance(name, str) else None
    if beside is None or not beside.is_file() or beside.resolve() == CATALOGUE_PATH.resolve():
        return raw, load_catalogue()
    try:
        return raw, parse_catalogue(load_yaml(beside))
    except (OSError, yaml.YAMLError, KeyError, TypeError, ValueError) as exc:
        raise UnreadableSpec(f"cannot read the error catalogue {beside}: {exc}") from None


def _yaml_reason(exc: Exception) -> str:
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc)
    if mark is None:
        return problem
    return f"{problem} (line {mark.line + 1}, column {mark.column + 1})"


def check_command(args: argparse.Namespace) -> int:
    """Exit 0 when the spec is sound, 1 when it has problems, 2 when it cannot be read."""
    from rich.console import Console
    from rich.text import Text

    out = Console(highlight=False, soft_wrap=True)
    err = Console(stderr=True, highlight=False, soft_wrap=True)
    path = Path(args.path) if getattr(args, "path", None) else SPEC_PATH
    try:
        raw, catalogue = read_spec(path)
    except UnreadableSpec as exc:
        err.print(Text(f"error: {exc}", style="bold red"))
        return 2
    problems = check_spec(raw, catalogue)
    operations = count_operations(raw)
    if not problems:
        summary = f"{path}: {operations} operations, valid OpenAPI 3.1, conventions hold"
        out.print(Text.assemble(("OK ", "bold green"), summary))
        return 0
    for problem in problems:
        out.print(
            Text.assemble(
                (problem.where, "bold"), "  ", (f"[{problem.rule}]", "cyan"), " ", problem.message
            )
        )
    noun = "problem" if len(problems) == 1 else "problems"
    out.print(
        Text.assemble(
            (f"{len(problems)} {noun}", "bold red"), f" in {path} ({operations} operations checked)"
        )
    )
    return 1

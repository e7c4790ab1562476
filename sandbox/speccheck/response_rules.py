"""Operation rules about what a call gets back: envelopes, error responses, headers, pages.

These are the conventions clients and the contract suites lean on most (the data envelope, the
one Error schema, rate-limit and auth headers, deprecation headers, pagination parameters, error
examples whose codes the catalogue knows). Many responses are shared components, so a finding
names its component and the report lists it once, with the operations that use it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

from opsmerge_sandbox.speccheck.document import Document, OperationView, ResponseView
from opsmerge_sandbox.speccheck.operation_rules import operation_rule
from opsmerge_sandbox.speccheck.problems import Finding

REQUIRED_ERROR_STATUSES = ("400", "401", "403", "404", "429")
RATE_LIMIT_HEADERS = ("X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset")
ERROR_SCHEMA_REF = "#/components/schemas/Error"


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
        if op.hints.kind == "list":
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
    if op.hints.kind != "list":
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

"""Stage 6: parameters and JSON bodies checked against the spec, with validators compiled at start.

Query strings arrive as text, so each value is first coerced to its schema's type (a clear
message when it cannot be), then the whole set is validated at once, so one answer names every
problem. Unknown query parameters are ignored, as production does, but named: the caller
learns of a typo (`?stauts=Open`) from a Warning header and the journal, or from a 400 when the
sandbox is asked to refuse them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qs, quote

import jsonschema_rs
import msgspec

from opsmerge_sandbox.errors import ApiError, Detail
from opsmerge_sandbox.journal import REDACTED, looks_like_key
from opsmerge_sandbox.jsontypes import json_types
from opsmerge_sandbox.spec import Operation, Param, Schema, strip_extensions

_JSON_TYPES = ("application/json",)
_SEEN_MAX = 2048  # remembered parameter sets per operation
# Unknown parameter names are echoed in a header and kept in the journal: each is shown at most
# this long, and at most this many are named, so no query string makes a huge header.
MAX_SHOWN_NAME = 40
MAX_SHOWN_NAMES = 10
_NAME_SAFE = "-._~[]"  # besides letters and digits; everything else is percent-encoded

# The deepest nesting of arrays and objects a request body may have. No body of the spec or of
# the control API comes near it (their deepest is 3 or 4 levels); the bound exists because the
# decoder, the validator and the store all recurse, and 10,000 levels would exhaust the stack.
MAX_JSON_DEPTH = 64
_JSON_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"')  # brackets inside strings do not nest
_NOT_BRACKET = bytes(b for b in range(256) if b not in b"[]{}")
_SQUARE = bytes.maketrans(b"{}", b"[]")  # one kind of bracket: only the depth matters here


def too_deep(raw: bytes, limit: int = MAX_JSON_DEPTH) -> bool:
    """True when the JSON text nests arrays and objects more than `limit` levels deep.

    Checked on the bytes, before decoding, because the decoder itself is what overflows. Most
    bodies hold fewer brackets than the limit and cost two counts; the others are reduced to
    their structural brackets at C speed and walked once, stopping at the first level too deep
    (a 1 MiB body of nothing but brackets costs tens of milliseconds, less than decoding it).
    Text that is not balanced JSON is left to the decoder, which says what is wrong with it.
    """
    if raw.count(b"[") + raw.count(b"{") <= limit:
        return False
    brackets = _JSON_STRING.sub(b"", raw).translate(None, _NOT_BRACKET).translate(_SQUARE)
    depth = 0
    for byte in brackets:
        if byte == 0x5B:  # "["
            depth += 1
            if depth > limit:
                return True
        else:
            depth -= 1
    return False


def decode_json(raw: bytes, decoder: msgspec.json.Decoder[Any] | None = None) -> Any:
    """A request body decoded, or 400 MALFORMED_JSON (too deep, or not JSON at all)."""
    if too_deep(raw):
        message = f"nested more than {MAX_JSON_DEPTH} levels deep"
        raise ApiError(
            "MALFORMED_JSON",
            f"The request body is not accepted: {message}.",
            [Detail("body", "", message)],
        )
    try:
        return decoder.decode(raw) if decoder is not None else msgspec.json.decode(raw)
    except msgspec.DecodeError as exc:
        raise ApiError(
            "MALFORMED_JSON",
            f"The request body is not valid JSON: {exc}.",
            [Detail("body", "", str(exc))],
        ) from None


def compile_schema(schema: Schema) -> Any:
    return jsonschema_rs.validator_for(strip_extensions(schema), validate_formats=True)


def _types(schema: Schema) -> tuple[str, ...]:
    """A query parameter's types; one without a type is read as a string."""
    return json_types(schema) or ("string",)


def _coerce(raw: str, schema: Schema) -> Any:
    """Turn one query value into the type its schema wants; ValueError with a message if not."""
    types = _types(schema)
    if "integer" in types:
        try:
            return int(raw)
        except ValueError:
            raise ValueError(f"must be an integer, got {raw[:40]!r}") from None
    if "number" in types:
        try:
            return float(raw)
        except ValueError:
            raise ValueError(f"must be a number, got {raw[:40]!r}") from None
    if "boolean" in types:
        low = raw.lower()
        if low in ("true", "1"):
            return True
        if low in ("false", "0"):
            return False
        raise ValueError(f"must be true or false, got {raw[:40]!r}")
    if "array" in types:
        return [v for v in raw.split(",") if v]
    return raw


def _field_of(error: Any) -> str:
    parts = [str(p) for p in error.instance_path]
    kind = error.kind
    prop = getattr(kind, "property", None)
    if prop is not None and isinstance(kind, jsonschema_rs.ValidationErrorKind.Required):
        parts.append(str(prop))
    unexpected = getattr(kind, "unexpected", None)
    if unexpected and isinstance(kind, jsonschema_rs.ValidationErrorKind.AdditionalProperties):
        parts.append(str(unexpected[0]))
    return ".".join(parts)


def _short(message: str, limit: int = 300) -> str:
    """Validator messages quote the offending value; a huge value must not make a huge answer."""
    return message if len(message) <= limit else message[: limit - 1] + "…"


def schema_details(validator: Any, instance: Any, location: str, limit: int = 20) -> list[Detail]:
    details: list[Detail] = []
    for error in validator.iter_errors(instance):
        details.append(Detail(location, _field_of(error), _short(error.message)))
        if len(details) >= limit:
            break
    return details


class OperationValidator:
    """Everything needed to check one operation's requests, prepared once."""

    def __init__(self, op: Operation, also_known: frozenset[str] = frozenset()) -> None:
        """`also_known`: query names the sandbox reads itself on every operation (fault twins)."""
        self.op = op
        self.path_params = [p for p in op.params if p.location == "path"]
        self.query_params: dict[str, Param] = {
            p.name: p for p in op.params if p.location == "query"
        }
        self.known_query = frozenset(self.query_params) | also_known
        self._unknown_seen: dict[str, tuple[str, ...]] = {}
        self.defaults = {
            p.name: p.schema["default"] for p in self.query_params.values() if "default" in p.schema
        }
        self._query_validator = (
            compile_schema(
                {
                    "type": "object",
                    "properties": {p.name: p.schema for p in self.query_params.values()},
                    "required": [p.name for p in self.query_params.values() if p.required],
                }
            )
            if self.query_params
            else None
        )
        self._path_validator = (
            compile_schema(
                {
                    "type": "object",
                    "properties": {p.name: p.schema for p in self.path_params},
                }
            )
            if self.path_params
            else None
        )
        self._body_validator = compile_schema(op.body_schema) if op.body_schema else None
        self._decoder = msgspec.json.Decoder()
        self._seen: dict[tuple[Any, ...], tuple[dict[str, Any], frozenset[str]]] = {}

    def request_params(
        self, path_values: Mapping[str, str], query_string: str
    ) -> tuple[dict[str, Any], frozenset[str]]:
        """Typed parameters and the names the client sent; valid answers are remembered.

        Clients repeat the same queries (page walks, polling), and the answer depends only on
        the operation, the path values and the query string, so checked results are cached.
        """
        key = (tuple(path_values.values()), query_string)
        hit = self._seen.get(key)
        if hit is not None:
            return dict(hit[0]), hit[1]
        query = parse_qs(query_string, keep_blank_values=True)
        values = self.params(path_values, query)
        if len(self._seen) >= _SEEN_MAX:
            self._seen.clear()
        self._seen[key] = (values, frozenset(query))
        return dict(values), frozenset(query)

    def unknown(self, query_string: str) -> tuple[str, ...]:
        """Query parameter names the operation does not take, in the order sent, each once.

        Decoded as the parameters themselves are (so `%73tauts` is `stauts`); remembered per
        query string, like the checked parameters.
        """
        if not query_string:
            return ()
        hit = self._unknown_seen.get(query_string)
        if hit is None:
            names = parse_qs(query_string, keep_blank_values=True)
            hit = tuple(n for n in names if n not in self.known_query)
            if len(self._unknown_seen) >= _SEEN_MAX:
                self._unknown_seen.clear()
            self._unknown_seen[query_string] = hit
        return hit

    def refuse_unknown(self, names: tuple[str, ...]) -> ApiError:
        """The 400 for `serve --reject-unknown-params`, naming each unknown parameter."""
        shown = shown_names(names)
        takes = ", ".join(sorted(self.query_params)) or "no query parameters"
        return ApiError(
            "VALIDATION_ERROR",
            f"Unknown query parameter(s): {', '.join(shown)}. "
            f"{self.op.operation_id} takes: {takes}.",
            [
                Detail("query", name, "not a parameter of this operation")
                for name in shown[:MAX_SHOWN_NAMES]
            ],
        )

    def params(
        self, path_values: Mapping[str, str], query: Mapping[str, list[str]]
    ) -> dict[str, Any]:
        """Path and query parameters, typed, with the spec's defaults filled in."""
        values: dict[str, Any] = dict(self.defaults)
        details: list[Detail] = []
        for name, raw_values in query.items():
            param = self.query_params.get(name)
            if param is None:
                continue
            if len(raw_values) > 1 and "array" not in _types(param.schema):
                details.append(Detail("query", name, "given more than once"))
                continue
            try:
                values[name] = _coerce(raw_values[-1], param.schema)
            except ValueError as exc:
                details.append(Detail("query", name, str(exc)))
        if self._query_validator is not None and not details:
            query_values = {k: v for k, v in values.items() if k in self.query_params}
            details.extend(schema_details(self._query_validator, query_values, "query"))
        path = {p.name: path_values.get(p.name, "") for p in self.path_params}
        if self._path_validator is not None:
            details.extend(schema_details(self._path_validator, path, "path"))
        if details:
            raise ApiError("VALIDATION_ERROR", _summary(details), details)
        values.update(path)
        return values

    def body(self, raw: bytes, content_type: str | None) -> Any:
        """The parsed JSON body (None when the operation takes none and none was sent)."""
        if self.op.body_schema is None:
            return None
        if not raw:
            if self.op.body_required:
                detail = Detail("body", "", "a JSON body is required")
                raise ApiError("VALIDATION_ERROR", "A JSON request body is required.", [detail])
            return None
        media = (content_type or "").split(";", 1)[0].strip().lower()
        if media not in _JSON_TYPES:
            raise ApiError(
                "UNSUPPORTED_MEDIA_TYPE",
                f"Send the body as application/json (got {media[:60] or 'no Content-Type'}).",
            )
        body = decode_json(raw, self._decoder)
        assert self._body_validator is not None
        details = schema_details(self._body_validator, body, "body")
        if details:
            raise ApiError("VALIDATION_ERROR", _summary(details), details)
        return body


def shown_name(name: str) -> str:
    """A client's parameter name made safe to echo: visible ASCII only (percent-encoded, so no
    quote or line break can end a header), at most MAX_SHOWN_NAME characters, and never a key."""
    if looks_like_key(name):
        return REDACTED
    text = quote(name, safe=_NAME_SAFE) or '""'
    return text if len(text) <= MAX_SHOWN_NAME else text[: MAX_SHOWN_NAME - 3] + "..."


def shown_names(names: tuple[str, ...]) -> list[str]:
    """At most MAX_SHOWN_NAMES names, made safe, then how many more there were."""
    shown = [shown_name(n) for n in names[:MAX_SHOWN_NAMES]]
    if len(names) > MAX_SHOWN_NAMES:
        shown.append(f"(and {len(names) - MAX_SHOWN_NAMES} more)")
    return shown


def unknown_warning(names: tuple[str, ...]) -> str:
    """The Warning header (RFC 7234 style) for query parameters that were ignored."""
    return f'299 - "unknown query parameter(s) ignored: {", ".join(shown_names(names))}"'


def _summary(details: list[Detail]) -> str:
    first = details[0]
    where = f"{first.location} {first.field}".strip() if first.field else first.location
    more = f" (and {len(details) - 1} more)" if len(details) > 1 else ""
    return f"Invalid request: {where}: {first.message}{more}."

"""The per-request fault grammar: the `Prefer` header and its `__name` query twins.

Prism-compatible: `Prefer: code=429` (or `?__code=429`) forces a status, and `example=` and
`dynamic=` are accepted so clients written against Prism keep working. Ours, in the same header:
`delay=<ms>` and `retry-after=<s>`. Preferences are separated by `,` or `;` (RFC 7240 puts
parameters after `;`; Prism's parser treats both alike), values may be quoted, names are
case-insensitive, the first instance of a name wins and unknown preferences are ignored, as RFC
7240 asks. A known preference with a bad value is a 400 that names where it came from.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace

from opsmerge_sandbox.errors import ApiError, Detail
from opsmerge_sandbox.pipeline.envelope import header_value

MAX_DELAY_MS = 60_000
MAX_RETRY_AFTER = 86_400
KNOWN = ("code", "example", "dynamic", "delay", "retry-after")
QUERY_NAMES = {"__" + name: name for name in KNOWN} | {"__retry_after": "retry-after"}
_TCHAR = frozenset("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")


def _echo(value: str) -> str:
    """A client's value as RFC 7240 sends it back: a token when it is one, else a quoted string,
    and never anything but visible ASCII (see header_value)."""
    if value and all(ch in _TCHAR for ch in value):
        return value
    return header_value('"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"')


@dataclass(frozen=True, slots=True)
class Preferences:
    code: int | None = None
    example: str | None = None
    dynamic: bool | None = None
    delay_ms: int | None = None
    retry_after: int | None = None

    def acts(self, success_status: int) -> bool:
        """True when the sandbox must do something: force another status, or wait. Asking for
        the success status (Prism's habit), an example or dynamic changes nothing here, so the
        rules still apply to such a request."""
        forces = self.code is not None and self.code != success_status
        return forces or bool(self.delay_ms)

    def applied(self) -> str:
        """The Preference-Applied value (RFC 7240): what was honoured, in a stable order."""
        parts = []
        if self.code is not None:
            parts.append(f"code={self.code}")
        if self.example is not None:
            parts.append(f"example={_echo(self.example)}")
        if self.dynamic is not None:
            parts.append(f"dynamic={'true' if self.dynamic else 'false'}")
        if self.delay_ms is not None:
            parts.append(f"delay={self.delay_ms}")
        if self.retry_after is not None:
            parts.append(f"retry-after={self.retry_after}")
        return ", ".join(parts)


class PreferError(ValueError):
    """A known preference with a value the sandbox cannot honour."""

    def __init__(self, name: str, message: str) -> None:
        super().__init__(message)
        self.name = name
        self.message = message


def _unquote(value: str) -> str:
    value = value.strip(" \t")  # HTTP's blanks only: a stray control byte must be seen, not eaten
    if len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1].replace('\\"', '"').replace("\\\\", "\\")
    return value


def _int(name: str, raw: str, lo: int, hi: int, what: str) -> int:
    if not raw.isdigit() or len(raw) > 9:
        raise PreferError(
            name, f"{name}={raw[:40]!r}: {what} must be a whole number from {lo} to {hi}"
        )
    value = int(raw)
    if not lo <= value <= hi:
        raise PreferError(name, f"{name}={value}: {what} must be from {lo} to {hi}")
    return value


def _value(prefs: Preferences, name: str, raw: str) -> Preferences:
    if raw == "" and name != "dynamic":
        raise PreferError(name, f"{name} needs a value, as in {name}=...")
    if name == "code":
        if len(raw) != 3:
            raise PreferError(name, f"code={raw[:40]!r}: the status must be a three-digit number")
        return replace(prefs, code=_int(name, raw, 100, 599, "the status"))
    if name == "example":
        if len(raw) > 100 or not raw.isprintable():
            raise PreferError(
                name, "example must name an example in at most 100 printable characters"
            )
        return replace(prefs, example=raw)
    if name == "dynamic":
        flag = raw.lower() or "true"  # a bare `dynamic` means true (RFC 7240)
        if flag not in ("true", "false"):
            raise PreferError(name, f"dynamic={raw[:40]!r}: must be true or false")
        return replace(prefs, dynamic=flag == "true")
    if name == "delay":
        return replace(
            prefs, delay_ms=_int(name, raw, 0, MAX_DELAY_MS, "the delay in milliseconds")
        )
    return replace(prefs, retry_after=_int(name, raw, 0, MAX_RETRY_AFTER, "retry-after in seconds"))


def parse_prefer(values: Iterable[str]) -> Preferences:
    """Preferences from every Prefer header of a request; raises PreferError on a bad value.

    A header value is octets, not text: RFC 7240 writes values as tokens and quoted strings, both
    ASCII, so a value with any other byte is refused rather than guessed at (the same bytes read
    as Latin-1 or as UTF-8 are different names). The query twin, percent-encoded UTF-8 by
    definition, is where a name beyond ASCII goes.
    """
    prefs = Preferences()
    seen: set[str] = set()
    for header in values:
        for element in header.split(","):
            for piece in element.split(";"):
                name, _, raw = piece.partition("=")
                name = name.strip().lower()
                if name not in KNOWN or name in seen:
                    continue
                seen.add(name)
                value = _unquote(raw)
                if not value.isascii():
                    raise PreferError(
                        name,
                        f"{name}= in a Prefer header must be ASCII; send other characters as "
                        f"the query parameter __{name}= (percent-encoded UTF-8)",
                    )
                prefs = _value(prefs, name, value)
    return prefs


def parse_query(query: Mapping[str, list[str]]) -> tuple[Preferences, dict[str, str]]:
    """Preferences from `__code`-style query parameters, and which parameter gave each one."""
    prefs = Preferences()
    sources: dict[str, str] = {}
    for param, name in QUERY_NAMES.items():
        raw = query.get(param)
        if raw is None or name in sources:
            continue
        sources[name] = param
        try:
            # ASCII blanks only: str.strip() would also drop U+0085 and other controls unseen
            prefs = _value(prefs, name, raw[0].strip(" \t"))
        except PreferError as exc:
            exc.name = param
            raise
    return prefs, sources


def merge(header: Preferences, query: Preferences) -> Preferences:
    """The query twin wins over the header, field by field (a link overrides a client default)."""
    return Preferences(
        code=query.code if query.code is not None else header.code,
        example=query.example if query.example is not None else header.example,
        dynamic=query.dynamic if query.dynamic is not None else header.dynamic,
        delay_ms=query.delay_ms if query.delay_ms is not None else header.delay_ms,
        retry_after=query.retry_after if query.retry_after is not None else header.retry_after,
    )


def invalid(location: str, field: str, message: str) -> ApiError:
    """The 400 for a preference the sandbox cannot honour, naming the header or parameter."""
    where = "Prefer header" if location == "header" else f"query parameter {field}"
    return ApiError(
        "VALIDATION_ERROR", f"Invalid {where}: {message}.", [Detail(location, field, message)]
    )

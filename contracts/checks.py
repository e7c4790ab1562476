"""Every contract check: one function each, one signature, one registry, each with an id.

A check is a pure function `check(ctx, exchanges) -> Iterator[Verdict]` over recorded exchanges.
It yields a verdict for every exchange it judged (pass, fail or warn) and nothing for exchanges it
does not apply to, so reports can say which operations each check actually covered. Response
checks judge every exchange on its own; convention checks (pagination, auth, rate limits, bodies)
read the exchanges whose `role` they understand, which the probes set when they send them.
"""

from __future__ import annotations

import email.utils
import itertools
import json
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any
from urllib.parse import unquote, urlsplit

import jsonschema_rs

from opsmerge_contracts.exchange import Exchange
from opsmerge_contracts.expect import unmet
from opsmerge_contracts.webhook_payloads import (
    EVENT_HEADER,
    SIGNATURE_HEADER,
    SIGNED,
    payload_problems,
)
from opsmerge_sandbox.catalogue import Catalogue
from opsmerge_sandbox.errors import ApiError
from opsmerge_sandbox.pipeline.validate import OperationValidator
from opsmerge_sandbox.spec import Operation, Spec

PASS, FAIL, WARN = "pass", "fail", "warn"
# checks that judge only traffic the harness did not send (the proxy's): a contract run never
# gives them an exchange, so a run's report cannot list them
OBSERVED_ONLY = frozenset({"request_valid"})


@dataclass(frozen=True, slots=True)
class Verdict:
    exchange: Exchange
    status: str  # pass | fail | warn
    message: str = ""


@dataclass(frozen=True, slots=True)
class Result:
    """A verdict with the id of the check that gave it: what reports and failures show."""

    check: str
    status: str
    exchange: Exchange
    message: str = ""

    @property
    def operation_id(self) -> str | None:
        return self.exchange.operation_id


@dataclass(slots=True)
class CheckContext:
    """What checks may consult besides the exchanges: the spec and compiled validators."""

    spec: Spec
    _validators: dict[tuple[str, str], Any] = field(default_factory=dict)
    _ops: dict[str, Operation] = field(default_factory=dict)
    _requests: dict[str, tuple[OperationValidator, re.Pattern[str]]] = field(default_factory=dict)
    _path_names: dict[str, list[str]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._ops = {op.operation_id: op for op in self.spec.operations}

    @property
    def catalogue(self) -> Catalogue:
        return self.spec.catalogue

    def operation(self, exchange: Exchange) -> Operation | None:
        return self._ops.get(exchange.operation_id or "")

    def validator(self, op: Operation, status: int) -> Any | None:
        """The compiled response-schema validator for a status, or None when none is documented."""
        key = response_key(op, status)
        if key is None or op.responses.get(key) is None:
            return None
        cache_key = (op.operation_id, key)
        if cache_key not in self._validators:
            schema = op.responses[key]
            assert schema is not None  # a status without a body schema returned None above
            self._validators[cache_key] = jsonschema_rs.validator_for(
                schema, validate_formats=True
            )
        return self._validators[cache_key]

    def request_validator(self, op: Operation) -> tuple[OperationValidator, re.Pattern[str]]:
        """The sandbox's own validator of the operation's requests, and its path's pattern."""
        if op.operation_id not in self._requests:
            names: list[str] = []

            def group(m: re.Match[str]) -> str:
                names.append(m.group(1))
                return f"(?P<p{len(names) - 1}>[^/]+)"

            regex = re.sub(r"\\\{([^}]+)\\\}", group, re.escape(op.path))
            pattern = re.compile(regex + "/?$")  # searched in the path, base path and all
            self._requests[op.operation_id] = (OperationValidator(op), pattern)
            self._path_names[op.operation_id] = names
        return self._requests[op.operation_id]

    def path_values(self, op: Operation, path: str) -> dict[str, str]:
        _, pattern = self.request_validator(op)
        match = pattern.search(path)
        names = self._path_names[op.operation_id]
        if match is None:
            return {}
        return {names[int(k[1:])]: unquote(v) for k, v in match.groupdict().items()}


CheckFunc = Callable[[CheckContext, Sequence[Exchange]], Iterator[Verdict]]


@dataclass(frozen=True, slots=True)
class CheckInfo:
    id: str
    title: str
    group: str
    func: CheckFunc


REGISTRY: dict[str, CheckInfo] = {}


def check(check_id: str, title: str, group: str) -> Callable[[CheckFunc], CheckFunc]:
    """Register a check under an id; ids are what reports and failures name."""

    def register(func: CheckFunc) -> CheckFunc:
        if check_id in REGISTRY:
            raise ValueError(f"check id {check_id!r} registered twice")
        REGISTRY[check_id] = CheckInfo(check_id, title, group, func)
        return func

    return register


def run_checks(
    ctx: CheckContext, exchanges: Sequence[Exchange], only: Iterable[str] | None = None
) -> list[Result]:
    """Every registered check (or those in `only`) over the exchanges, in registry order."""
    wanted = set(only) if only is not None else None
    unknown = (wanted or set()) - REGISTRY.keys()
    if unknown:
        raise KeyError(f"unknown check ids: {', '.join(sorted(unknown))}")
    results: list[Result] = []
    for info in REGISTRY.values():
        if wanted is not None and info.id not in wanted:
            continue
        for verdict in info.func(ctx, exchanges):
            results.append(Result(info.id, verdict.status, verdict.exchange, verdict.message))
    return results


def _ok(ex: Exchange) -> Verdict:
    return Verdict(ex, PASS)


def _fail(ex: Exchange, message: str) -> Verdict:
    return Verdict(ex, FAIL, message)


def _expect_error(ex: Exchange, status: int, code: str, what: str) -> Verdict:
    """Pass when the answer is `status` with catalogue `code`; else say what `what` got."""
    got_status, got_code = ex.response.status, _error_code(ex)
    if got_status == status and got_code == code:
        return _ok(ex)
    got = f"{got_status} {got_code}" if got_code else str(got_status)
    return _fail(ex, f"{what} was answered {got}, expected {status} {code}")


def _verdict(ex: Exchange, problems: list[str]) -> Verdict:
    return _fail(ex, "; ".join(problems)) if problems else _ok(ex)


def response_key(op: Operation, status: int) -> str | None:
    """The key of the operation's documented response a status falls under (`404`, `4XX`,
    `default`), or None when none covers it."""
    for key in (str(status), f"{status // 100}XX", "default"):
        if key in op.responses:
            return key
    return None


def _role(exchanges: Sequence[Exchange], *roles: str) -> list[Exchange]:
    return [ex for ex in exchanges if ex.role in roles]


def _error_code(ex: Exchange) -> Any:
    body = ex.response.json()
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        return body["error"].get("code")
    return None


def _data(ex: Exchange) -> Any:
    body = ex.response.json()
    return body.get("data") if isinstance(body, dict) else None


def _int_header(ex: Exchange, name: str) -> int | None:
    value = ex.response.header(name)
    if value is None or not value.strip().isdigit():
        return None
    return int(value.strip())


def _describe(op: Operation | None) -> str:
    return op.operation_id if op else "this path"


# --- the response: status, content type, schema, 5xx ------------------------------------------


@check("status_documented", "The status is documented for the operation", "response")
def status_documented(ctx: CheckContext, exchanges: Sequence[Exchange]) -> Iterator[Verdict]:
    for ex in exchanges:
        op = ctx.operation(ex)
        if op is None:
            continue
        if response_key(op, ex.response.status) is not None:
            yield _ok(ex)
        else:
            documented = ", ".join(sorted(op.responses))
            yield _fail(
                ex,
                f"{op.operation_id} answered {ex.response.status}, "
                "which its spec does not document "
                f"(documented: {documented})",
            )


@check("content_type_json", "The body is JSON and says so in Content-Type", "response")
def content_type_json(ctx: CheckContext, exchanges: Sequence[Exchange]) -> Iterator[Verdict]:
    for ex in exchanges:
        if ex.request.method == "HEAD" or ex.response.status in (204, 304):
            continue
        if not ex.response.body:
            yield _fail(ex, f"the {ex.response.status} response has an empty body")
            continue
        problems = []
        ctype = ex.response.content_type
        if ctype != "application/json" and not ctype.endswith("+json"):
            problems.append(f"Content-Type is {ctype or 'missing'!r}, expected application/json")
        if not ex.response.is_json:
            problems.append("the body is not valid JSON")
        yield _verdict(ex, problems)


@check("response_schema", "The body validates against the documented response schema", "response")
def response_schema(ctx: CheckContext, exchanges: Sequence[Exchange]) -> Iterator[Verdict]:
    for ex in exchanges:
        op = ctx.operation(ex)
        if op is None or ex.request.method == "HEAD":
            continue
        validator = ctx.validator(op, ex.response.status)
        if validator is None:
            continue
        if not ex.response.is_json:
            yield _fail(ex, "the body is not JSON, so it cannot match the schema")
            continue
        body = ex.response.json()
        if validator.is_valid(body):  # the common case, without collecting errors
            yield _ok(ex)
            continue
        errors = list(validator.iter_errors(body))
        shown = [f"{_pointer(e.instance_path)}: {e.message}" for e in errors[:5]]
        more = f" (and {len(errors) - 5} more)" if len(errors) > 5 else ""
        yield _fail(
            ex,
            f"the {ex.response.status} body of {op.operation_id} does not match its schema: "
            + "; ".join(shown)
            + more,
        )


def _pointer(path: Sequence[Any]) -> str:
    return "/" + "/".join(str(p) for p in path) if path else "(the body)"


@check("no_server_error", "Nothing answers 5xx", "response")
def no_server_error(ctx: CheckContext, exchanges: Sequence[Exchange]) -> Iterator[Verdict]:
    for ex in exchanges:
        if ex.response.status >= 500:
            code = _error_code(ex)
            detail = f" ({code})" if code else ""
            yield _fail(ex, f"the server answered {ex.response.status}{detail} to {ex.summary()}")
        else:
            yield _ok(ex)


@check("request_succeeds", "A well-formed request with a key that may make it succeeds", "response")
def request_succeeds(ctx: CheckContext, exchanges: Sequence[Exchange]) -> Iterator[Verdict]:
    for ex in _role(exchanges, "well-formed"):
        op = ctx.operation(ex)
        if op is None:
            continue
        if ex.response.status == op.success_status:
            yield _ok(ex)
            continue
        code = _error_code(ex)
        yield _fail(
            ex,
            f"a well-formed {op.operation_id} request was answered {ex.response.status}"
            f"{' ' + str(code) if code else ''}, expected {op.success_status}",
        )


@check(
    "request_valid",
    "Observed traffic: the request matches the operation's parameters and body schema",
    "bodies",
)
def request_valid(ctx: CheckContext, exchanges: Sequence[Exchange]) -> Iterator[Verdict]:
    """Judges only traffic the harness did not write (the proxy's, role `observed`): the
    harness sends invalid requests on purpose. Unknown query parameters count: the API ignores
    them, so a client relying on one relies on nothing."""
    for ex in _role(exchanges, "observed"):
        op = ctx.operation(ex)
        if op is None:
            continue
        validator, _ = ctx.request_validator(op)
        query = urlsplit(ex.request.url).query
        problems = [f"query parameter {n!r} is not one {op.operation_id} takes"
                    for n in validator.unknown(query)]  # fmt: skip
        try:
            validator.request_params(ctx.path_values(op, ex.request.path), query)
            if ex.request.body or op.body_required:
                validator.body(ex.request.body, ex.request.headers.get("content-type"))
        except ApiError as err:
            problems += [
                f"{d.location} {d.field}: {d.message}".replace("  ", " ") for d in err.details
            ] or [err.message]
        yield _verdict(ex, problems[:5])


# --- the envelope -----------------------------------------------------------------------------


@check(
    "envelope",
    "Success in `data`; errors in `error` with a catalogue code of that status",
    "envelope",
)
def envelope(ctx: CheckContext, exchanges: Sequence[Exchange]) -> Iterator[Verdict]:
    for ex in exchanges:
        status = ex.response.status
        if ex.request.method == "HEAD" or status in (204, 304) or 300 <= status < 400:
            continue
        body = ex.response.json()
        if not isinstance(body, dict):
            yield _fail(ex, f"the {status} body is not a JSON object, so it has no envelope")
            continue
        if status < 300:
            problems = []
            if "data" not in body:
                problems.append(f"the {status} body has no `data` envelope (keys: {sorted(body)})")
            if "error" in body:
                problems.append(f"the {status} body carries an `error` object")
            yield _verdict(ex, problems)
            continue
        yield _verdict(ex, list(_error_problems(ctx.catalogue, status, body)))


def _error_problems(catalogue: Catalogue, status: int, body: dict[str, Any]) -> Iterator[str]:
    error = body.get("error")
    if not isinstance(error, dict):
        yield f"the {status} body has no `error` object (keys: {sorted(body)})"
        return
    message = error.get("message")
    if not isinstance(message, str) or not message.strip():
        yield "error.message is missing or empty"
    code = error.get("code")
    if not isinstance(code, str):
        yield "error.code is missing"
    elif code not in catalogue.codes:
        yield f"error.code {code!r} is not in the error catalogue"
    elif catalogue.status_of(code) != status:
        yield (
            f"error.code {code} belongs with status {catalogue.status_of(code)} in the catalogue, "
            f"but the response is {status}"
        )


# --- pagination --------------------------------------------------------------------------------


def _walks(exchanges: Sequence[Exchange]) -> dict[str, list[Exchange]]:
    walks: dict[str, list[Exchange]] = {}
    for ex in _role(exchanges, "page"):
        walks.setdefault(str(ex.meta.get("walk")), []).append(ex)
    for pages in walks.values():
        pages.sort(key=lambda e: int(e.meta.get("page", 0)))
    return walks


def _page_items(ex: Exchange) -> list[Any] | None:
    data = _data(ex)
    if isinstance(data, dict) and isinstance(data.get("items"), list):
        return data["items"]
    return None


def _page_total(ex: Exchange) -> int | None:
    data = _data(ex)
    total = data.get("total") if isinstance(data, dict) else None
    return total if isinstance(total, int) and not isinstance(total, bool) else None


def _item_id(item: Any) -> str:
    if isinstance(item, dict) and "id" in item:
        return str(item["id"])
    return json.dumps(item, sort_keys=True)


def _walk_ids(pages: list[Exchange]) -> list[str]:
    return [_item_id(i) for ex in pages for i in (_page_items(ex) or [])]


@check("pagination_total", "Pages at each per_page add up to `total`", "pagination")
def pagination_total(ctx: CheckContext, exchanges: Sequence[Exchange]) -> Iterator[Verdict]:
    for walk, pages in _walks(exchanges).items():
        last = pages[-1]
        broken = [ex for ex in pages if ex.response.status != 200 or _page_items(ex) is None]
        if broken:
            yield _fail(
                broken[0],
                f"walk {walk}: page {broken[0].meta.get('page')} is not a page "
                f"of items ({broken[0].response.status})",
            )
            continue
        totals = {_page_total(ex) for ex in pages}
        if len(totals) != 1 or None in totals:
            shown = ", ".join(f"page {ex.meta.get('page')}: {_page_total(ex)}" for ex in pages)
            yield _fail(last, f"walk {walk}: `total` changes from page to page ({shown})")
            continue
        total = totals.pop()
        assert total is not None  # refused just above
        per_page = int(pages[0].meta.get("per_page") or 0)
        problems = []
        truncated = any(ex.meta.get("truncated") for ex in pages)
        count = 0
        for index, ex in enumerate(pages):
            items = _page_items(ex) or []
            count += len(items)
            expected = min(per_page, max(0, total - index * per_page)) if per_page else len(items)
            if len(items) != expected:
                problems.append(
                    f"page {ex.meta.get('page')} holds {len(items)} items, expected {expected} "
                    f"(total {total}, per_page {per_page})"
                )
                break
        if not truncated and not problems and count != total:
            problems.append(f"the pages hold {count} items but `total` says {total}")
        yield _fail(last, f"walk {walk}: " + "; ".join(problems)) if problems else _ok(last)


@check("pagination_unique", "No item appears twice across the pages of a walk", "pagination")
def pagination_unique(ctx: CheckContext, exchanges: Sequence[Exchange]) -> Iterator[Verdict]:
    for walk, pages in _walks(exchanges).items():
        seen: dict[str, Any] = {}
        repeated = None
        for ex in pages:
            for item in _page_items(ex) or []:
                item_id = _item_id(item)
                if item_id in seen and repeated is None:
                    repeated = (item_id, seen[item_id], ex)
                seen.setdefault(item_id, ex.meta.get("page"))
        if repeated:
            item_id, first_page, ex = repeated
            yield _fail(
                ex,
                f"walk {walk}: item {item_id} appears on page {first_page} and again "
                f"on page {ex.meta.get('page')}",
            )
        else:
            yield _ok(pages[-1])


@check(
    "pagination_stable", "The order is the same at every page size and on a re-read", "pagination"
)
def pagination_stable(ctx: CheckContext, exchanges: Sequence[Exchange]) -> Iterator[Verdict]:
    walks = _walks(exchanges)
    sequences = {walk: _walk_ids(pages) for walk, pages in walks.items()}
    names = sorted(sequences)
    for a, b in itertools.pairwise(names):
        first, second = sequences[a], sequences[b]
        n = min(len(first), len(second))
        ex = walks[b][-1]
        if first[:n] != second[:n]:
            at = next(i for i in range(n) if first[i] != second[i])
            yield _fail(
                ex,
                f"walks {a} and {b} disagree at position {at + 1}: "
                f"{first[at]} against {second[at]}",
            )
        else:
            yield _ok(ex)
    for ex in _role(exchanges, "page-repeat"):
        original = walks.get(str(ex.meta.get("walk")), [])
        page = next((p for p in original if p.meta.get("page") == ex.meta.get("page")), None)
        if page is None:
            continue
        again = [_item_id(i) for i in _page_items(ex) or []]
        before = [_item_id(i) for i in _page_items(page) or []]
        if again != before:
            yield _fail(
                ex,
                f"reading page {ex.meta.get('page')} again (walk {ex.meta.get('walk')}) "
                f"gave a different order or items: {before[:5]} then {again[:5]}",
            )
        else:
            yield _ok(ex)


@check(
    "pagination_bounds", "per_page over 100 and page below 1 are rejected with 400", "pagination"
)
def pagination_bounds(ctx: CheckContext, exchanges: Sequence[Exchange]) -> Iterator[Verdict]:
    for ex in _role(exchanges, "page-bounds"):
        what = f"{ex.meta.get('param')}={ex.meta.get('value')}"
        problems = []
        if ex.response.status != 400:
            problems.append(f"{what} was answered {ex.response.status}, expected 400")
        elif _error_code(ex) != "VALIDATION_ERROR":
            problems.append(
                f"{what} was rejected with {_error_code(ex)}, expected VALIDATION_ERROR"
            )
        yield _verdict(ex, problems)


@check("pagination_past_end", "A page past the end is empty and keeps the same total", "pagination")
def pagination_past_end(ctx: CheckContext, exchanges: Sequence[Exchange]) -> Iterator[Verdict]:
    for ex in _role(exchanges, "page-past-end"):
        if ex.response.status != 200:
            yield _fail(
                ex,
                f"page {ex.meta.get('page')} past the end was answered "
                f"{ex.response.status}, expected 200 with no items",
            )
            continue
        items, total = _page_items(ex), _page_total(ex)
        problems = []
        if items != []:
            problems.append(
                f"page {ex.meta.get('page')} past the end holds "
                f"{'no list' if items is None else len(items)} items, expected none"
            )
        if total != ex.meta.get("total"):
            problems.append(
                f"its total is {total}, but the other pages said {ex.meta.get('total')}"
            )
        yield _verdict(ex, problems)


@check(
    "pagination_page",
    "One page agrees with itself: `page` and `per_page` echo the request, the items fit `total`",
    "pagination",
)
def pagination_page(ctx: CheckContext, exchanges: Sequence[Exchange]) -> Iterator[Verdict]:
    """Judges any page on its own (a proxied or replayed list call too), not only the walks."""
    for ex in exchanges:
        op = ctx.operation(ex)
        if op is None or op.kind != "list" or ex.response.status != 200:
            continue
        items, total, data = _page_items(ex), _page_total(ex), _data(ex)
        asked = {name: _asked_int(op, ex, name) for name in ("page", "per_page")}
        page, per_page = asked["page"], asked["per_page"]
        if items is None or total is None or page is None or per_page is None:
            continue  # not a page (the schema check says so), or the request was out of bounds
        assert isinstance(data, dict)  # _page_items found a list in it
        problems = [
            f"`{name}` is {json.dumps(data[name])}, but the request asked for {value}"
            for name, value in asked.items()
            if name in data and data[name] != value
        ]
        expected = min(per_page, max(0, total - (page - 1) * per_page))
        if len(items) != expected:
            problems.append(
                f"page {page} holds {len(items)} items; with total {total} and per_page "
                f"{per_page} it should hold {expected}"
            )
        yield _verdict(ex, problems)


def _asked_int(op: Operation, ex: Exchange, name: str) -> int | None:
    """A paging parameter as the request gave it (or its spec default); None when the
    operation takes no such parameter or the value is outside what the spec allows."""
    param = next((p for p in op.params if p.name == name and p.location == "query"), None)
    if param is None:
        return None
    raw = ex.request.query.get(name)
    default = param.schema.get("default")
    if raw is None:
        return default if isinstance(default, int) else None
    if not raw.strip().isdigit():
        return None
    value = int(raw)
    low, high = param.schema.get("minimum"), param.schema.get("maximum")
    if (isinstance(low, int) and value < low) or (isinstance(high, int) and value > high):
        return None
    return value


# --- auth --------------------------------------------------------------------------------------


@check("auth_required", "No key gives 401", "auth")
def auth_required(ctx: CheckContext, exchanges: Sequence[Exchange]) -> Iterator[Verdict]:
    for ex in _role(exchanges, "no-key"):
        status = ex.response.status
        yield (
            _ok(ex)
            if status == 401
            else _fail(ex, f"a request with no key was answered {status}, expected 401")
        )


@check("auth_malformed", "A malformed key gives 401", "auth")
def auth_malformed(ctx: CheckContext, exchanges: Sequence[Exchange]) -> Iterator[Verdict]:
    for ex in _role(exchanges, "malformed-key"):
        status = ex.response.status
        kind = ex.meta.get("kind", "malformed")
        yield (
            _ok(ex)
            if status == 401
            else _fail(ex, f"a {kind} key was answered {status}, expected 401")
        )


@check("www_authenticate", "Every 401 carries WWW-Authenticate: Bearer", "auth")
def www_authenticate(ctx: CheckContext, exchanges: Sequence[Exchange]) -> Iterator[Verdict]:
    for ex in exchanges:
        if ex.response.status != 401:
            continue
        value = ex.response.header("www-authenticate")
        if value is None:
            yield _fail(ex, "the 401 has no WWW-Authenticate header")
        elif not value.strip().lower().startswith("bearer"):
            yield _fail(ex, f"WWW-Authenticate is {value!r}, expected the Bearer scheme")
        else:
            yield _ok(ex)


@check("scope_denied", "A key without the operation's scope gets 403 SCOPE_DENIED", "auth")
def scope_denied(ctx: CheckContext, exchanges: Sequence[Exchange]) -> Iterator[Verdict]:
    for ex in _role(exchanges, "scope-denied"):
        missing = ex.meta.get("missing") or "the scope"
        yield _expect_error(ex, 403, "SCOPE_DENIED", f"a key without {missing}")


@check("scope_granted", "A key with exactly the operation's scope succeeds", "auth")
def scope_granted(ctx: CheckContext, exchanges: Sequence[Exchange]) -> Iterator[Verdict]:
    for ex in _role(exchanges, "scope-granted"):
        status = ex.response.status
        scopes = ex.meta.get("scopes") or "its scope"
        if 200 <= status < 300:
            yield _ok(ex)
        else:
            code = _error_code(ex)
            yield _fail(
                ex,
                f"a key with {scopes} was answered {status}{' ' + code if code else ''}, "
                "expected success",
            )


@check("session_only", "Session-only operations refuse API keys with 403 API_KEY_FORBIDDEN", "auth")
def session_only(ctx: CheckContext, exchanges: Sequence[Exchange]) -> Iterator[Verdict]:
    for ex in _role(exchanges, "session-only"):
        yield _expect_error(ex, 403, "API_KEY_FORBIDDEN", "an API key on a session-only operation")


def _role_request(ctx: CheckContext, ex: Exchange) -> str:
    """'key 'readonly' (role Read-only): createTicket (POST /tickets)' for role-matrix messages."""
    op = ctx.operation(ex)
    what = f"{op.operation_id} ({op.method} {op.path})" if op else ex.request.path
    return f"{ex.meta.get('who', 'a key')}: {what}"


def _got(ex: Exchange) -> str:
    code = _error_code(ex)
    return f"{ex.response.status} {code}" if code else str(ex.response.status)


@check("role_forbidden", "A key whose owner's roles lack the scope gets 403 FORBIDDEN", "auth")
def role_forbidden(ctx: CheckContext, exchanges: Sequence[Exchange]) -> Iterator[Verdict]:
    for ex in _role(exchanges, "role-forbidden", "role-refused"):
        scope = ex.meta.get("scope", "its scope")
        codes = ("FORBIDDEN",) if ex.role == "role-forbidden" else ("FORBIDDEN", "SCOPE_DENIED")
        if ex.response.status == 403 and _error_code(ex) in codes:
            yield _ok(ex)
            continue
        why = (
            f"the role does not allow {scope}"
            if ex.role == "role-forbidden"
            else f"the key's effective scopes exclude {scope}"
        )
        yield _fail(
            ex,
            f"{_role_request(ctx, ex)} was answered {_got(ex)}, expected 403 "
            f"{' or '.join(codes)}: {why}",
        )


@check(
    "role_scope_denied",
    "A key whose roles allow the scope but whose own scopes exclude it gets 403 SCOPE_DENIED",
    "auth",
)
def role_scope_denied(ctx: CheckContext, exchanges: Sequence[Exchange]) -> Iterator[Verdict]:
    for ex in _role(exchanges, "role-scope-denied"):
        if ex.response.status == 403 and _error_code(ex) == "SCOPE_DENIED":
            yield _ok(ex)
            continue
        scope = ex.meta.get("scope", "its scope")
        yield _fail(
            ex,
            f"{_role_request(ctx, ex)} was answered {_got(ex)}, expected 403 SCOPE_DENIED: "
            f"the role allows {scope} but the key's own scopes exclude it",
        )


@check(
    "role_allowed", "A key whose effective scopes include the scope gets past authorization", "auth"
)
def role_allowed(ctx: CheckContext, exchanges: Sequence[Exchange]) -> Iterator[Verdict]:
    """A read must succeed; a write is sent in a form the API refuses after authorizing it (a
    placeholder id, a body that is not an object), so any answer but 401 or 403 passes."""
    for ex in _role(exchanges, "role-allowed"):
        status = ex.response.status
        write = bool(ex.meta.get("write"))
        ok = status not in (401, 403) if write else 200 <= status < 300
        if ok:
            yield _ok(ex)
            continue
        scope = ex.meta.get("scope") or "no scope"
        expected = "an answer past authorization (not 401 or 403)" if write else "success"
        yield _fail(
            ex,
            f"{_role_request(ctx, ex)} was answered {_got(ex)}, expected {expected}: "
            f"the key's effective scopes include {scope}",
        )


# --- rate limits -------------------------------------------------------------------------------

RATE_HEADERS = ("x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-reset")


@check(
    "rate_limit_headers", "X-RateLimit-Limit, -Remaining and -Reset on every response", "rate-limit"
)
def rate_limit_headers(ctx: CheckContext, exchanges: Sequence[Exchange]) -> Iterator[Verdict]:
    for ex in exchanges:
        if ctx.operation(ex) is None or ex.response.status == 401:
            continue  # outside the spec, or no valid key: there is no key's bucket to describe
        problems = []
        values = {}
        for name in RATE_HEADERS:
            raw = ex.response.header(name)
            if raw is None:
                problems.append(f"{name} is missing")
            elif not raw.strip().isdigit():
                problems.append(f"{name} is {raw!r}, expected a non-negative integer")
            else:
                values[name] = int(raw)
        limit, remaining = values.get(RATE_HEADERS[0]), values.get(RATE_HEADERS[1])
        if limit is not None and remaining is not None and remaining > limit:
            problems.append(f"Remaining ({remaining}) is above Limit ({limit})")
        yield _verdict(ex, problems)


@check("rate_limit_remaining", "X-RateLimit-Remaining goes down with each request", "rate-limit")
def rate_limit_remaining(ctx: CheckContext, exchanges: Sequence[Exchange]) -> Iterator[Verdict]:
    burst = [ex for ex in _role(exchanges, "burst") if ex.response.status != 429]
    for before, after in itertools.pairwise(burst):
        r0, r1 = _int_header(before, RATE_HEADERS[1]), _int_header(after, RATE_HEADERS[1])
        reset0, reset1 = _int_header(before, RATE_HEADERS[2]), _int_header(after, RATE_HEADERS[2])
        if r0 is None or r1 is None:
            continue  # rate_limit_headers reports the missing header
        if reset0 is not None and reset1 is not None and reset1 > reset0 and r1 >= r0:
            continue  # a new window began between the two requests
        if r1 < r0:
            yield _ok(after)
        else:
            yield _fail(
                after,
                f"X-RateLimit-Remaining went from {r0} to {r1} between two "
                "requests with the same key",
            )


@check("retry_after", "Every 429 carries Retry-After in seconds", "rate-limit")
def retry_after(ctx: CheckContext, exchanges: Sequence[Exchange]) -> Iterator[Verdict]:
    for ex in exchanges:
        if ex.response.status != 429:
            continue
        value = ex.response.header("retry-after")
        if value is None:
            yield _fail(ex, "the 429 has no Retry-After header")
        elif not value.strip().isdigit():
            yield _fail(ex, f"Retry-After is {value!r}, expected whole seconds")
        else:
            yield _ok(ex)


@check(
    "rate_limit_retry",
    "Past the limit a 429 comes, and a retry after Retry-After passes",
    "rate-limit",
)
def rate_limit_retry(ctx: CheckContext, exchanges: Sequence[Exchange]) -> Iterator[Verdict]:
    for ex in _role(exchanges, "rate-exceeded"):
        if ex.response.status == 429:
            yield _ok(ex)
        else:
            yield _fail(
                ex,
                f"request {ex.meta.get('n')} with a limit of {ex.meta.get('limit')} per "
                f"window was answered {ex.response.status}, expected 429",
            )
    for ex in _role(exchanges, "rate-retry"):
        waited = ex.meta.get("waited")
        if 200 <= ex.response.status < 300:
            yield _ok(ex)
        else:
            yield _fail(
                ex,
                f"the retry after waiting {waited} s (as Retry-After said) was answered "
                f"{ex.response.status}, expected success",
            )


# --- stability ---------------------------------------------------------------------------------


@check(
    "deprecation_headers",
    "Deprecated operations send Deprecation and Sunset; others do not",
    "stability",
)
def deprecation_headers(ctx: CheckContext, exchanges: Sequence[Exchange]) -> Iterator[Verdict]:
    for ex in exchanges:
        op = ctx.operation(ex)
        if op is None or not 200 <= ex.response.status < 300:
            continue
        deprecation = ex.response.header("deprecation")
        sunset = ex.response.header("sunset")
        if not op.deprecated:
            if deprecation is not None:
                yield _fail(
                    ex,
                    f"{op.operation_id} is not deprecated in the spec but sends "
                    f"Deprecation: {deprecation}",
                )
            continue
        problems = []
        if deprecation is None:
            problems.append(
                f"{op.operation_id} is deprecated (since {op.deprecated_at}) but sends "
                "no Deprecation header"
            )
        elif op.deprecated_at and _header_date(deprecation) not in (
            None,
            _iso_date(op.deprecated_at),
        ):
            problems.append(f"Deprecation says {deprecation!r}, the spec says {op.deprecated_at}")
        if sunset is None:
            problems.append(f"{op.operation_id} is deprecated but sends no Sunset header")
        elif op.sunset and _header_date(sunset) not in (None, _iso_date(op.sunset)):
            problems.append(f"Sunset says {sunset!r}, the spec says {op.sunset}")
        yield _verdict(ex, problems)


def _iso_date(value: Any) -> date | None:
    if isinstance(value, date):
        return value
    try:
        return date.fromisoformat(str(value)[:10])
    except ValueError:
        return None


def _header_date(value: str) -> date | None:
    """The date an RFC 9745 (`@<epoch>`) or RFC 8594 (HTTP-date) header names, if any."""
    text = value.strip()
    if re.fullmatch(r"@-?\d+", text):
        return datetime.fromtimestamp(int(text[1:]), UTC).date()
    try:
        return email.utils.parsedate_to_datetime(text).date()
    except (TypeError, ValueError, IndexError):
        return None


@check("stability", "Warns when a contract exercises a beta or internal operation", "stability")
def stability(ctx: CheckContext, exchanges: Sequence[Exchange]) -> Iterator[Verdict]:
    warned: set[str] = set()
    for ex in exchanges:
        op = ctx.operation(ex)
        if op is None or op.operation_id in warned:
            continue
        warned.add(op.operation_id)
        if op.stability == "stable":
            yield _ok(ex)
        else:
            promise = (
                "may change without a sunset window"
                if op.stability == "beta"
                else "may change or vanish in any release"
            )
            yield Verdict(ex, WARN, f"{op.operation_id} is {op.stability}: {promise}")


# --- bodies: generated writes, validation, reading back ----------------------------------------


@check("valid_body_accepted", "A body valid against the request schema is accepted", "bodies")
def valid_body_accepted(ctx: CheckContext, exchanges: Sequence[Exchange]) -> Iterator[Verdict]:
    for ex in _role(exchanges, "valid-body"):
        op = ctx.operation(ex)
        expected = op.success_status if op else 200
        if ex.response.status == expected:
            yield _ok(ex)
            continue
        body = ex.response.json()
        detail = ""
        if isinstance(body, dict) and isinstance(body.get("error"), dict):
            err = body["error"]
            detail = f": {err.get('code')} {err.get('message')} {err.get('details') or ''}".rstrip()
        yield _fail(
            ex,
            f"a body valid against the request schema was answered "
            f"{ex.response.status}, expected {expected}{detail}",
        )


@check("validation_error", "An invalid body gets 400 VALIDATION_ERROR", "bodies")
def validation_error(ctx: CheckContext, exchanges: Sequence[Exchange]) -> Iterator[Verdict]:
    for ex in _role(exchanges, "invalid-body"):
        what = ex.meta.get("mutation", "an invalid body")
        yield _expect_error(ex, 400, "VALIDATION_ERROR", what)


@check("readback", "What was written reads back as sent", "bodies")
def readback(ctx: CheckContext, exchanges: Sequence[Exchange]) -> Iterator[Verdict]:
    for ex in _role(exchanges, "readback"):
        sent = ex.meta.get("sent") or {}
        record = _data(ex)
        find_id = ex.meta.get("find_id")
        if find_id is not None and isinstance(record, dict):
            record = next((i for i in record.get("items") or [] if _item_id(i) == find_id), None)
        if not isinstance(record, dict):
            yield _fail(ex, f"the record written could not be read back ({ex.response.status})")
            continue
        diffs = [
            f"{name}: sent {json.dumps(value)}, read {json.dumps(record.get(name, '<missing>'))}"
            for name, value in sent.items()
            if name not in record or not same_value(value, record[name])
        ]
        if diffs:
            yield _fail(ex, "read back differently from what was sent: " + "; ".join(diffs[:5]))
        else:
            yield _ok(ex)


def same_value(sent: Any, got: Any) -> bool:
    """Equal as JSON values, allowing spellings a server may normalise (1 and 1.0, time zones)."""
    if isinstance(sent, bool) or isinstance(got, bool):
        return sent is got
    if isinstance(sent, int | float) and isinstance(got, int | float):
        return abs(float(sent) - float(got)) <= 1e-9 * max(1.0, abs(float(sent)))
    if isinstance(sent, str) and isinstance(got, str):
        if sent == got:
            return True
        a, b = _instant(sent), _instant(got)
        return a is not None and a == b
    if isinstance(sent, list) and isinstance(got, list):
        return len(sent) == len(got) and all(
            same_value(a, b) for a, b in zip(sent, got, strict=True)
        )
    if isinstance(sent, dict) and isinstance(got, dict):
        return all(k in got and same_value(v, got[k]) for k, v in sent.items())
    return sent == got


def _instant(text: str) -> datetime | None:
    if len(text) < 19 or text[10] not in "Tt ":
        return None
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        return None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


@check("unknown_id", "An id that does not exist gives 404 NOT_FOUND", "resources")
def unknown_id(ctx: CheckContext, exchanges: Sequence[Exchange]) -> Iterator[Verdict]:
    for ex in _role(exchanges, "unknown-id"):
        yield _expect_error(ex, 404, "NOT_FOUND", "an unknown id")


@check("deleted_gone", "A deleted record reads as 404 afterwards", "resources")
def deleted_gone(ctx: CheckContext, exchanges: Sequence[Exchange]) -> Iterator[Verdict]:
    for ex in _role(exchanges, "deleted-gone"):
        if ex.response.status == 404:
            yield _ok(ex)
        else:
            yield _fail(
                ex,
                f"reading {ex.meta.get('id')} after deleting it was answered "
                f"{ex.response.status}, expected 404",
            )


@check("deleted_retired", "A record a delete retires reads back in its retired state", "resources")
def deleted_retired(ctx: CheckContext, exchanges: Sequence[Exchange]) -> Iterator[Verdict]:
    for ex in _role(exchanges, "deleted-retired"):
        wanted = ex.meta.get("fields") or {}
        body = ex.response.json() if ex.response.status == 200 else None
        data = body.get("data") if isinstance(body, dict) else None
        if not isinstance(data, dict):
            yield _fail(
                ex,
                f"reading {ex.meta.get('id')} after retiring it was answered "
                f"{ex.response.status}, expected 200 with the record",
            )
            continue
        wrong = {k: data.get(k) for k, v in wanted.items() if data.get(k) != v}
        yield _ok(ex) if not wrong else _fail(ex, f"after the delete, {wrong} instead of {wanted}")


# --- scenarios ---------------------------------------------------------------------------------


@check("scenario_expectation", "Each scenario step meets its stated expectations", "scenario")
def scenario_expectation(ctx: CheckContext, exchanges: Sequence[Exchange]) -> Iterator[Verdict]:
    for ex in _role(exchanges, "scenario-step"):
        expect = ex.meta.get("expect")
        if not expect:
            continue
        problems = list(unmet(expect, ex))
        step = ex.meta.get("step", "a step")
        yield _fail(ex, f"step {step!r}: " + "; ".join(problems)) if problems else _ok(ex)


@check(
    "webhook_payload",
    "A webhook a receiver got validates against the spec's `webhooks` schema and is signed",
    "bodies",
)
def webhook_payload(ctx: CheckContext, exchanges: Sequence[Exchange]) -> Iterator[Verdict]:
    for ex in exchanges:
        if ex.role != "webhook":
            continue
        event = ex.request.headers.get(EVENT_HEADER)
        problems = list(payload_problems(event, ex.request.json(), str(ctx.spec.path)))
        if not SIGNED.match(ex.request.headers.get(SIGNATURE_HEADER, "")):
            problems.append(f"{SIGNATURE_HEADER}: missing or not t=<seconds>,v1=<hex sha256>")
        elif ex.meta.get("verified") is False:
            problems.append(f"{SIGNATURE_HEADER}: does not verify with the rule's signing secret")
        yield _verdict(ex, problems)

"""Drift: what recorded traffic shows that the spec does not say, per operation used.

`opsmerge-sandbox drift FILE` reads a HAR recording (the proxy's, `serve --record`'s, a
browser's) or a journal listing (`GET /_sandbox/requests`: no bodies or headers, so only paths,
parameters and statuses), matches every exchange to its operation, and counts each kind of
difference with one example:

| kind | what the traffic shows |
|---|---|
| `path` | a method and path no operation serves, answered as if it existed (not 404/405/501) |
| `parameter` | a query parameter the operation does not declare, in a request it accepted |
| `status` | a status the operation does not document |
| `header` | a response header the operation's response does not declare |
| `field` | a body field the schema does not have (a response, or a request it accepted) |
| `enum_value` | a value outside the field's enum |
| `schema_mismatch` | a value of another type, or a required field missing |

Headers every HTTP answer may carry (framing, caching, CORS) are not findings; the API's own
convention headers count as declared where the spec declares them in `components.headers`.
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit
from xml.sax.saxutils import quoteattr

from opsmerge_contracts.checks import response_key
from opsmerge_contracts.routes import Router
from opsmerge_sandbox.har import HarError, HarExchange, read_har
from opsmerge_sandbox.jsontypes import JSON_TYPES, json_types
from opsmerge_sandbox.spec import Spec

KINDS = ("path", "parameter", "status", "header", "field", "enum_value", "schema_mismatch")
OUTSIDE = "(outside the spec)"
# headers any HTTP answer may carry, whatever the API documents
_TRANSPORT_HEADERS = frozenset(
    {"content-type", "content-length", "content-encoding", "transfer-encoding", "date",
     "server", "connection", "keep-alive", "vary", "etag", "last-modified", "cache-control",
     "expires", "pragma", "age", "via", "alt-svc", "strict-transport-security", "allow",
     "x-request-id", "x-correlation-id", "set-cookie", "warning", "preference-applied"}
)  # fmt: skip
_SKIPPED_HEADER_PREFIXES = ("access-control-", "x-sandbox-")  # CORS; the proxy's own
_MAX_ITEMS = 200
_NUMERIC_ID = re.compile(r"\d+|[0-9a-f-]{32,36}")
_ABSENT = frozenset({404, 405, 501})  # how an API says a path or method does not exist


class DriftInputError(ValueError):
    """The file is neither a HAR recording nor a journal listing."""


@dataclass(slots=True)
class Finding:
    operation: str
    kind: str
    subject: str  # the parameter, status, header, `response /data/items/*/name`, ...
    count: int
    example: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {
            "operation": self.operation,
            "kind": self.kind,
            "subject": self.subject,
            "count": self.count,
            "example": self.example,
        }


@dataclass(slots=True)
class DriftReport:
    source: str
    spec: str
    exchanges: int = 0
    operations: dict[str, int] = field(default_factory=dict)  # operation used -> exchanges
    statuses: dict[str, set[int]] = field(default_factory=dict)  # operation -> statuses seen
    findings: dict[tuple[str, str, str], Finding] = field(default_factory=dict)
    # breaking changes between the spec and --against, for the operations used
    changes: list[dict[str, Any]] = field(default_factory=list)
    against: str | None = None

    def add(self, op: str, kind: str, subject: str, example: dict[str, Any]) -> None:
        found = self.findings.get((op, kind, subject))
        if found is None:
            self.findings[(op, kind, subject)] = Finding(op, kind, subject, 1, example)
        else:
            found.count += 1

    @property
    def breaking(self) -> list[dict[str, Any]]:
        return [c for c in self.changes if c["level"] == "breaking"]

    @property
    def failed(self) -> bool:
        return bool(self.findings) or bool(self.breaking)

    def sorted_findings(self) -> list[Finding]:
        return sorted(
            self.findings.values(), key=lambda f: (f.operation, KINDS.index(f.kind), f.subject)
        )

    def to_dict(self) -> dict[str, Any]:
        by_kind = {k: 0 for k in KINDS}
        for f in self.findings.values():
            by_kind[f.kind] += 1
        return {
            "meta": {"source": self.source, "spec": self.spec, "against": self.against},
            "summary": {
                "exchanges": self.exchanges,
                "operations_used": len([o for o in self.operations if o != OUTSIDE]),
                "findings": len(self.findings),
                "by_kind": by_kind,
                "breaking_changes": len(self.breaking),
            },
            "operations": dict(sorted(self.operations.items())),
            "findings": [f.to_dict() for f in self.sorted_findings()],
            "changes": self.changes,
        }

    def write(self, path: Path) -> tuple[Path, Path]:
        """PATH.json and PATH.html, as the contract run writes its report."""
        path = Path(path)
        base = path.with_suffix("") if path.suffix in (".json", ".html", ".htm") else path
        json_path, html_path = base.with_suffix(".json"), base.with_suffix(".html")
        json_path.parent.mkdir(parents=True, exist_ok=True)
        data = self.to_dict()
        json_path.write_text(json.dumps(data, indent=2, ensure_ascii=False), encoding="utf-8")
        html_path.write_text(render_html(data), encoding="utf-8")
        return json_path, html_path

    def write_junit(self, path: Path) -> Path:
        """One test case per operation used (and one for the spec comparison), failed when the
        traffic drifted: what CI tools gate on and show."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        by_op: dict[str, list[Finding]] = {op: [] for op in self.operations}
        for f in self.sorted_findings():
            by_op.setdefault(f.operation, []).append(f)
        cases = []
        for op, found in sorted(by_op.items()):
            body = ""
            if found:
                text = "\n".join(
                    f"{f.kind} {f.subject}: {f.count}x, e.g. {json.dumps(f.example)}"
                    for f in found
                )
                body = (
                    f"<failure message={quoteattr(f'{len(found)} drift finding(s)')}>"
                    f"{html.escape(text)}</failure>"
                )
            name = quoteattr(op)
            cases.append(f'<testcase classname="opsmerge.drift" name={name}>{body}</testcase>')
        if self.against is not None:
            body = ""
            if self.breaking:
                text = "\n".join(f"{c['operation']}: {c['change']}" for c in self.breaking)
                body = (
                    f"<failure message={quoteattr(f'{len(self.breaking)} breaking change(s)')}>"
                    f"{html.escape(text)}</failure>"
                )
            cases.append(
                f'<testcase classname="opsmerge.drift" name="breaking changes">{body}</testcase>'
            )
        failures = sum(1 for c in cases if "<failure" in c)
        path.write_text(
            '<?xml version="1.0" encoding="utf-8"?>\n'
            f'<testsuites><testsuite name="opsmerge-drift" tests="{len(cases)}" '
            f'failures="{failures}" errors="0">{"".join(cases)}</testsuite></testsuites>\n',
            encoding="utf-8",
        )
        return path

    def render(self, width: int = 100) -> str:
        """The terminal summary (rich): findings per operation, then breaking changes."""
        import io

        from rich import box
        from rich.console import Console
        from rich.table import Table

        console = Console(width=width, record=True, file=io.StringIO(), color_system=None)
        used = len([o for o in self.operations if o != OUTSIDE])
        console.print(
            f"drift: {self.exchanges} exchange(s), {used} operation(s) used, "
            f"{len(self.findings)} finding(s)"
            + (f", {len(self.breaking)} breaking change(s)" if self.against else "")
        )
        if self.findings:
            title = "what the traffic shows that the spec does not say"
            table = Table(box=box.SIMPLE_HEAD, title=title, title_justify="left")
            for name, ratio in (("operation", 2), ("kind", 1), ("subject", 3), ("n", 0)):
                table.add_column(name, overflow="fold", ratio=ratio or None,
                                 justify="right" if name == "n" else "left")  # fmt: skip
            table.add_column("example", overflow="fold", ratio=3)
            for f in self.sorted_findings():
                table.add_row(f.operation, f.kind, f.subject, str(f.count), _example(f.example))
            console.print(table)
        if self.against is not None:
            if not self.changes:
                console.print(f"no change in {self.against} touches the operations used")
            else:
                table = Table(box=box.SIMPLE_HEAD, title=f"changes in {self.against}",
                              title_justify="left")  # fmt: skip
                table.add_column("operation", overflow="fold", ratio=1)
                table.add_column("level")
                table.add_column("change", overflow="fold", ratio=3)
                for c in self.changes:
                    table.add_row(c["operation"], c["level"], c["change"])
                console.print(table)
        return console.export_text()


def _example(example: dict[str, Any]) -> str:
    where = f"entry {example['entry']}: " if "entry" in example else ""
    value = f" = {example['value']}" if "value" in example else ""
    detail = f" ({example['detail']})" if example.get("detail") else ""
    return f"{where}{example.get('request', '')}{value}{detail}"


# --- reading the traffic ------------------------------------------------------------------------


def load_traffic(path: Path) -> list[HarExchange]:
    """A HAR file's entries, or a journal listing's entries as exchanges without bodies."""
    try:
        return read_har(path)
    except HarError as har_problem:
        try:
            doc = json.loads(Path(path).read_bytes())
        except (OSError, ValueError):
            raise DriftInputError(str(har_problem)) from None
        items = doc.get("data", {}).get("items") if isinstance(doc, dict) else doc
        if not isinstance(items, list) or not all(
            isinstance(i, dict) and {"method", "path", "status"} <= i.keys() for i in items
        ):
            raise DriftInputError(
                f"{path}: neither a HAR recording nor a journal listing "
                "(GET /_sandbox/requests)"
            ) from None
        return [
            HarExchange(
                index=n,
                method=str(i["method"]).upper(),
                url=str(i["path"]) + (f"?{i['query']}" if i.get("query") else ""),
                request_headers={},
                request_body=b"",
                status=int(i["status"]),
                response_headers={},
                response_body=b"",
                extra={"_journal": True},
            )
            for n, i in enumerate(items)
        ]


def analyse(traffic: list[HarExchange], spec: Spec, source: str) -> DriftReport:
    report = DriftReport(source=source, spec=str(spec.path))
    router = Router(spec)
    declared = _declared_headers(spec)
    conventions = {h.lower() for h in (spec.resolved.get("components") or {}).get("headers", {})}
    prefixes = sorted({c.id_prefix for c in spec.collections.values()}, key=len, reverse=True)
    for item in traffic:
        path = urlsplit(item.url).path
        if not path.startswith(spec.base_path):
            continue  # the docs, the control API: not the API the spec describes
        report.exchanges += 1
        request = f"{item.method} {item.url if '://' not in item.url else _short(item.url)}"
        example: dict[str, Any] = {"entry": item.index + 1, "request": request}
        op = router.match(item.method, path)
        accepted = 200 <= item.status < 300  # a refused request is one the API agrees is wrong
        if op is None:
            report.operations[OUTSIDE] = report.operations.get(OUTSIDE, 0) + 1
            if item.status in _ABSENT:
                continue  # the API says itself that nothing is there
            shape = _path_shape(path[len(spec.base_path) :] or "/", prefixes)
            subject = f"{item.method} {shape}"
            report.add(OUTSIDE, "path", subject, {**example, "status": item.status})
            continue
        name = op.operation_id
        report.operations[name] = report.operations.get(name, 0) + 1
        report.statuses.setdefault(name, set()).add(item.status)
        known = {p.name for p in op.params if p.location == "query"}
        for param, value in parse_qsl(urlsplit(item.url).query, keep_blank_values=True):
            if accepted and param not in known:
                report.add(name, "parameter", param, {**example, "value": value[:200]})
        if str(item.status) not in op.responses and response_key(op, item.status) is None:
            documented = ", ".join(sorted(op.responses))
            report.add(name, "status", str(item.status),
                       {**example, "detail": f"documented: {documented}"})  # fmt: skip
        if item.extra.get("_journal"):
            continue
        allowed = declared.get((op.operation_id, response_key(op, item.status) or ""), set())
        for header in item.response_headers:
            low = header.lower()
            if (
                low in _TRANSPORT_HEADERS
                or low.startswith(_SKIPPED_HEADER_PREFIXES)
                or low in allowed
                or (low in conventions and low in declared.get((op.operation_id, "*"), set()))
            ):
                continue
            report.add(name, "header", low,
                       {**example, "value": item.response_headers[header][:200]})  # fmt: skip
        if accepted and op.body_schema and item.request_body:
            body = _json(item.request_body)
            if body is not _NOT_JSON:
                for kind, where, detail, value in walk(op.body_schema, body, ""):
                    report.add(name, kind, f"request {where or '/'}",
                               {**example, "value": value, "detail": detail})  # fmt: skip
        key = response_key(op, item.status)
        schema = op.responses.get(key) if key else None
        if schema and item.response_body and item.method != "HEAD":
            body = _json(item.response_body)
            if body is not _NOT_JSON:
                for kind, where, detail, value in walk(schema, body, ""):
                    report.add(name, kind, f"response {item.status} {where or '/'}",
                               {**example, "value": value, "detail": detail})  # fmt: skip
    return report


_NOT_JSON = object()


def _json(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return _NOT_JSON


def _short(url: str) -> str:
    parts = urlsplit(url)
    return parts.path + (f"?{parts.query}" if parts.query else "")


def _path_shape(path: str, prefixes: list[str]) -> str:
    """A path with the segments that look like record ids written `{id}`, so the calls of one
    undocumented endpoint count together."""
    out = []
    for seg in path.split("/"):
        if any(seg.startswith(p + "_") for p in prefixes) or _NUMERIC_ID.fullmatch(seg):
            out.append("{id}")
        else:
            out.append(seg)
    return "/".join(out)


def _declared_headers(spec: Spec) -> dict[tuple[str, str], set[str]]:
    """(operationId, response key) -> the header names that response declares (lower case);
    (operationId, "*") -> those any of its responses declares."""
    out: dict[tuple[str, str], set[str]] = {}
    for op in spec.operations:
        responses = (
            ((spec.resolved.get("paths") or {}).get(op.path) or {}).get(op.method.lower()) or {}
        ).get("responses") or {}
        every: set[str] = set()
        for key, response in responses.items():
            names = {str(h).lower() for h in ((response or {}).get("headers") or {})}
            out[(op.operation_id, str(key))] = names
            every |= names
        out[(op.operation_id, "*")] = every
    return out


def walk(schema: Any, value: Any, pointer: str) -> Iterator[tuple[str, str, str, Any]]:
    """(kind, pointer, detail, value) for each place `value` says more than `schema` or other;
    array positions are written `*`, so every item of a list counts under one pointer."""
    if not isinstance(schema, dict) or not schema:
        return
    branches = schema.get("anyOf") or schema.get("oneOf")
    if isinstance(branches, list):
        fitting = [b for b in branches if isinstance(b, dict) and _fits_type(b, value)]
        if not fitting:
            detail = f"{_type_name(value)} fits none of its forms"
            yield "schema_mismatch", pointer, detail, _shown(value)
            return
        yield from walk(fitting[0], value, pointer)
        return
    if not _fits_type(schema, value):
        wanted = schema.get("type")
        wanted_text = " or ".join(wanted) if isinstance(wanted, list) else str(wanted)
        detail = f"{_type_name(value)}, expected {wanted_text}"
        yield "schema_mismatch", pointer, detail, _shown(value)
        return
    enum = schema.get("enum")
    if isinstance(enum, list) and value not in enum:
        yield "enum_value", pointer, f"not one of {len(enum)} documented values", _shown(value)
        return
    if isinstance(value, dict):
        props = schema.get("properties")
        extra = schema.get("additionalProperties")
        for name, inner in value.items():
            here = f"{pointer}/{name}"
            if isinstance(props, dict) and name in props:
                yield from walk(props[name], inner, here)
            elif isinstance(extra, dict):
                yield from walk(extra, inner, f"{pointer}/*")
            elif isinstance(props, dict) or extra is False:
                yield "field", here, "not in the schema", _shown(inner)
        for name in schema.get("required") or ():
            if name not in value:
                yield "schema_mismatch", f"{pointer}/{name}", "required, but missing", None
    elif isinstance(value, list):
        items = schema.get("items")
        for inner in value[:_MAX_ITEMS]:
            yield from walk(items, inner, f"{pointer}/*")


def _is(value: Any, name: str) -> bool:
    """Whether a value is of a JSON Schema type (a boolean is no number here)."""
    kinds = JSON_TYPES.get(name)
    if kinds is None:
        return True  # a type this reader does not know restricts nothing
    if isinstance(value, bool) and name in ("integer", "number"):
        return False
    return isinstance(value, kinds)


def _fits_type(schema: dict[str, Any], value: Any) -> bool:
    names = json_types(schema)
    return not names or any(_is(value, n) for n in names)


def _type_name(value: Any) -> str:
    for name in ("null", "boolean", "integer", "number", "string", "array", "object"):
        if _is(value, name):
            return name
    return type(value).__name__


def _shown(value: Any) -> Any:
    text = json.dumps(value, ensure_ascii=False)
    return value if len(text) <= 120 else text[:117] + "..."


# --- the HTML page --------------------------------------------------------------------------------

_CSS = """body{font:14px/1.45 system-ui,sans-serif;margin:2rem;color:#1d2330;background:#fafbfc}
table{border-collapse:collapse;background:#fff;margin:.5rem 0}th,td{border:1px solid #d7dce3;
padding:.25rem .5rem;text-align:left;vertical-align:top}th{background:#eef1f5}
td{overflow-wrap:anywhere}.breaking{color:#b3261e;font-weight:600}.empty{color:#5f6b7a}
code{font-family:ui-monospace,monospace;font-size:.85rem}"""


def render_html(data: dict[str, Any]) -> str:
    e = html.escape
    s = data["summary"]
    rows = "".join(
        f"<tr><td><code>{e(f['operation'])}</code></td><td>{e(f['kind'])}</td>"
        f"<td><code>{e(f['subject'])}</code></td><td>{f['count']}</td>"
        f"<td>{e(_example(f['example']))}</td></tr>"
        for f in data["findings"]
    )
    findings = (
        "<table><tr><th>operation</th><th>kind</th><th>subject</th><th>count</th>"
        f"<th>example</th></tr>{rows}</table>"
        if rows
        else '<p class="empty">The traffic shows nothing the spec does not say.</p>'
    )
    used = "".join(
        f"<tr><td><code>{e(op)}</code></td><td>{n}</td></tr>"
        for op, n in data["operations"].items()
    )
    changes = ""
    if data["meta"].get("against"):
        items = "".join(
            f"<tr><td><code>{e(c['operation'])}</code></td><td class={e(c['level'])}>"
            f"{e(c['level'])}</td><td>{e(c['change'])}</td></tr>"
            for c in data["changes"]
        )
        changes = f"<h2>Changes in {e(data['meta']['against'])}</h2>" + (
            f"<table><tr><th>operation</th><th>level</th><th>change</th></tr>{items}</table>"
            if items
            else '<p class="empty">No change touches the operations used.</p>'
        )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>OpsMerge drift report</title><style>{_CSS}</style></head><body>
<h1>OpsMerge drift report</h1>
<p>{s['exchanges']} exchange(s) from <code>{e(data['meta']['source'])}</code> against
<code>{e(data['meta']['spec'])}</code>: {s['operations_used']} operation(s) used,
{s['findings']} finding(s).</p>
<h2>What the traffic shows that the spec does not say</h2>{findings}
{changes}
<h2>Operations used</h2><table><tr><th>operation</th><th>exchanges</th></tr>{used}</table>
</body></html>
"""

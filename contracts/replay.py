"""A recording replayed as a contract: `opsmerge-sandbox contracts --replay FILE.har`.

The recording's requests are sent again in order, to whatever target the run has. Data differs
between targets, so nothing is compared byte for byte: a recorded success expects any success the
spec documents for the operation, a recorded refusal the same status, and every check of the
harness judges every answer. Values the recording learnt from a response (ids under `id` or
`*_id`) are captured from the same place in the new response and put where the recording used
them later: in paths, query values and JSON bodies. A value first seen in a request is the
client's own (a seeded id it knew) and is sent as it was.

What the replay creates is deleted when it ends, newest first (or listed as a leftover). Under
the production profile only GET and HEAD are sent: the other entries are skipped and reported,
and so are the entries that needed a value only a skipped entry would have given.
"""

from __future__ import annotations

import json
import re
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote, unquote

from opsmerge_contracts.contract_plan import SAFE_METHODS
from opsmerge_contracts.expect import is_missing, resolve_pointer
from opsmerge_contracts.routes import Router
from opsmerge_contracts.scenarios import substitute
from opsmerge_contracts.session import PRIMARY, Contract
from opsmerge_sandbox.har import HarExchange, read_har
from opsmerge_sandbox.spec import Operation, Spec

_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
# request headers a replay sends as recorded; the rest (keys, cookies, workspace, Host) are the
# run's own or the connection's
_KEPT_HEADERS = ("content-type", "accept", "prefer")
_MAX_ITEMS = 100  # list items searched for ids in one response
_MAX_DEPTH = 4


class ReplayWarning(UserWarning):
    """Entries of a recording that the replay did not send (the production profile, say)."""


@dataclass(frozen=True, slots=True)
class ReplayStep:
    index: int  # the entry's position in the recording
    method: str
    path: str  # relative to the API base, `${var}` where a captured value goes
    query: tuple[tuple[str, str], ...]
    json_body: Any = None
    has_json: bool = False
    text_body: str | None = None
    headers: tuple[tuple[str, str], ...] = ()
    keyed: bool = True  # the recorded request carried a key: the run's key is sent
    recorded_status: int = 0
    expect_status: tuple[int, ...] = ()
    captures: tuple[tuple[str, str], ...] = ()  # (variable, JSON pointer)
    needs: frozenset[str] = frozenset()
    operation: Operation | None = None
    creates: str | None = None  # the collection a created record (captured as /data/id) is in

    @property
    def name(self) -> str:
        return f"entry {self.index + 1}: {self.method} {self.path}"


@dataclass(slots=True)
class Replay:
    source: str
    steps: list[ReplayStep] = field(default_factory=list)
    outside: list[str] = field(default_factory=list)  # entries not under the API's base path


def plan(entries: list[HarExchange], spec: Spec, source: str) -> Replay:
    """The recording as steps: placeholders where captured values go, captures, expectations."""
    router = Router(spec)
    replay = Replay(source)
    known: dict[str, str] = {}  # a value learnt from a response -> its variable
    literal: set[str] = set()  # values the client sent before any response showed them
    for item in entries:
        if not item.path.startswith(spec.base_path):
            replay.outside.append(f"entry {item.index + 1}: {item.method} {item.path}")
            continue
        rel = item.path[len(spec.base_path) :] or "/"
        needs: set[str] = set()

        def placeholder(value: str, needs: set[str] = needs) -> str | None:
            var = known.get(value)
            if var is None:
                literal.add(value)
                return None
            needs.add(var)
            return "${" + var + "}"

        segments = [placeholder(unquote(s)) or s for s in rel.split("/")]
        query = tuple(
            (k, placeholder(v) or v)
            for k, v in parse_qsl(item.query, keep_blank_values=True)
        )
        ctype = item.request_headers.get("content-type", "")
        json_body: Any = None
        has_json, text_body = False, None
        if item.request_body:
            try:
                json_body, has_json = _swap(json.loads(item.request_body), placeholder), True
            except ValueError:
                text_body = item.request_body.decode("utf-8", "replace")
        op = router.match(item.method, item.path)
        captures: list[tuple[str, str]] = []
        body = _json(item.response_body)
        for pointer, value in _ids(body):
            if value in known or value in literal:
                continue
            var = f"{pointer.rsplit('/', 1)[-1]}_{item.index + 1}"
            known[value] = var
            captures.append((var, pointer))
        creates = None
        if (
            op is not None
            and op.kind == "create"
            and op.hints.collection
            and 200 <= item.status < 300
            and any(p == "/data/id" for _, p in captures)
        ):
            creates = op.hints.collection
        replay.steps.append(
            ReplayStep(
                index=item.index,
                method=item.method,
                path="/".join(segments),
                query=query,
                json_body=json_body,
                has_json=has_json,
                text_body=text_body,
                headers=tuple(
                    (name, item.request_headers[name])
                    for name in _KEPT_HEADERS
                    if name in item.request_headers and (name != "content-type" or ctype)
                ),
                keyed="authorization" in item.request_headers,
                recorded_status=item.status,
                expect_status=_expected(op, item.status),
                captures=tuple(captures),
                needs=frozenset(needs),
                operation=op,
                creates=creates,
            )
        )
    return replay


def load(path: Path, spec: Spec) -> Replay:
    return plan(read_har(path), spec, str(path))


def _json(body: bytes) -> Any:
    try:
        return json.loads(body) if body else None
    except ValueError:
        return None


def _swap(value: Any, placeholder: Any) -> Any:
    """A JSON body with every string that is a learnt value replaced by its placeholder."""
    if isinstance(value, str):
        return placeholder(value) or value
    if isinstance(value, list):
        return [_swap(v, placeholder) for v in value]
    if isinstance(value, dict):
        return {k: _swap(v, placeholder) for k, v in value.items()}
    return value


def _ids(body: Any) -> Iterator[tuple[str, str]]:
    """(pointer, value) of the id-like strings of a response body, in document order."""

    def walk(node: Any, pointer: str, depth: int) -> Iterator[tuple[str, str]]:
        if depth > _MAX_DEPTH:
            return
        if isinstance(node, dict):
            for key, value in node.items():
                here = f"{pointer}/{key.replace('~', '~0').replace('/', '~1')}"
                if (key == "id" or key.endswith("_id")) and isinstance(value, str) and value:
                    yield here, value
                elif isinstance(value, dict | list):
                    yield from walk(value, here, depth + 1)
        elif isinstance(node, list):
            for i, value in enumerate(node[:_MAX_ITEMS]):
                yield from walk(value, f"{pointer}/{i}", depth + 1)

    if isinstance(body, dict):
        yield from walk(body, "", 0)


def _expected(op: Operation | None, status: int) -> tuple[int, ...]:
    """The statuses a replayed request may get. A success may be any success the spec
    documents for the operation (data differs: a 200 here may be a 201 there); a refusal is the
    same refusal (a 404 must stay a 404, not become a 401). A recorded 429 or 5xx was the
    moment, not the request: the operation's success counts too (the harness waits out a 429)."""
    cls = status // 100
    documented = sorted(op.documented_statuses) if op else []
    success = [s for s in documented if 200 <= s < 300] or list(range(200, 300))
    if cls == 4 and status != 429:
        return (status,)
    if status == 429 or cls == 5:
        return (status, *success)
    return tuple([s for s in documented if s // 100 == cls] or range(cls * 100, cls * 100 + 100))


# --- running ------------------------------------------------------------------------------------


@dataclass(slots=True)
class ReplayRun:
    contract: Contract
    replay: Replay
    variables: dict[str, Any] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)
    sent: int = 0

    def run(self) -> None:
        production = self.contract.profile == "production"
        self.skipped += [f"{what} (outside the API)" for what in self.replay.outside]
        for step in self.replay.steps:
            if production and step.method not in SAFE_METHODS:
                self.skipped.append(
                    f"{step.name}: the production profile sends only GET and HEAD"
                )
                continue
            missing = sorted(v for v in step.needs if v not in self.variables)
            if missing:
                self.skipped.append(
                    f"{step.name}: needs {', '.join('${' + v + '}' for v in missing)}, "
                    "which no replayed answer gave"
                )
                continue
            self.send(step)

    def send(self, step: ReplayStep) -> None:
        path = _quoted(substitute(step.path, self.variables))
        kwargs: dict[str, Any] = {
            "params": [(k, str(substitute(v, self.variables))) for k, v in step.query] or None,
            "headers": dict(step.headers),
        }
        if step.has_json:
            kwargs["content"] = json.dumps(substitute(step.json_body, self.variables)).encode()
        elif step.text_body is not None:
            kwargs["content"] = step.text_body.encode()
        expect = {"status": list(step.expect_status)}
        self.contract.call(
            step.method,
            path,
            key=PRIMARY if step.keyed else None,
            role="scenario-step",
            meta={"expect": expect, "step": step.name, "scenario": self.replay.source},
            operation=step.operation,
            **kwargs,
        )
        self.sent += 1
        exchange = self.contract.exchanges[-1]
        body = exchange.response.json()
        for var, pointer in step.captures:
            value = resolve_pointer(body, pointer) if body is not None else None
            if value is not None and not is_missing(value):
                self.variables[var] = value
        status = exchange.response.status
        if step.creates and 200 <= status < 300:
            created = resolve_pointer(body, "/data/id") if body is not None else None
            if isinstance(created, str):
                self.contract.track(step.creates, created)
        op = step.operation
        if op is not None and op.kind == "delete" and 200 <= status < 300 and op.hints.collection:
            self.contract.cleanup.forget(op.hints.collection, path.rstrip("/").rsplit("/", 1)[-1])


def _quoted(path: str) -> str:
    return "/".join(quote(unquote(seg), safe="@:!$&'()*+,;=-._~") for seg in path.split("/"))


def run_replay(contract: Contract, replay: Replay) -> ReplayRun:
    """Replay a recording as a test: skipped entries are reported; failed checks fail it."""
    import pytest

    runner = ReplayRun(contract, replay)
    runner.run()
    if runner.skipped:
        contract.run.report.meta.setdefault("replay_skipped", []).extend(
            f"{replay.source}: {line}" for line in runner.skipped
        )
        warnings.warn(
            ReplayWarning(
                f"{len(runner.skipped)} entr{'y' if len(runner.skipped) == 1 else 'ies'} of "
                f"{replay.source} not sent: " + "; ".join(runner.skipped[:5])
                + (" ..." if len(runner.skipped) > 5 else "")
            ),
            stacklevel=2,
        )
    if runner.sent == 0:
        pytest.skip(f"nothing of {replay.source} could be sent: " + "; ".join(runner.skipped[:3]))
    contract.verify()
    return runner

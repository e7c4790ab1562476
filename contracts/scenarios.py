"""Scenario files (`*.contract.yaml`): steps of requests, captures, expectations, cleanup.

    name: Ticket lifecycle
    requires: {scopes: [psa_tickets:write]}      # the run's key must hold these, else skip
    steps:
      - name: create a ticket
        request:
          method: POST
          path: /tickets                          # relative to the API base (/api/v1)
          json: {subject: Printer, client_id: "${client_id}"}
          auth: primary                       # primary | limited | none | {has: [..], lacks: [..]}
                                                  #   | {header: "Bearer ..."} (sent verbatim)
        expect: {status: 201, json: {/data/status: New}, headers: {X-RateLimit-Limit: true}}
        capture: {ticket_id: /data/id}            # JSON pointer into the response body
    cleanup:                                      # always runs, even after a failed step
      - request: {method: DELETE, path: "/tickets/${ticket_id}"}
        expect: {status: [200, 404]}

`${name}` is replaced by a captured value (the whole value when the string is only the
variable), `${run}` by a token unique to the run. A step whose expectations fail ends the
scenario (later steps would read captures that may not exist); cleanup steps whose variables
were never captured are skipped. Every exchange is also judged by every response check.
`auth: {has: [scopes], lacks: [scopes]}` mints such a key in a sandbox; against a deployment
the limited key is used if its scopes fit, and the scenario is skipped if they do not.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jsonschema_rs

from opsmerge_contracts.contract_plan import SAFE_METHODS
from opsmerge_contracts.expect import is_missing, resolve_pointer, unmet
from opsmerge_contracts.session import LIMITED, PRIMARY, Contract
from opsmerge_sandbox.yamlio import load_yaml

SUITES_DIR = Path(__file__).parent / "suites"
SUFFIX = ".contract.yaml"
_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
RUN_TOKEN = secrets.token_hex(4)

_EXPECT = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "status": {"anyOf": [{"type": "integer"}, {"type": "array", "items": {"type": "integer"}}]},
        "code": {"type": "string"},
        "json": {"type": "object", "propertyNames": {"pattern": "^(/.*)?$"}},
        "headers": {"type": "object"},
    },
}
_REQUEST = {
    "type": "object",
    "required": ["method", "path"],
    "additionalProperties": False,
    "properties": {
        "method": {"type": "string", "pattern": "^[A-Za-z]+$"},
        "path": {"type": "string", "minLength": 1},
        "query": {"type": "object"},
        "json": {},
        "body": {"type": "string"},
        "headers": {"type": "object", "additionalProperties": {"type": "string"}},
        "auth": {
            "anyOf": [
                {"enum": ["primary", "limited", "none"]},
                {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {
                        "has": {"type": "array", "items": {"type": "string"}},
                        "lacks": {"type": "array", "items": {"type": "string"}},
                    },
                    "required": ["has"],
                },
                {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {"header": {"type": "string"}},
                    "required": ["header"],
                },
            ]
        },
    },
}
_STEP = {
    "type": "object",
    "required": ["request"],
    "additionalProperties": False,
    "properties": {
        "name": {"type": "string"},
        "request": _REQUEST,
        "expect": _EXPECT,
        "capture": {
            "type": "object",
            "additionalProperties": {"type": "string", "pattern": "^(/.*)?$"},
        },
    },
}
SCENARIO_SCHEMA = {
    "type": "object",
    "required": ["name", "steps"],
    "additionalProperties": False,
    "properties": {
        "name": {"type": "string", "minLength": 1},
        "description": {"type": "string"},
        "profiles": {"type": "array", "items": {"enum": ["sandbox", "staging", "production"]}},
        "requires": {
            "type": "object",
            "additionalProperties": False,
            "properties": {"scopes": {"type": "array", "items": {"type": "string"}}},
        },
        "steps": {"type": "array", "minItems": 1, "items": _STEP},
        "cleanup": {"type": "array", "items": _STEP},
    },
}
_VALIDATOR = jsonschema_rs.validator_for(SCENARIO_SCHEMA)


class ScenarioError(ValueError):
    """A scenario file is malformed; the message names the file and the place."""


@dataclass(frozen=True, slots=True)
class Scenario:
    name: str
    source: str
    steps: tuple[dict[str, Any], ...]
    cleanup: tuple[dict[str, Any], ...] = ()
    profiles: tuple[str, ...] = ("sandbox", "staging", "production")
    scopes: tuple[str, ...] = ()
    description: str = ""

    @property
    def methods(self) -> set[str]:
        return {str(s["request"]["method"]).upper() for s in (*self.steps, *self.cleanup)}

    @property
    def writes(self) -> bool:
        return bool(self.methods - SAFE_METHODS)


def parse_scenarios(doc: Any, source: str) -> list[Scenario]:
    """One scenario (a mapping) or several (`scenarios: [...]`) from a loaded YAML document."""
    items = doc.get("scenarios") if isinstance(doc, dict) and "scenarios" in doc else [doc]
    if not isinstance(items, list):
        raise ScenarioError(f"{source}: `scenarios` must be a list")
    out = []
    for index, raw in enumerate(items):
        where = source if len(items) == 1 else f"{source}: scenarios[{index}]"
        errors = list(_VALIDATOR.iter_errors(raw))
        if errors:
            first = errors[0]
            place = "/" + "/".join(str(p) for p in first.instance_path)
            raise ScenarioError(f"{where}: at {place}: {first.message}")
        out.append(
            Scenario(
                name=raw["name"],
                source=where,
                steps=tuple(raw["steps"]),
                cleanup=tuple(raw.get("cleanup") or ()),
                profiles=tuple(raw.get("profiles") or ("sandbox", "staging", "production")),
                scopes=tuple((raw.get("requires") or {}).get("scopes") or ()),
                description=raw.get("description", ""),
            )
        )
    names = [s.name for s in out]
    if len(set(names)) != len(names):
        raise ScenarioError(f"{source}: two scenarios share a name")
    return out


def load_file(path: Path) -> list[Scenario]:
    try:
        doc = load_yaml(path)
    except Exception as exc:
        raise ScenarioError(f"{path}: not valid YAML: {exc}") from None
    return parse_scenarios(doc, str(path))


def builtin_scenarios() -> list[Scenario]:
    found: list[Scenario] = []
    for path in sorted(SUITES_DIR.glob("*" + SUFFIX)):
        found += load_file(path)
    return found


# --- running -------------------------------------------------------------------------------------


def substitute(value: Any, variables: dict[str, Any]) -> Any:
    """Replace `${name}` in strings (recursively); a string that is one variable keeps its type."""
    if isinstance(value, str):
        whole = _VAR.fullmatch(value)
        if whole:
            return variables[whole.group(1)]
        return _VAR.sub(lambda m: str(variables[m.group(1)]), value)
    if isinstance(value, dict):
        return {substitute(k, variables): substitute(v, variables) for k, v in value.items()}
    if isinstance(value, list):
        return [substitute(v, variables) for v in value]
    return value


class Skip(Exception):
    """The scenario cannot run against this target or under this profile."""


@dataclass
class ScenarioRun:
    contract: Contract
    scenario: Scenario
    variables: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.variables.setdefault("run", RUN_TOKEN)

    def applicable(self) -> None:
        c, s = self.contract, self.scenario
        if c.profile not in s.profiles:
            raise Skip(
                f"scenario {s.name!r} runs only under the {', '.join(s.profiles)} profile(s)"
            )
        if c.profile == "production" and s.writes:
            raise Skip(
                f"scenario {s.name!r} sends {', '.join(sorted(s.methods - SAFE_METHODS))}; "
                "the production profile sends only GET and HEAD"
            )
        if s.scopes:
            held = c.run.scopes_of(c.target.key)
            missing = [x for x in s.scopes if held is None or x not in held]
            if missing:
                raise Skip(f"scenario {s.name!r} needs {', '.join(missing)}, which the key lacks")
        for step in (*s.steps, *s.cleanup):
            self._key(step["request"].get("auth", "primary"))  # raises Skip when unusable

    def _key(self, auth: Any) -> tuple[str | None, str | None]:
        """(key, verbatim Authorization header) for a step's `auth`."""
        c = self.contract
        if auth == "primary":
            return PRIMARY, None
        if auth == "none":
            return None, None
        if auth == "limited":
            if not c.target.limited_key:
                raise Skip(
                    "the scenario uses the limited key, and none was given (--opsmerge-limited-key)"
                )
            return LIMITED, None
        if "header" in auth:
            return None, str(auth["header"])
        has, lacks = tuple(auth.get("has") or ()), tuple(auth.get("lacks") or ())
        if c.target.admin is not None:
            return c.target.mint(has), None
        if c.target.limited_key:
            held = c.run.scopes_of(c.target.limited_key) or set()
            if all(x in held for x in has) and not any(x in held for x in lacks):
                return LIMITED, None
        raise Skip(
            f"the scenario needs a key with {list(has)} and without {list(lacks)}: "
            "give one as --opsmerge-limited-key"
        )

    def send(self, step: dict[str, Any], index: int, phase: str) -> bool:
        """Send a step; True when its expectations (and captures) were met."""
        request = substitute(step["request"], self.variables)
        key, header = self._key(request.get("auth", "primary"))
        expect = dict(substitute(step.get("expect") or {}, self.variables))
        captures: dict[str, str] = dict(step.get("capture") or {})
        if captures:
            expect["json"] = {
                **{p: {"exists": True} for p in captures.values()},
                **(expect.get("json") or {}),
            }
        kwargs: dict[str, Any] = {"params": request.get("query"), "headers": request.get("headers")}
        if "json" in request:
            kwargs["json"] = request["json"]
        elif "body" in request:
            kwargs["content"] = request["body"].encode()
        name = step.get("name") or f"{phase} {index + 1}: {request['method']} {request['path']}"
        response = self.contract.call(
            request["method"].upper(),
            request["path"],
            key=key,
            authorization=header,
            role="scenario-step",
            meta={"expect": expect, "step": name, "scenario": self.scenario.name},
            **kwargs,
        )
        del response
        exchange = self.contract.exchanges[-1]
        ok = not list(unmet(expect, exchange))
        body = exchange.response.json()
        for var, pointer in captures.items():
            value = resolve_pointer(body, pointer) if body is not None else None
            if value is not None and not is_missing(value):
                self.variables[var] = value
        return ok

    def run(self) -> None:
        s = self.scenario
        try:
            for index, step in enumerate(s.steps):
                try:
                    substitute(step["request"], self.variables)
                except KeyError as exc:
                    raise ScenarioError(
                        f"{s.source}: step {index + 1} uses ${{{exc.args[0]}}}, "
                        "which no earlier step captured"
                    ) from None
                if not self.send(step, index, "step"):
                    break
        finally:
            for index, step in enumerate(s.cleanup):
                try:
                    substitute(step["request"], self.variables)
                except KeyError:
                    continue  # what it would clean up was never created
                self.send(step, index, "cleanup")


def run_scenario(contract: Contract, scenario: Scenario) -> None:
    """Run a scenario as a test: skip when it cannot run here, fail when a check fails."""
    import pytest

    runner = ScenarioRun(contract, scenario)
    try:
        runner.applicable()
    except Skip as exc:
        pytest.skip(str(exc))
    try:
        runner.run()
    except Skip as exc:
        pytest.skip(str(exc))
    contract.verify()

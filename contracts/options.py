"""The plugin's options: each settable on the command line, in the environment or in the ini file.

Precedence is command line, then environment, then ini file, then the default: CI secret stores
set the environment, and a setting there should beat what a committed ini file says.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

PROFILES = ("sandbox", "staging", "production")


@dataclass(frozen=True, slots=True)
class OptionSpec:
    name: str  # attribute of Options
    flag: str
    env: str
    ini: str
    help: str
    secret: bool = False
    repeatable: bool = False  # the flag may be given several times


OPTIONS: tuple[OptionSpec, ...] = (
    OptionSpec(
        "target",
        "--opsmerge-target",
        "OPSMERGE_TARGET",
        "opsmerge_target",
        "'sandbox' (the sandbox app in-process, the default) or a base URL such as "
        "http://127.0.0.1:4010 (the API is under /api/v1 of it)",
    ),
    OptionSpec(
        "key",
        "--opsmerge-key",
        "OPSMERGE_API_KEY",
        "opsmerge_key",
        "API key for the target (prefer the environment: it is never printed)",
        secret=True,
    ),
    OptionSpec(
        "limited_key",
        "--opsmerge-limited-key",
        "OPSMERGE_LIMITED_KEY",
        "opsmerge_limited_key",
        "a key with narrower scopes, for the 403 checks against a live target",
        secret=True,
    ),
    OptionSpec(
        "keys_for",
        "--opsmerge-key-for",
        "OPSMERGE_KEYS_FOR",
        "opsmerge_keys_for",
        "ROLE=KEY: a key held by a user of that role, for the role matrix (403 FORBIDDEN, "
        "403 SCOPE_DENIED, success); repeatable; the environment takes 'a=KEY;b=KEY'",
        secret=True,
        repeatable=True,
    ),
    OptionSpec(
        "keys_file",
        "--opsmerge-keys-file",
        "OPSMERGE_KEYS_FILE",
        "opsmerge_keys_file",
        "a file of ROLE=KEY lines (or a JSON object ROLE: KEY) for the role matrix",
    ),
    OptionSpec(
        "profile",
        "--opsmerge-profile",
        "OPSMERGE_PROFILE",
        "opsmerge_profile",
        "sandbox | staging | production (default: sandbox for the sandbox target or a URL "
        "given with its admin token, else production, which sends only GET and HEAD)",
    ),
    OptionSpec(
        "budget",
        "--opsmerge-budget",
        "OPSMERGE_BUDGET",
        "opsmerge_budget",
        "the most requests the run may send to the target",
    ),
    OptionSpec(
        "report",
        "--opsmerge-report",
        "OPSMERGE_REPORT",
        "opsmerge_report",
        "write a JSON report and a self-contained HTML report to PATH (.json and .html)",
    ),
    OptionSpec(
        "admin_token",
        "--opsmerge-admin-token",
        "OPSMERGE_SANDBOX_ADMIN_TOKEN",
        "opsmerge_admin_token",
        "admin token of a sandbox served at the target URL: the run mints its own keys and "
        "works in a workspace of its own, reset at the end (prefer the environment)",
        secret=True,
    ),
    OptionSpec(
        "workspace",
        "--opsmerge-workspace",
        "OPSMERGE_WORKSPACE",
        "opsmerge_workspace",
        "with an admin token: the served sandbox's workspace the run works in and resets at "
        "the end (default contracts-<random>, new for every run)",
    ),
    OptionSpec(
        "app",
        "--opsmerge-app",
        "OPSMERGE_APP",
        "opsmerge_app",
        "module:factory building the in-process app from sandbox Settings "
        "(default: opsmerge_sandbox.app:create_app)",
    ),
    OptionSpec(
        "spec",
        "--opsmerge-spec",
        "OPSMERGE_SPEC",
        "opsmerge_spec",
        "the OpenAPI document the contracts come from (default: the bundled spec)",
    ),
    OptionSpec(
        "suite",
        "--opsmerge-suite",
        "OPSMERGE_SUITE",
        "opsmerge_suite",
        "run the built-in contract suite: auto (when a target is set), yes or no",
    ),
    OptionSpec(
        "examples",
        "--opsmerge-examples",
        "OPSMERGE_EXAMPLES",
        "opsmerge_examples",
        "generated bodies per create or update operation (default 3)",
    ),
)


@dataclass(frozen=True, slots=True)
class Options:
    target: str = "sandbox"
    target_given: bool = False
    key: str | None = None
    limited_key: str | None = None
    profile: str = "sandbox"
    budget: int | None = None
    report: Path | None = None
    admin_token: str | None = None
    role_keys: tuple[tuple[str, str], ...] = ()  # (label, key) for the role matrix
    workspace: str | None = None
    app: str | None = None
    spec: Path | None = None
    suite: str = "auto"
    examples: int = 3

    @property
    def in_process(self) -> bool:
        return self.target == "sandbox"

    @property
    def run_suite(self) -> bool:
        return self.suite == "yes" or (self.suite == "auto" and self.target_given)


def add_options(parser: pytest.Parser) -> None:
    group = parser.getgroup("opsmerge", "OpsMerge contracts")
    for spec in OPTIONS:
        group.addoption(
            spec.flag,
            dest=f"opsmerge_{spec.name}",
            default=None,
            help=spec.help,
            action="append" if spec.repeatable else "store",
        )
        parser.addini(spec.ini, help=spec.help + f" (env {spec.env})", default=None)


def _raw(config: pytest.Config, spec: OptionSpec, environ: dict[str, str]) -> str | None:
    value = config.getoption(f"opsmerge_{spec.name}", default=None)
    if isinstance(value, list):  # a repeatable flag: its entries, one per line
        value = "\n".join(str(v) for v in value) or None
    if value in (None, ""):
        value = environ.get(spec.env) or None
    if value in (None, ""):
        value = config.getini(spec.ini) or None
    return str(value).strip() if value not in (None, "") else None


class OptionError(pytest.UsageError):  # type: ignore[misc]  # pytest marks it final
    pass


def resolve(config: pytest.Config, environ: dict[str, str] | None = None) -> Options:
    env = dict(os.environ if environ is None else environ)
    raw: dict[str, Any] = {spec.name: _raw(config, spec, env) for spec in OPTIONS}
    target = raw["target"] or "sandbox"
    if target != "sandbox" and not target.startswith(("http://", "https://")):
        raise OptionError(f"--opsmerge-target must be 'sandbox' or an http(s) URL, got {target!r}")
    # with its admin token the target is a sandbox, and the run writes only in its own workspace
    sandboxed = target == "sandbox" or raw["admin_token"] is not None
    profile = raw["profile"] or ("sandbox" if sandboxed else "production")
    if profile not in PROFILES:
        raise OptionError(
            f"--opsmerge-profile must be one of {', '.join(PROFILES)}, got {profile!r}"
        )
    suite = (raw["suite"] or "auto").lower()
    suite = {"true": "yes", "1": "yes", "false": "no", "0": "no"}.get(suite, suite)
    if suite not in ("auto", "yes", "no"):
        raise OptionError(f"--opsmerge-suite must be auto, yes or no, got {raw['suite']!r}")
    if raw["workspace"] == "default":
        raise OptionError(
            "--opsmerge-workspace cannot be 'default': the run resets its workspace when it ends"
        )
    return Options(
        role_keys=_role_keys(raw["keys_for"], raw["keys_file"]),
        target=target.rstrip("/"),
        target_given=raw["target"] is not None,
        key=raw["key"],
        limited_key=raw["limited_key"],
        profile=profile,
        budget=_int(raw["budget"], "--opsmerge-budget"),
        report=Path(raw["report"]) if raw["report"] else None,
        admin_token=raw["admin_token"],
        workspace=raw["workspace"],
        app=raw["app"],
        spec=Path(raw["spec"]) if raw["spec"] else None,
        suite=suite,
        examples=_int(raw["examples"], "--opsmerge-examples") or 3,
    )


def _role_keys(inline: str | None, file: str | None) -> tuple[tuple[str, str], ...]:
    """The role matrix's keys from ROLE=KEY entries and a keys file (messages never show a key)."""
    if not inline and not file:
        return ()
    from opsmerge_contracts.rolekeys import KeyEntryError, load_file, merge, parse_entries

    try:
        return merge(
            parse_entries(inline or "", "--opsmerge-key-for"),
            load_file(Path(file)) if file else [],
        )
    except KeyEntryError as exc:
        raise OptionError(str(exc)) from None


def _int(value: str | None, flag: str) -> int | None:
    if value is None:
        return None
    try:
        number = int(value)
    except ValueError:
        raise OptionError(f"{flag} must be a whole number, got {value!r}") from None
    if number < 0:
        raise OptionError(f"{flag} cannot be negative")
    return number

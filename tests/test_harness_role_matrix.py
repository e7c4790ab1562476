"""Role checks on a deployment: keys per role, what each may do from /auth/me, and the matrix.

A sandbox is served on loopback and treated as a deployment (no admin token): the run knows only
the keys it is given, one per role, through `--key-for`, a keys file or OPSMERGE_KEYS_FOR. The
command runs in a subprocess as a user runs it. The keys are the recipe's working keys, chosen
by what they are (usable, accepted), never by which role they belong to: the harness must learn
that itself. A deployment that lets a key past its role is served broken the same way.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import broken_server
import pytest

from opsmerge_contracts import exit_codes
from opsmerge_contracts.exchange import Exchange, RecordedRequest, RecordedResponse, curl_line
from opsmerge_contracts.sandboxes import Sandbox, start_sandbox
from opsmerge_sandbox.settings import Settings
from tests.conftest import contracts_command

pytest_plugins = ["pytester"]

# a read, a create, and a write of another permission family: enough to meet every expectation
SELECTION = "test_role_matrix and (listTickets or createTicket or createInvoice or getAgent)"


@pytest.fixture(scope="module")
def served() -> Iterator[Sandbox]:
    box = start_sandbox(
        Settings(recipe=str(broken_server.SMALL_RECIPE)),
        loopback=True,
        app_factory=broken_server.create_broken_app,
    )
    box.app.breakage = "none"
    try:
        yield box
    finally:
        box.close()


@pytest.fixture
def deployment(served: Sandbox) -> Iterator[Sandbox]:
    served.reset()
    served.app.breakage = "none"
    try:
        yield served
    finally:
        served.app.breakage = "none"


def working_keys(box: Sandbox) -> dict[str, str]:
    """label -> key for every recipe key the target accepts with its default rate limit."""
    out = {}
    for spec in box.keys:
        if spec.revoked or spec.expires_at is not None or spec.rate_limit is not None:
            continue
        with box.client(spec.key) as client:
            if client.get("/auth/me").status_code == 200:
                out[spec.id] = spec.key
    return out


def refused_key(box: Sandbox) -> tuple[str, str]:
    """A recipe key that is not revoked or expired but that the target refuses all the same."""
    for spec in box.keys:
        if spec.revoked or spec.expires_at is not None:
            continue
        with box.client(spec.key) as client:
            if client.get("/auth/me").status_code == 401:
                return spec.id, spec.key
    raise LookupError("the recipe has no key refused for its owner")


def run(
    box: Sandbox, tmp_path: Path, *args: str, env: dict[str, str] | None = None
) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    extra = {"OPSMERGE_API_KEY": box.keys.owner.key, "COLUMNS": "80", **(env or {})}
    return contracts_command(box.root_url, tmp_path, *args, env=extra)


def as_env(keys: dict[str, str]) -> str:
    return ";".join(f"{label}={key}" for label, key in keys.items())


def never_shown(text: str, keys: dict[str, str]) -> None:
    for key in keys.values():
        assert key not in text and key[3:15] not in text and key[-12:] not in text


def test_given_keys_prove_forbidden_scope_denied_and_success_per_role(
    deployment: Sandbox, tmp_path: Path
) -> None:
    keys = working_keys(deployment)
    result, data = run(
        deployment,
        tmp_path,
        "--profile",
        "staging",
        "--",
        "-k",
        SELECTION,
        env={"OPSMERGE_KEYS_FOR": as_env(keys)},
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    checks = data["summary"]["checks"]
    for check_id in ("role_forbidden", "role_scope_denied", "role_allowed"):
        assert checks.get(check_id, {}).get("pass", 0) > 0, (check_id, checks)
    assert data["unproven"] == []  # every key's roles were learned, every write was sent
    assert set(data["meta"]["role_keys"].split(", ")) == set(keys)
    never_shown(output + json.dumps(data), keys)


def test_under_production_writes_are_not_sent_and_the_report_says_what_was_not_proven(
    deployment: Sandbox, tmp_path: Path
) -> None:
    keys = working_keys(deployment)
    keys_file = tmp_path / "keys.json"
    keys_file.write_text(json.dumps(keys))
    deployment.admin.clear_requests()
    result, data = run(
        deployment, tmp_path, "--keys-file", str(keys_file), "--", "-k", SELECTION, "-rs"
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    writes = [e for e in deployment.admin.requests() if e.get("method") not in ("GET", "HEAD")]
    assert writes == []
    unproven = data["unproven"]
    not_proven = {u["operation"] for u in unproven}
    assert {"createTicket", "createInvoice"} <= not_proven  # the selected writes, and only they
    assert not not_proven & {"listTickets", "getAgent"}
    assert {u["key"] for u in unproven} == set(keys)
    assert all("production" in u["reason"] for u in unproven)
    assert {u["expected"] for u in unproven} >= {"403 FORBIDDEN", "success"}
    assert "role matrix, not proven" in result.stdout
    skipped = [s for s in data["skipped"] if "test_role_matrix" in s["test"]]
    assert len(skipped) == len(not_proven) and all("not proven" in s["reason"] for s in skipped)
    assert data["summary"]["checks"]["role_allowed"]["pass"] > 0  # the reads were proven
    never_shown(output + json.dumps(data), keys)


@pytest.mark.parametrize(
    ("breakage", "check_id", "operation"),
    [
        ("role_bypass", "role_forbidden", "createTicket (POST /tickets)"),
        ("scope_denied_as_forbidden", "role_scope_denied", "createInvoice (POST /invoices)"),
    ],
)
def test_a_deployment_that_lets_a_key_past_its_role_fails_naming_the_role_and_operation(
    deployment: Sandbox, tmp_path: Path, breakage: str, check_id: str, operation: str
) -> None:
    keys = working_keys(deployment)
    deployment.app.breakage = breakage
    result, data = run(
        deployment,
        tmp_path,
        "--profile",
        "staging",
        "--",
        "-k",
        SELECTION,
        env={"OPSMERGE_KEYS_FOR": as_env(keys)},
    )
    output = result.stdout + result.stderr
    assert result.returncode == exit_codes.FAILED, output[-4000:]
    assert check_id in data["summary"]["failed_checks"]
    labels = "|".join(map(re.escape, keys))
    who = rf"key '({labels})' \(role [^)]+\): "
    named = re.compile(who + re.escape(operation))
    any_operation = re.compile(who + r"\w+ \([A-Z]+ /[^ )]*\)")
    messages = [f["message"] for f in data["failures"] if f["check"] == check_id]
    assert messages and all(any_operation.search(m) for m in messages), messages
    assert any(named.search(m) for m in messages), messages
    assert named.search(output), output[-4000:]
    never_shown(output + json.dumps(data), keys)


def test_a_key_the_target_refuses_stops_the_run_naming_its_role_label_only(
    deployment: Sandbox, tmp_path: Path
) -> None:
    label, key = refused_key(deployment)
    result, _ = run(deployment, tmp_path, "--key-for", f"{label}={key}", "--", "-k", SELECTION)
    output = (result.stdout + result.stderr).strip()
    assert result.returncode == exit_codes.KEY_REJECTED, output
    assert len(output.splitlines()) == 1 and f"the key given for {label!r}" in output, output
    never_shown(output, {label: key})


@pytest.mark.parametrize(
    ("entry", "problem"),
    [
        ("readonly", "expected ROLE=KEY"),
        ("=om_contracts_secret_value_0001", "role label"),
        ("readonly=", "is empty"),
        ("a=om_contracts_secret_value_0001;a=om_contracts_secret_value_0002", "given twice"),
    ],
)
def test_a_bad_key_entry_is_one_usage_line_that_never_shows_the_key(
    served: Sandbox, tmp_path: Path, entry: str, problem: str
) -> None:
    result, _ = run(served, tmp_path, env={"OPSMERGE_KEYS_FOR": entry})
    output = (result.stdout + result.stderr).strip()
    assert result.returncode == exit_codes.USAGE, output
    assert len(output.splitlines()) == 1 and problem in output, output
    assert "secret_value" not in output


SHOW = """
from opsmerge_contracts.plugin import options_for

def test_show(pytestconfig):
    print("ROLE_KEYS", [label for label, _ in options_for(pytestconfig).role_keys])
"""


@pytest.mark.parametrize(
    ("how", "expected"),
    [
        ("flags", ["admin", "readonly"]),
        ("env", ["admin", "readonly"]),
        ("lines", ["admin", "readonly"]),
        ("json", ["admin", "readonly"]),
        ("flags+file", ["admin", "readonly", "billing"]),
    ],
)
def test_keys_per_role_come_from_repeated_flags_a_file_or_the_environment(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, how: str, expected: list[str]
) -> None:
    monkeypatch.delenv("OPSMERGE_KEYS_FOR", raising=False)
    monkeypatch.delenv("OPSMERGE_KEYS_FILE", raising=False)
    args: list[str] = []
    flags = ["--opsmerge-key-for=admin=om_a_1", "--opsmerge-key-for", "readonly=om_r_1"]
    if how.startswith("flags"):
        args += flags
    if how == "env":
        monkeypatch.setenv("OPSMERGE_KEYS_FOR", "admin=om_a_1; readonly=om_r_1")
    if how == "lines":
        pytester.path.joinpath("keys.txt").write_text(
            "# keys per role\nadmin=om_a_1\n\nreadonly = om_r_1\n"
        )
        args.append("--opsmerge-keys-file=keys.txt")
    if how == "json":
        pytester.path.joinpath("keys.json").write_text('{"admin": "om_a_1", "readonly": "om_r_1"}')
        args.append("--opsmerge-keys-file=keys.json")
    if how == "flags+file":
        pytester.path.joinpath("keys.txt").write_text("billing=om_b_1\n")
        args.append("--opsmerge-keys-file=keys.txt")
    pytester.makepyfile(test_show=SHOW)
    result = pytester.runpytest_inprocess(
        "-s", "--opsmerge-suite=no", "-p", "no:cacheprovider", *args
    )
    assert result.ret == 0, result.stdout.str()
    line = next(line for line in result.stdout.lines if "ROLE_KEYS " in line)
    assert line.split("ROLE_KEYS ", 1)[1] == repr(expected)


def test_a_curl_line_for_a_given_role_key_reads_it_from_its_own_variable() -> None:
    exchange = Exchange(
        request=RecordedRequest(
            "GET", "https://api.example/api/v1/tickets", {"authorization": "Bearer om_abcd…"}
        ),
        response=RecordedResponse(403, {}),
        key_label="for:read-only",
    )
    line = curl_line(exchange)
    assert '"Authorization: Bearer $OPSMERGE_KEY_FOR_READ_ONLY"' in line
    assert "om_abcd" not in line


def test_a_narrow_key_alone_is_told_apart_by_the_role_scopes_its_identity_lists(
    deployment: Sandbox, tmp_path: Path
) -> None:
    """auth/me lists what the role allows (`role_scopes`) beside what the key may use, so a
    custom-scope key given alone still proves SCOPE_DENIED and FORBIDDEN apart."""
    narrow = deployment.keys.limited
    keys = {narrow.id: narrow.key}
    result, data = run(
        deployment,
        tmp_path,
        "--profile",
        "staging",
        "--",
        "-k",
        SELECTION,
        env={"OPSMERGE_KEYS_FOR": as_env(keys)},
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    assert [u for u in data["unproven"] if "not told apart" in u["reason"]] == []
    assert data["summary"]["checks"]["role_scope_denied"]["pass"] > 0
    never_shown(output + json.dumps(data), keys)

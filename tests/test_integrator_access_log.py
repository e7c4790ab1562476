"""`serve --access-log`: one line per request on stdout, shaped like uvicorn's, naming the key by
its name only and the workspace; nothing at all without the option."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator

import httpx
import pytest
from integrator_serve import OWNER_KEY, Served, serving

OWNER = {"Authorization": f"Bearer {OWNER_KEY}"}
LINE = re.compile(
    r'^INFO:     127\.0\.0\.1:\d+ - "(?P<method>[A-Z]+) (?P<target>\S+) HTTP/1\.1" '
    r'(?P<status>\d{3}|-) key=(?P<key>-|[^\s"]+|"(?:[^"\\]|\\.)*") '
    r"ws=(?P<ws>\S+) (?P<ms>\d+\.\d)ms$"
)


@pytest.fixture(scope="module")
def logged() -> Iterator[Served]:
    with serving("--access-log") as served:
        yield served


def _line_for(served: Served, fragment: str) -> re.Match[str]:
    served.wait_for(fragment)
    for line in served.stdout.splitlines():
        if fragment in line:
            m = LINE.match(line)
            assert m, f"not in the access log's shape: {line!r}"
            return m
    raise AssertionError(fragment)


def test_each_api_request_gets_one_line_with_status_key_name_workspace_and_duration(
    logged: Served,
) -> None:
    r = httpx.get(f"{logged.url}/api/v1/agents?page=2&per_page=3", headers=OWNER)
    assert r.status_code == 200
    m = _line_for(logged, "/api/v1/agents?page=2&per_page=3")
    assert (m["method"], m["status"]) == ("GET", "200")
    assert m["key"] == '"Owner - full access"' and m["ws"] == "default"
    assert float(m["ms"]) >= 0
    workspace = {**OWNER, "X-Sandbox-Workspace": "my-branch"}
    httpx.post(f"{logged.url}/api/v1/tickets?probe=ws", headers=workspace, json={})
    m = _line_for(logged, "/api/v1/tickets?probe=ws")
    assert (m["method"], m["status"], m["ws"]) == ("POST", "400", "my-branch")


def test_the_key_never_appears_even_where_a_client_put_it_in_the_url(logged: Served) -> None:
    httpx.get(f"{logged.url}/api/v1/auth/me?api_key={OWNER_KEY}&probe=url", headers=OWNER)
    httpx.get(f"{logged.url}/api/v1/agents/{OWNER_KEY}?probe=path", headers=OWNER)
    httpx.get(f"{logged.url}/api/v1/agents?probe=none")  # no key: 401
    m = _line_for(logged, "probe=url")
    assert m["target"] == "/api/v1/auth/me?api_key=[redacted]&probe=url"
    m = _line_for(logged, "probe=path")
    assert m["target"] == "/api/v1/agents/[redacted]?probe=path"
    m = _line_for(logged, "probe=none")
    assert (m["status"], m["key"], m["ws"]) == ("401", "-", "-")
    assert OWNER_KEY[:12] not in logged.stdout and OWNER_KEY[-8:] not in logged.stdout


def test_requests_outside_the_api_are_logged_too(logged: Served) -> None:
    httpx.get(f"{logged.url}/api/docs")
    httpx.get(f"{logged.url}/_sandbox/requests", headers={"X-Sandbox-Admin-Token": "wrong"})
    assert _line_for(logged, '"GET /api/docs HTTP')["status"] == "200"
    m = _line_for(logged, "/_sandbox/requests")
    assert (m["status"], m["key"]) == ("401", "-")


def test_a_line_cannot_be_split_or_faked_by_what_a_client_sends(logged: Served) -> None:
    httpx.get(f"{logged.url}/api/v1/agents?probe=%0d%0aINFO:%20fake&q=%22", headers=OWNER)
    m = _line_for(logged, "probe=%0d%0aINFO")
    assert '"' not in m["target"]
    token = re.search(r"X-Sandbox-Admin-Token: (\S+)", logged.stderr)[1]  # type: ignore[index]
    name = 'Evil "name"\nINFO:     127.0.0.1:1 - "GET /faked HTTP/1.1" 200'
    minted = httpx.post(
        f"{logged.url}/_sandbox/keys",
        headers={"X-Sandbox-Admin-Token": token},
        json={"name": name, "role": "Owner"},
    )
    assert minted.status_code == 201, minted.text
    secret = minted.json()["data"]["key"]
    evil = {"Authorization": f"Bearer {secret}"}
    httpx.get(f"{logged.url}/api/v1/agents?probe=evil-name", headers=evil)
    m = _line_for(logged, "probe=evil-name")
    assert m["key"] == json.dumps(name)
    assert "/faked" not in "".join(
        line for line in logged.stdout.splitlines() if line.startswith("INFO:     127.0.0.1:1 ")
    )
    assert secret[:12] not in logged.stdout


def test_without_the_option_serve_writes_no_access_log() -> None:
    with serving() as served:
        for _ in range(3):
            assert httpx.get(f"{served.url}/api/v1/agents", headers=OWNER).status_code == 200
        time.sleep(0.3)
        assert "/api/v1/agents" not in served.stdout + served.stderr


def test_connection_faults_still_reset_the_connection_with_the_access_log_on(
    logged: Served,
) -> None:
    token = re.search(r"X-Sandbox-Admin-Token: (\S+)", logged.stderr)[1]  # type: ignore[index]
    rule = {
        "name": "reset under the log",
        "match": {"path": "/api/v1/agents", "key": "Owner - full access"},
        "effect": {"connection": "reset"},
        "times": 1,
    }
    added = httpx.post(
        f"{logged.url}/_sandbox/faults", headers={"X-Sandbox-Admin-Token": token}, json=rule
    )
    assert added.status_code == 201, added.text
    with pytest.raises((httpx.ReadError, httpx.RemoteProtocolError)):
        httpx.get(f"{logged.url}/api/v1/agents?probe=reset", headers=OWNER)
    m = _line_for(logged, "probe=reset")
    assert m["key"] == '"Owner - full access"'
    assert m["status"] == "-"  # nothing was answered: the connection was reset


def test_the_readme_and_serve_help_list_the_new_serve_options() -> None:
    import subprocess
    import sys

    from integrator_serve import ROOT

    readme = (ROOT / "README.md").read_text()
    serve = readme.split("**`opsmerge-sandbox serve`**", 1)[1]
    usage = serve.split("**`opsmerge-sandbox keys`**", 1)[0]
    done = subprocess.run(
        [sys.executable, "-m", "opsmerge_sandbox.cli", "serve", "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )
    for option in ("--access-log", "--reject-unknown-params"):
        assert option in usage and option in done.stdout

"""`serve --record FILE`: the sandbox's own API exchanges as HAR 1.2, valid JSON while it runs
and after it stops, bodies kept, keys and other credentials never written."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import SMALL_RECIPE, free_port

from opsmerge_sandbox.har import HarError, read_har

OWNER = "om_sbx_owner_full_pG5aQxpYERgXwi9iPGPE2lWARD"  # the recipe's owner key (README)
ADMIN = "record-test-admin"


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A sandbox served with --record; a few exchanges; the file mid-run and after the stop."""
    path = tmp_path_factory.mktemp("record") / "sandbox.har"
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPSMERGE_")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "opsmerge_sandbox.cli", "serve", "--port", str(port),
         "--recipe", str(SMALL_RECIPE), "--admin-token", ADMIN, "--record", str(path)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                httpx.get(base + "/healthz", timeout=1)
                break
            except httpx.TransportError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    told = proc.stderr.read() if proc.stderr else "no start"
                    raise AssertionError(told) from None
                time.sleep(0.1)
        with httpx.Client(base_url=base) as c:
            auth = {"Authorization": f"Bearer {OWNER}"}
            c.get("/api/v1/auth/me", headers=auth)
            created = c.post(
                "/api/v1/tickets",
                json={"subject": "Recorded by serve", "client_id": "cli_acme"},
                headers={**auth, "Cookie": "om_session=abc123", "X-Api-Key": "k-secret"},
            )
            c.get(f"/api/v1/tickets?api_key={OWNER}&per_page=1", headers=auth)
            c.get("/api/v1/tickets")  # no key: 401
            c.get("/api/docs/openapi.json")  # not the API: not recorded
            c.get("/_sandbox/requests", headers={"X-Sandbox-Admin-Token": ADMIN})
        mid_run = path.read_text()
    finally:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    yield {"mid_run": mid_run, "final": path.read_text(), "path": path, "stderr": err,
           "created": created.json()["data"]}  # fmt: skip


def test_the_file_is_valid_har_while_the_sandbox_runs_and_after_it_stops(
    recorded: dict[str, Any],
) -> None:
    for text in (recorded["mid_run"], recorded["final"]):
        log = json.loads(text)["log"]
        assert log["version"] == "1.2"
        assert log["creator"]["name"] == "opsmerge-sandbox"
        assert len(log["entries"]) == 4
    assert "recorded 4 exchange(s)" in recorded["stderr"]


def test_only_the_api_is_recorded_in_order_with_timings(recorded: dict[str, Any]) -> None:
    entries = json.loads(recorded["final"])["log"]["entries"]
    assert [(e["request"]["method"], e["response"]["status"]) for e in entries] == [
        ("GET", 200), ("POST", 201), ("GET", 200), ("GET", 401),
    ]  # fmt: skip
    for e in entries:
        assert "/api/v1/" in e["request"]["url"]
        assert e["startedDateTime"].endswith("Z") and e["time"] >= 0
        assert {"send", "wait", "receive"} <= e["timings"].keys()
        assert e["response"]["content"]["mimeType"].startswith("application/json")


def test_bodies_are_kept(recorded: dict[str, Any]) -> None:
    post = json.loads(recorded["final"])["log"]["entries"][1]
    sent = json.loads(post["request"]["postData"]["text"])
    assert sent == {"subject": "Recorded by serve", "client_id": "cli_acme"}
    answer = json.loads(post["response"]["content"]["text"])["data"]
    assert answer["id"] == recorded["created"]["id"]


def test_keys_cookies_and_credentials_are_redacted(recorded: dict[str, Any]) -> None:
    text = recorded["final"]
    assert OWNER not in text and OWNER[:14] not in text
    assert "abc123" not in text and "k-secret" not in text
    post = json.loads(text)["log"]["entries"][1]["request"]
    headers = {h["name"].lower(): h["value"] for h in post["headers"]}
    assert headers["authorization"] == "Bearer [redacted]"
    assert headers["cookie"] == "[redacted]" and headers["x-api-key"] == "[redacted]"
    listed = json.loads(text)["log"]["entries"][2]["request"]
    assert "api_key=[redacted]" in listed["url"]
    assert {"name": "api_key", "value": "[redacted]"} in listed["queryString"]


def test_a_file_that_is_not_a_recording_is_refused_naming_the_problem(tmp_path: Path) -> None:
    bad = tmp_path / "bad.har"
    bad.write_text('{"log": {"version": "1.2"}}')
    with pytest.raises(HarError, match=r"no log\.entries"):
        read_har(bad)
    bad.write_text("not json")
    with pytest.raises(HarError, match="not JSON"):
        read_har(bad)

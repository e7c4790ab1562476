"""Against a URL, as against a deployment: the sandbox served on loopback, reached over HTTP.

Without the admin token the harness knows nothing the API does not tell it: the 403 checks use
the limited key (its scopes read from /auth/me), staging writes only what it created and deletes
it. With the token, a served sandbox is as controllable as the in-process one.
"""

from __future__ import annotations

import json

import pytest

from opsmerge_contracts.sandboxes import Sandbox

pytest_plugins = ["pytester"]


def run(pytester: pytest.Pytester, served: Sandbox, *args: str) -> tuple[pytest.RunResult, dict]:
    report = pytester.path / "live.json"
    result = pytester.runpytest_inprocess(
        f"--opsmerge-target={served.root_url}",
        f"--opsmerge-key={served.keys.owner.key}",
        f"--opsmerge-report={report}",
        "-p",
        "no:cacheprovider",
        "-rs",
        *args,
    )
    return result, json.loads(report.read_text())


def test_the_limited_key_drives_the_403_checks_against_a_url(
    pytester: pytest.Pytester, served: Sandbox
) -> None:
    served.reset()
    result, data = run(
        pytester,
        served,
        f"--opsmerge-limited-key={served.keys.limited.key}",
        "-k",
        "test_auth and (listTickets or listAgents or getAgent)",
    )
    assert result.ret == 0 and data["failures"] == []
    matrix = data["operations"]
    assert (
        matrix["listTickets"]["scope_denied"] == "pass"
    )  # the agents:read key lacks psa_tickets:read
    assert matrix["listAgents"]["scope_granted"] == "pass"
    assert matrix["getAgent"]["scope_granted"] == "pass"
    assert data["meta"]["profile"] == "production" and data["meta"]["admin"] is False


def test_without_a_limited_key_the_403_checks_are_left_out_not_failed(
    pytester: pytest.Pytester, served: Sandbox
) -> None:
    result, data = run(pytester, served, "-k", "test_auth and listTickets")
    assert result.ret == 0
    assert "scope_denied" not in data["operations"]["listTickets"]
    assert data["operations"]["listTickets"]["auth_required"] == "pass"


def test_staging_writes_only_what_it_creates_and_deletes_it(
    pytester: pytest.Pytester, served: Sandbox
) -> None:
    served.reset()
    with served.client() as client:
        listed = client.get("/tickets", params={"per_page": 100}).json()["data"]["items"]
    seeded = {t["id"] for t in listed}
    served.admin.clear_requests()
    result, data = run(
        pytester,
        served,
        "--opsmerge-profile=staging",
        "-k",
        "(test_bodies or test_conforms) and Ticket and not Time and not Rule",
    )
    assert result.ret == 0 and data["failures"] == []
    journal = served.admin.requests(limit=1000)
    tickets = [
        e
        for e in journal
        if e["method"] == "POST" and e["status"] == 201 and e["path"].endswith("/tickets")
    ]
    deleted = [e for e in journal if e["method"] == "DELETE" and e["status"] == 200]
    assert tickets and len(deleted) == len(tickets)
    with served.client() as client:
        assert client.get("/tickets", params={"per_page": 1}).json()["data"]["total"] == 45
    changed = [f"{e['method']} {e['path']}" for e in journal if e["method"] != "GET"]
    created = {e["path"] for e in tickets}
    assert not [p for p in changed if any(f"/{s}" in p for s in seeded)], changed
    assert not any("ticket-numbering" in e["path"] for e in journal if e["method"] != "GET")
    assert {left["collection"] for left in data["leftovers"]} == {"ticket_comments"}
    reasons = " ".join(s["reason"] for s in data["skipped"])
    assert "staging changes only records the run created" in reasons
    assert created


def test_a_served_sandbox_with_its_admin_token_is_not_paced_and_keeps_its_clock(
    pytester: pytest.Pytester, served: Sandbox
) -> None:
    served.reset()
    result, data = run(
        pytester,
        served,
        "--opsmerge-profile=sandbox",
        f"--opsmerge-admin-token={served.settings.admin_token}",
        "-k",
        "rate_limit_headers or test_pagination",
    )
    assert result.ret == 0 and data["failures"] == []
    assert data["operations"]["getCurrentIdentity"]["rate_limit_headers"] == "pass"
    assert data["stats"]["paced_seconds"] == 0
    assert served.admin.clock()["offset_seconds"] == 0

"""The fixtures integrators use in their own tests: `opsmerge_sandbox` (fresh, in-process or on
loopback, with keys, faults, clock and reset) and `opsmerge_client` / `opsmerge_contract`."""

from __future__ import annotations

import json
import time

import httpx
import pytest

from opsmerge_contracts.sandboxes import Sandbox

pytest_plugins = ["pytester"]


# --- the README's example: testing an integration's retry logic ---------------------------------


def fetch_open_tickets(client: httpx.Client, attempts: int = 4) -> list[dict]:
    """An integration's code under test: retries 429 and 5xx, honouring Retry-After."""
    for _ in range(attempts):
        response = client.get("/tickets", params={"status": "Open"})
        if response.status_code == 429 or response.status_code >= 500:
            time.sleep(float(response.headers.get("Retry-After", "1")))
            continue
        response.raise_for_status()
        return response.json()["data"]["items"]
    raise RuntimeError(f"gave up after {attempts} attempts")


@pytest.mark.opsmerge_sandbox(loopback=True)
def test_the_integration_retries_through_two_503s(opsmerge_sandbox: Sandbox) -> None:
    opsmerge_sandbox.admin.add_fault(
        {
            "match": {"operation_id": "listTickets"},
            "effect": {"status": 503, "retry_after": 0},
            "times": 2,
        }
    )
    key = opsmerge_sandbox.keys.owner.key
    with httpx.Client(
        base_url=opsmerge_sandbox.base_url, headers={"Authorization": f"Bearer {key}"}
    ) as client:
        tickets = fetch_open_tickets(client)
    assert tickets and {t["status"] for t in tickets} == {"Open"}
    calls = [
        e["status"] for e in opsmerge_sandbox.admin.requests() if e["operation_id"] == "listTickets"
    ]
    assert calls == [503, 503, 200]


@pytest.mark.opsmerge_sandbox(loopback=True)
def test_the_integration_gives_up_when_the_outage_lasts(opsmerge_sandbox: Sandbox) -> None:
    opsmerge_sandbox.admin.add_fault(
        {"match": {"operation_id": "listTickets"}, "effect": {"status": 503, "retry_after": 0}}
    )
    with opsmerge_sandbox.client() as client, pytest.raises(RuntimeError, match="gave up after 4"):
        fetch_open_tickets(client)


# --- the sandbox fixture ------------------------------------------------------------------------


def test_an_in_process_sandbox_has_keys_and_admin_control(opsmerge_sandbox: Sandbox) -> None:
    assert opsmerge_sandbox.base_url.endswith("/api/v1") and not opsmerge_sandbox.loopback
    keys = opsmerge_sandbox.keys
    assert (
        keys.owner.access == "full" and keys.limited.access == "custom" and keys.low_rate.rate_limit
    )
    with opsmerge_sandbox.client(keys.limited) as client:
        assert client.get("/clients").json()["error"]["code"] == "SCOPE_DENIED"
    before = opsmerge_sandbox.admin.clock()["offset_seconds"]
    opsmerge_sandbox.admin.advance_clock(90)
    assert opsmerge_sandbox.admin.clock()["offset_seconds"] == before + 90


@pytest.mark.opsmerge_sandbox(loopback=True)
def test_a_loopback_sandbox_answers_on_a_real_port(opsmerge_sandbox: Sandbox) -> None:
    assert opsmerge_sandbox.root_url.startswith("http://127.0.0.1:")
    key = opsmerge_sandbox.keys.owner.key
    response = httpx.get(
        f"{opsmerge_sandbox.base_url}/auth/me", headers={"Authorization": f"Bearer {key}"}
    )
    assert response.status_code == 200


FRESH = """
import pytest

DELETED = []

def test_a_deletes(opsmerge_sandbox):
    with opsmerge_sandbox.client() as c:
        # a New ticket has no answers and no time logged: nothing holds on to it
        new = c.get("/tickets", params={"status": "New"}).json()["data"]["items"]
        DELETED.append(new[0]["id"])
        assert c.delete(f"/tickets/{DELETED[0]}").status_code == 200
        assert c.get(f"/tickets/{DELETED[0]}").status_code == 404
    opsmerge_sandbox.admin.mint_key("temporary")

def test_b_sees_the_seeded_world_again(opsmerge_sandbox):
    with opsmerge_sandbox.client() as c:
        assert c.get(f"/tickets/{DELETED[0]}").status_code == 200
    names = [k["name"] for k in opsmerge_sandbox.admin._call("GET", "/keys")["items"]]
    assert "temporary" not in names

def test_c_shares_one_sandbox_across_the_session(opsmerge_sandbox_session, opsmerge_sandbox):
    assert opsmerge_sandbox_session is not opsmerge_sandbox
"""


def test_each_test_gets_a_fresh_sandbox(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_fresh=FRESH)
    pytester.runpytest_inprocess("-p", "no:cacheprovider", "-p", "no:randomly").assert_outcomes(
        passed=3
    )


# --- opsmerge_client and opsmerge_contract -------------------------------------------------------

CLIENT = """
import pytest

created = []

def test_client_is_bound_to_the_target_and_key(opsmerge_client, opsmerge_contract):
    response = opsmerge_client.get("/auth/me")
    assert response.status_code == 200
    assert response.json()["data"]["key"]["access"] == "full"
    opsmerge_contract.verify()

def test_what_a_failing_test_created_is_deleted(opsmerge_contract):
    listed = opsmerge_contract.call("GET", "/clients", params={"per_page": 1}).json()
    first = listed["data"]["items"][0]
    body = {"subject": "temp", "client_id": first["id"]}
    response = opsmerge_contract.call("POST", "/tickets", json=body)
    ticket = response.json()["data"]["id"]
    opsmerge_contract.track("tickets", ticket)
    comment = opsmerge_contract.call("POST", f"/tickets/{ticket}/comments", json={"body": "x"})
    opsmerge_contract.track("ticket_comments", comment.json()["data"]["id"])
    created.append(ticket)
    assert False, "this test fails after creating things"

def test_it_is_gone(opsmerge_client):
    assert opsmerge_client.get(f"/tickets/{created[0]}").status_code == 404

def test_the_budget_skips_rather_than_fails(opsmerge_client):
    for _ in range(100):
        opsmerge_client.get("/auth/me")
"""


def test_the_client_fixture_cleans_up_and_reports_leftovers(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_client=CLIENT)
    report = pytester.path / "r.json"
    result = pytester.runpytest_inprocess(
        "-p", "no:cacheprovider", "--opsmerge-budget=40", f"--opsmerge-report={report}", "-rs"
    )
    result.assert_outcomes(passed=2, failed=1, skipped=1)
    result.stdout.fnmatch_lines(["*the request budget of 40 is spent*"])
    data = json.loads(report.read_text())
    assert [left["collection"] for left in data["leftovers"]] == ["ticket_comments"]
    assert data["leftovers"][0]["by"].endswith("test_what_a_failing_test_created_is_deleted")


VERIFY = """
import pytest
from opsmerge_contracts.session import ContractFailure, OpsMergeStabilityWarning

def test_verify(opsmerge_client, opsmerge_contract):
    assert opsmerge_client.get("/domains", params={"per_page": 1}).status_code == 200
    with pytest.warns(OpsMergeStabilityWarning, match="listMonitoredDomains is beta"):
        opsmerge_contract.verify()
    opsmerge_contract.call("GET", "/tickets", role="well-formed", params={"per_page": 500})
    with pytest.raises(ContractFailure) as failure:
        opsmerge_contract.verify(exchanges=opsmerge_contract.exchanges[-1:])
    assert failure.value.check_ids == ["request_succeeds"]
"""


def test_verify_warns_about_beta_operations_and_fails_naming_the_check(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(test_verify=VERIFY)
    report = pytester.path / "r.json"
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider", f"--opsmerge-report={report}")
    result.assert_outcomes(passed=1)
    data = json.loads(report.read_text())
    assert data["warnings"][0]["operation"] == "listMonitoredDomains"
    assert [f["check"] for f in data["failures"]] == ["request_succeeds"]

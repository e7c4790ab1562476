"""A check switched off stops raising and stops running, and says so truthfully: its alert still
open or acknowledged is resolved in the same write (no disabled check of the seeded world has
one open), and its last run stays at the last run it showed. Before, the alert stayed open, and
`last_run_at`, which keeps pace with the clock while the check runs, fell back to its stored
value from the world's epoch (a month behind, on a clock a day on). Switched back on, it runs
again from then and keeps pace with the clock."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from litestar.testing import TestClient

from tests.conftest import advance_clock, at, bearer, every_record, key_named

API = "/api/v1"
UNRESOLVED = {"open", "acknowledged"}


def _owner(c: TestClient) -> dict[str, str]:
    return bearer(key_named(c.app, "Owner - full"))


def _workspace(c: TestClient) -> str:
    return str(c.headers["X-Sandbox-Workspace"])


def _alerted_check(c: TestClient, h: dict[str, str]) -> tuple[dict[str, Any], dict[str, Any]]:
    """A check that runs (on, on an agent online) with its alert still open, and the alert."""
    agents = {a["id"]: a for a in every_record(c, f"{API}/agents", h)}
    checks = {x["id"]: x for x in every_record(c, f"{API}/checks", h)}
    for alert in every_record(c, f"{API}/alerts", h):
        check = checks.get(alert["check_id"])
        if (alert["status"] in UNRESOLVED and check is not None and check["enabled"]
                and agents[check["agent_id"]]["status"] == "online"):
            return check, alert
    raise AssertionError("the seeded world has no running check with an alert open")


def _switch_off(c: TestClient, h: dict[str, str], check_id: str) -> dict[str, Any]:
    done = c.patch(f"{API}/checks/{check_id}", headers=h, json={"enabled": False})
    assert done.status_code == 200, done.text
    data: dict[str, Any] = done.json()["data"]
    return data


def test_switching_off_a_check_resolves_its_alert_still_open(fresh_client: TestClient) -> None:
    c, h = fresh_client, _owner(fresh_client)
    check, alert = _alerted_check(c, h)
    off = _switch_off(c, h, check["id"])
    resolved = c.get(f"{API}/alerts/{alert['id']}", headers=h).json()["data"]
    assert resolved["status"] == "resolved"
    assert resolved["resolved_at"] == resolved["updated_at"] == off["updated_at"]
    logged = every_record(c, f"{API}/audit-log", h, object_type="alert")
    assert any(e["object_id"] == alert["id"] and e["diff"]["status"][1] == "resolved"
               for e in logged)


def test_switching_off_a_check_keeps_the_last_run_it_showed(fresh_client: TestClient) -> None:
    c, h = fresh_client, _owner(fresh_client)
    check, _ = _alerted_check(c, h)
    advance_clock(c, _workspace(c), 86_400)  # a day on: the running check's last run kept pace
    shown = c.get(f"{API}/checks/{check['id']}", headers=h).json()["data"]["last_run_at"]
    off = _switch_off(c, h, check["id"])
    assert timedelta(0) <= at(off["last_run_at"]) - at(shown) <= timedelta(seconds=5)
    advance_clock(c, _workspace(c), 3_600)  # and it no longer runs
    later = c.get(f"{API}/checks/{check['id']}", headers=h).json()["data"]
    assert later["last_run_at"] == off["last_run_at"]


def test_a_change_that_leaves_a_check_on_leaves_it_running(fresh_client: TestClient) -> None:
    c, h = fresh_client, _owner(fresh_client)
    check, alert = _alerted_check(c, h)
    advance_clock(c, _workspace(c), 86_400)
    renamed = c.patch(f"{API}/checks/{check['id']}", headers=h, json={"threshold": 95})
    assert renamed.status_code == 200, renamed.text
    first = renamed.json()["data"]["last_run_at"]
    advance_clock(c, _workspace(c), 3_600)
    later = c.get(f"{API}/checks/{check['id']}", headers=h).json()["data"]["last_run_at"]
    assert at(later) - at(first) >= timedelta(minutes=59)  # still keeping pace with the clock
    still = c.get(f"{API}/alerts/{alert['id']}", headers=h).json()["data"]
    assert still["status"] in UNRESOLVED


def test_a_check_switched_back_on_runs_again_from_then(fresh_client: TestClient) -> None:
    c, h = fresh_client, _owner(fresh_client)
    check, _ = _alerted_check(c, h)
    advance_clock(c, _workspace(c), 86_400)
    off = _switch_off(c, h, check["id"])
    advance_clock(c, _workspace(c), 3_600)  # an hour off: it did not run
    again = c.patch(f"{API}/checks/{check['id']}", headers=h, json={"enabled": True})
    assert again.status_code == 200, again.text
    on = again.json()["data"]
    assert at(on["last_run_at"]) - at(off["last_run_at"]) >= timedelta(minutes=59)
    advance_clock(c, _workspace(c), 600)  # and keeps running
    later = c.get(f"{API}/checks/{check['id']}", headers=h).json()["data"]["last_run_at"]
    assert at(later) - at(on["last_run_at"]) >= timedelta(minutes=9)

"""Seeded time entries record the kind of work their ticket needs: nobody travels to site to
reset a password or logs project work on a phishing report, and the checker says so when they do."""

from __future__ import annotations

import copy
from typing import Any

from opsmerge_sandbox.spec import Spec
from tests.conftest import violations

World = dict[str, list[dict[str, Any]]]
HARDWARE = {
    "Printer offline on second floor",
    "New starter laptop setup",
    "Replace failing UPS battery",
    "Slow Wi-Fi in meeting room",
}
PROJECTS = {"New starter laptop setup", "Disk space low on file server", "Server patching window"}


def _work(world: World) -> list[tuple[str, str, str]]:
    subjects = {t["id"]: t["subject"] for t in world["tickets"]}
    return [(e["id"], e["service"], subjects[e["ticket_id"]]) for e in world["time_entries"]]


def test_onsite_time_is_logged_only_on_tickets_about_hardware(seeded_world: World) -> None:
    work = _work(seeded_world)
    assert [w for w in work if w[1] == "Onsite support" and w[2] not in HARDWARE] == []
    assert sum(w[1] == "Onsite support" for w in work) > 20  # enough to judge


def test_project_work_is_logged_only_on_tickets_that_are_projects(seeded_world: World) -> None:
    work = _work(seeded_world)
    assert [w for w in work if w[1] == "Project work" and w[2] not in PROJECTS] == []
    assert sum(w[1] == "Project work" for w in work) > 20


def test_every_time_entry_note_is_a_sentence(seeded_world: World) -> None:
    notes = {e["notes"] for e in seeded_world["time_entries"] if e["notes"]}
    assert [n for n in notes if not (n[0].isupper() and n.endswith("."))] == []


def test_the_checker_names_onsite_time_on_a_password_reset(spec: Spec, seeded_world: World) -> None:
    bad = copy.deepcopy(seeded_world)
    resets = {t["id"] for t in bad["tickets"] if t["subject"] == "MFA reset for user"}
    entry = next(e for e in bad["time_entries"] if e["ticket_id"] in resets)
    entry["service"] = "Onsite support"
    assert (entry["id"], "onsite-for-hardware") in violations(spec, bad)

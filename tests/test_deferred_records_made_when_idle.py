"""Deferred records (an audit log's entries) are made while the sandbox is idle, a slice at a
time, so the first read of a large log no longer holds every request behind it; a server kept
busy makes none of them and leaves them to the read, as before."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import pytest
from litestar.testing import TestClient

from opsmerge_sandbox.app import create_app
from opsmerge_sandbox.settings import Settings
from opsmerge_sandbox.store.idle_making import IdleMaking
from opsmerge_sandbox.store.persistence import DeltaStore
from opsmerge_sandbox.store.workspace import Workspaces
from tests.conftest import bearer, every_record, key_named
from tests.test_store_deferred_records import FailsOnce, Maker, _bases, _write_with_note

API = "/api/v1"


def _deferred_notes(count: int) -> tuple[Workspaces, Maker]:
    records = Workspaces(_bases(), DeltaStore(None))
    ws = records.get()
    make = Maker()
    for i in range(count):
        _write_with_note(ws, make, i)
    return records, make


def test_an_idle_sandbox_makes_deferred_records_a_slice_at_a_time_in_commit_order() -> None:
    records, make = _deferred_notes(5)
    ws = records.get()
    seqs = {f"nte_new{i}": ws.view("notes").seq_of(f"nte_new{i}") for i in range(5)}
    idle = IdleMaking(records, idle_after=0.25, slice=2)
    quiet = records.last_used() + 1.0
    assert [idle.step(quiet) for _ in range(4)] == [2, 2, 1, 0]
    assert make.calls == [f"nte_new{i}" for i in range(5)]
    view = ws.view("notes")
    assert not view.deferred
    assert {rid: view.seq_of(rid) for rid in seqs} == seqs  # numbered as they were committed
    assert [r["id"] for r in view.query([], None, "id", False)] == [
        "nte_0", *(f"nte_new{i}" for i in range(5))
    ]
    assert make.calls == [f"nte_new{i}" for i in range(5)]  # the read made nothing again
    assert idle.made == 5
    assert not ws.deferring


def test_a_sandbox_used_within_the_idle_time_makes_nothing() -> None:
    records, make = _deferred_notes(3)
    idle = IdleMaking(records, idle_after=0.25)
    assert idle.step(records.last_used() + 0.1) == 0
    records.get()  # a request uses the workspace: the idle time starts again
    assert idle.step(records.last_used() + 0.2) == 0
    assert make.calls == []
    assert len(records.get().view("notes").deferred) == 3


def test_a_read_between_slices_sees_every_record_once_and_in_order() -> None:
    records, make = _deferred_notes(4)
    idle = IdleMaking(records, idle_after=0.0, slice=1)
    assert idle.step(records.last_used()) == 1
    ws = records.get()
    assert ws.get("notes", "nte_new3") == {"id": "nte_new3", "of": "thg_new3"}
    assert make.calls == ["nte_new0", "nte_new1", "nte_new2", "nte_new3"]
    assert idle.step(records.last_used()) == 0


def test_records_are_made_across_workspaces_within_one_slice() -> None:
    records = Workspaces(_bases(), DeltaStore(None))
    make = Maker()
    for name in ("alpha", "beta"):
        ws = records.get(name)
        for i in range(3):
            _write_with_note(ws, make, i)
    idle = IdleMaking(records, idle_after=0.0, slice=4)
    assert idle.step(records.last_used()) == 4
    assert sum(len(records.get(n).view("notes").deferred) for n in ("alpha", "beta")) == 2
    assert idle.step(records.last_used()) == 2
    assert len(make.calls) == 6


def test_a_making_that_fails_ends_the_idle_work_and_leaves_the_records_to_the_read(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A deferred record whose making fails stops the background work (it would fail again on
    every quiet moment) without an error escaping the task; it and the records after it stay
    deferred, and the read that needs them makes them (and reports any failure itself)."""
    records = Workspaces(_bases(), DeltaStore(None))
    ws = records.get()
    make = FailsOnce("nte_new1")
    for i in range(3):
        _write_with_note(ws, make, i)
    idle = IdleMaking(records, idle_after=0.0, interval=0.01, slice=10)

    async def work() -> None:
        await asyncio.wait_for(idle.run(), timeout=5)

    with caplog.at_level(logging.ERROR, logger="opsmerge_sandbox.store.idle_making"):
        asyncio.run(work())  # returns: the task ends, no exception
    assert "making deferred records failed" in caplog.text
    assert list(ws.view("notes").deferred) == ["nte_new1", "nte_new2"]
    assert ws.get("notes", "nte_new2") == {"id": "nte_new2", "of": "thg_new2"}
    assert make.calls == ["nte_new0", "nte_new1", "nte_new2"]


def test_a_served_sandbox_makes_its_audit_entries_once_no_request_comes(app: Any) -> None:
    """A real app's lifespan: creates defer their entries; once the sandbox is quiet they are
    made in the background, and the log then reads them as it would have made them."""
    idle = app.state.idle_making
    assert isinstance(idle, IdleMaking)
    workspace = "test-idle-making"
    with TestClient(app, base_url="http://sandbox.local") as c:
        c.headers.update({"X-Sandbox-Workspace": workspace})
        h = bearer(key_named(app, "Owner - full"))
        bodies = [{"subject": f"Idle {i}", "client_id": "cli_acme"} for i in range(12)]
        made = [c.post(f"{API}/tickets", headers=h, json=body) for body in bodies]
        assert [r.status_code for r in made] == [201] * 12
        ids = [r.json()["data"]["id"] for r in made]
        records = app.state.sandbox.workspaces
        ws = records.existing(workspace)  # looked at without using it (using it is a request)
        assert ws is not None
        deadline = time.monotonic() + 10
        while ws.view("audit_log").deferred and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not ws.view("audit_log").deferred, "nothing was made while the sandbox was idle"
        entries = every_record(c, f"{API}/audit-log", h, action="ticket.created")
        by_ticket = {e["object_id"]: e for e in entries}
        assert set(ids) <= set(by_ticket)
        for i, tid in enumerate(ids):
            assert by_ticket[tid]["diff"]["subject"] == [None, f"Idle {i}"]


def test_a_data_directory_has_nothing_deferred_and_runs_no_idle_making(tmp_path: Any) -> None:
    app = create_app(Settings(data_dir=tmp_path))
    assert app.state.idle_making is None

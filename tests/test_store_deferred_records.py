"""A record written far more often than read (an audit log's entry) is committed as the call that
makes it, and made when its collection is first read.

In memory a write's audit entry kept the whole entry from the start: a dictionary of its fields,
a diff of pairs and a second staged write, most of what a create keeps (~1.4 of ~2.3 KB) and a
quarter of its time. Deferred, a commit keeps the call and its arguments; the first read of the
collection makes every deferred record, in commit order, numbered as they were committed. A store
that writes every record somewhere (a data directory, shared state) makes it at commit and stores
it like any other.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import TestClient

from opsmerge_sandbox.store.base import BaseCollection
from opsmerge_sandbox.store.persistence import DeltaStore
from opsmerge_sandbox.store.workspace import Workspace, Workspaces
from tests.conftest import bearer, every_record, key_named

API = "/api/v1"


def _bases() -> dict[str, BaseCollection]:
    return {
        "things": BaseCollection("things", [{"id": f"thg_{i}", "n": i} for i in range(3)]),
        "notes": BaseCollection("notes", [{"id": "nte_0", "of": "thg_0"}]),
    }


class Maker:
    """Makes a note record and counts the calls."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def __call__(self, record_id: str, of: str) -> dict[str, Any]:
        self.calls.append(record_id)
        return {"id": record_id, "of": of}


def _write_with_note(ws: Workspace, make: Maker, i: int) -> None:
    ws.begin()
    ws.write("things", {"id": f"thg_new{i}", "n": 10 + i})
    ws.defer("notes", f"nte_new{i}", make, f"nte_new{i}", f"thg_new{i}")
    ws.commit()


def test_a_deferred_record_is_made_on_the_first_read_of_its_collection_and_once() -> None:
    ws = Workspaces(_bases(), DeltaStore(None)).get()
    make = Maker()
    for i in range(3):
        _write_with_note(ws, make, i)
    view = ws.view("notes")
    assert make.calls == []
    assert view.count() == 4  # counted without being made
    assert ws.get("things", "thg_new2") == {"id": "thg_new2", "n": 12}
    assert make.calls == []  # another collection's read makes nothing
    assert ws.get("notes", "nte_new1") == {"id": "nte_new1", "of": "thg_new1"}
    assert make.calls == ["nte_new0", "nte_new1", "nte_new2"]  # all of them, in commit order
    assert [r["id"] for r in view.query([], None, "id", False)] == [
        "nte_0", "nte_new0", "nte_new1", "nte_new2"
    ]
    assert make.calls == ["nte_new0", "nte_new1", "nte_new2"]


def test_deferred_records_are_numbered_in_commit_order_among_written_ones() -> None:
    ws = Workspaces(_bases(), DeltaStore(None)).get()
    make = Maker()
    _write_with_note(ws, make, 0)
    # committed at once (its apply makes the one deferred before it, keeping the order)
    ws.write("notes", {"id": "nte_written", "of": "thg_1"})
    _write_with_note(ws, make, 1)
    view = ws.view("notes")
    assert make.calls == ["nte_new0"]
    # one seeded note, then the three created ones in order, the last still deferred
    assert [view.seq_of(i) for i in ("nte_new0", "nte_written", "nte_new1")] == [2, 3, 4]
    view.settle()
    assert [view.seq_of(i) for i in ("nte_new0", "nte_written", "nte_new1")] == [2, 3, 4]
    assert list(view.created) == ["nte_new0", "nte_written", "nte_new1"]


@pytest.mark.parametrize("reader", ["get", "query", "written", "is_new"])
def test_every_read_sees_a_deferred_record(reader: str) -> None:
    ws = Workspaces(_bases(), DeltaStore(None)).get()
    _write_with_note(ws, Maker(), 0)
    view = ws.view("notes")
    seen = {
        "get": lambda: view.get("nte_new0") is not None,
        "query": lambda: "nte_new0" in {r["id"] for r in view.query([], None, "id", False)},
        "written": lambda: "nte_new0" in {r["id"] for r in view.written()},
        # a write of a deferred id changes the record: it does not create a second one
        "is_new": lambda: not view.is_new("nte_new0"),
    }[reader]
    assert seen()


def test_a_dropped_transaction_makes_nothing_and_numbers_nothing() -> None:
    ws = Workspaces(_bases(), DeltaStore(None)).get()
    make = Maker()
    transaction = ws.begin()
    ws.defer("notes", "nte_dropped", make, "nte_dropped", "thg_0")
    ws.rollback(transaction)
    _write_with_note(ws, make, 0)
    view = ws.view("notes")
    assert view.get("nte_dropped") is None
    assert [r["id"] for r in view.written()] == ["nte_new0"]
    assert make.calls == ["nte_new0"]
    assert view.seq_of("nte_new0") == 2


def test_defer_outside_a_transaction_is_refused() -> None:
    ws = Workspaces(_bases(), DeltaStore(None)).get()
    with pytest.raises(RuntimeError):
        ws.defer("notes", "nte_x", Maker(), "nte_x", "thg_0")


def test_a_data_directory_gets_a_deferred_record_made_at_commit_and_keeps_it(
    tmp_path: Path,
) -> None:
    async def run() -> None:
        store = DeltaStore(tmp_path)
        ws = Workspaces(_bases(), store).get()
        make = Maker()
        ws.begin()
        ws.write("things", {"id": "thg_new0", "n": 10})
        ws.defer("notes", "nte_new0", make, "nte_new0", "thg_new0")
        await ws.commit()
        assert make.calls == ["nte_new0"]  # made at commit, as the log needs the record
        await store.close()
        reopened = Workspaces(_bases(), DeltaStore(tmp_path)).get()
        assert reopened.get("notes", "nte_new0") == {"id": "nte_new0", "of": "thg_new0"}

    asyncio.run(run())


def test_a_creations_entry_shows_the_record_as_created_though_it_changed_since(
    fresh_client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The entry of a create is made when the log is read, from the record the create stored:
    a later update stores a new record, so the entry still shows what the create set."""
    c = fresh_client
    # not made in a quiet moment of this test either (`store/idle_making.py`)
    monkeypatch.setattr(c.app.state.idle_making, "idle_after", float("inf"))
    h = bearer(key_named(c.app, "Owner - full"))
    ws = c.app.state.sandbox.workspaces.get(c.headers["X-Sandbox-Workspace"])
    body = {"subject": "Printer jam", "client_id": "cli_acme"}
    made = c.post(f"{API}/tickets", headers=h, json=body)
    assert made.status_code == 201, made.text
    ticket = made.json()["data"]
    assert ws.view("audit_log").deferred  # not made yet
    changed = c.patch(f"{API}/tickets/{ticket['id']}", headers=h, json={"subject": "Paper jam"})
    assert changed.status_code == 200, changed.text
    entries = {
        e["action"]: e
        for e in every_record(c, f"{API}/audit-log", h, object_id=ticket["id"])
    }
    assert entries["ticket.created"]["diff"]["subject"] == [None, "Printer jam"]
    assert entries["ticket.modified"]["diff"] == {"subject": ["Printer jam", "Paper jam"]}
    assert not ws.view("audit_log").deferred


class FailsOnce(Maker):
    """A maker whose call for one id fails the first time."""

    def __init__(self, failing: str) -> None:
        super().__init__()
        self.failing: str | None = failing

    def __call__(self, record_id: str, of: str) -> dict[str, Any]:
        if record_id == self.failing:
            self.failing = None
            raise ValueError(f"cannot make {record_id}")
        return super().__call__(record_id, of)


def test_a_failed_making_leaves_that_record_and_the_later_ones_for_the_next_read() -> None:
    ws = Workspaces(_bases(), DeltaStore(None)).get()
    make = FailsOnce("nte_new1")
    for i in range(3):
        _write_with_note(ws, make, i)
    view = ws.view("notes")
    with pytest.raises(ValueError):
        view.written()
    assert make.calls == ["nte_new0"] and list(view.deferred) == ["nte_new1", "nte_new2"]
    assert [r["id"] for r in view.written()] == ["nte_new0", "nte_new1", "nte_new2"]
    assert [view.seq_of(f"nte_new{i}") for i in range(3)] == [2, 3, 4]


def test_a_failed_making_at_commit_drops_the_commit_and_its_numbers(tmp_path: Path) -> None:
    async def run() -> None:
        store = DeltaStore(tmp_path)
        ws = Workspaces(_bases(), store).get()
        ws.begin()
        ws.write("things", {"id": "thg_new0", "n": 10})
        ws.defer("notes", "nte_new0", FailsOnce("nte_new0"), "nte_new0", "thg_new0")
        with pytest.raises(ValueError):
            ws.commit()
        assert not ws.in_transaction and ws.get("things", "thg_new0") is None
        await ws.write("things", {"id": "thg_next", "n": 11})
        assert ws.view("things").seq_of("thg_next") == 4  # the dropped creation's number is free
        await store.close()

    asyncio.run(run())


def test_with_a_data_directory_an_entry_is_made_and_staged_with_its_write(tmp_path: Path) -> None:
    """A store that writes every record makes it at commit anyway: the audit trail stages its
    entries at once there, as it did before deferring (fewer steps for the same record)."""
    from tests.conftest import make_app

    assert Workspaces(_bases(), DeltaStore(None)).get().defers
    with TestClient(make_app(data_dir=tmp_path)) as c:
        h = bearer(key_named(c.app, "Owner - full"))
        ws = c.app.state.sandbox.workspaces.get()
        assert not ws.defers
        made = c.post(f"{API}/tickets", headers=h, json={"subject": "Jam", "client_id": "cli_acme"})
        assert made.status_code == 201, made.text
        log = ws.view("audit_log")
        assert not log.deferred
        entries = [e for e in log.created.values() if e["object_id"] == made.json()["data"]["id"]]
        assert [e["action"] for e in entries] == ["ticket.created"]

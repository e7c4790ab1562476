"""Acknowledged means durable: a change reaches memory only once the store holds it.

A write the store cannot save (full disk, read-only directory, I/O error) answers 503
STORE_UNAVAILABLE and leaves nothing behind: not in the views, not in the store's cached document
(from where the next successful write would save it), not on disk. A transaction's changes become
durable and visible together, or not at all.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import errno
import functools
import json
import os
import resource
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from opsmerge_sandbox.errors import ApiError
from opsmerge_sandbox.store.base import BaseCollection
from opsmerge_sandbox.store.persistence import ChangeLog, DeltaStore
from opsmerge_sandbox.store.workspace import Workspace, Workspaces
from tests.conftest import ADMIN_TOKEN, free_port, key_named, make_app

# ---------------------------------------------------------------------------- unit level


class Disk:
    """Makes the store's file writes fail on demand, as a full disk does, and counts the others."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.full = False
        self.writes = 0
        real = ChangeLog.append

        def write(storage: ChangeLog, data: bytes) -> None:
            if self.full:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            real(storage, data)
            self.writes += 1

        monkeypatch.setattr(ChangeLog, "append", write)


@pytest.fixture()
def disk(monkeypatch: pytest.MonkeyPatch) -> Disk:
    return Disk(monkeypatch)


def _bases() -> dict[str, BaseCollection]:
    return {
        "things": BaseCollection("things", [{"id": f"thg_{i}", "n": i} for i in range(3)]),
        "events": BaseCollection("events", [{"id": f"evt_{i}", "n": i} for i in range(2)]),
    }


def in_loop(test: Callable[..., Coroutine[Any, Any, None]]) -> Callable[..., None]:
    """Runs an async test in a fresh event loop (the store writes from the loop)."""

    @functools.wraps(test)
    def run(*args: Any, **kwargs: Any) -> None:
        asyncio.run(test(*args, **kwargs))

    return run


def _open(data_dir: Path) -> Workspace:
    ws = Workspaces(_bases(), DeltaStore(data_dir)).get("default")
    ws.view("things")
    ws.view("events")
    return ws


def _memory(ws: Workspace) -> dict[str, Any]:
    """Everything a workspace holds in memory about its changes."""
    return {
        name: copy.deepcopy(
            (v.overrides, v.created, v.created_count, v.seqs, v.version, v.count())
        )
        for name, v in ws.views.items()
    }


def _records(ws: Workspace) -> dict[str, Any]:
    """What clients can read, with each record's sequence number."""
    out = {}
    for name, view in ws.views.items():
        found = view.query([], None, "id", False, volatile=True)
        out[name] = {r["id"]: (r, view.seq_of(r["id"])) for r in found}
    return out


def _cached(ws: Workspace) -> Any:
    return copy.deepcopy(ws._delta.document)


def _on_disk(data_dir: Path) -> dict[str, bytes]:
    """The store's files: the snapshot, and the change log once something was written."""
    return {p.name: p.read_bytes() for p in data_dir.iterdir()}


async def _refused(action: Callable[[], Awaitable[None]]) -> ApiError:
    with pytest.raises(ApiError) as caught:
        await action()
    assert caught.value.code == "STORE_UNAVAILABLE" and caught.value.status == 503
    assert "No space left on device" in caught.value.message
    return caught.value


async def _attempt_every_kind_of_change(ws: Workspace) -> None:
    """Create, change a seeded and a created record, delete both kinds: each refused."""
    await _refused(lambda: ws.write("things", {"id": "thg_failed", "n": -1}))
    await _refused(lambda: ws.write("things", {"id": "thg_1", "n": -1}))
    await _refused(lambda: ws.write("things", {"id": "thg_made", "n": -1}))
    await _refused(lambda: ws.delete("things", "thg_2"))
    await _refused(lambda: ws.delete("things", "thg_made"))


@in_loop
async def test_a_write_the_store_cannot_save_is_refused_and_changes_nothing_in_memory(
    tmp_path: Path, disk: Disk
) -> None:
    ws = _open(tmp_path)
    await ws.write("things", {"id": "thg_0", "n": 100})
    await ws.write("things", {"id": "thg_made", "n": 7})
    memory, cached, on_disk = _memory(ws), _cached(ws), _on_disk(tmp_path)
    disk.full = True
    await _attempt_every_kind_of_change(ws)
    assert _memory(ws) == memory
    assert _cached(ws) == cached  # the store's own copy, which the next write would save
    assert _on_disk(tmp_path) == on_disk
    # the snapshot and the change log, and no temp files left
    assert sorted(p.name for p in tmp_path.iterdir()) == ["delta.json", "delta.log"]


@in_loop
async def test_a_failed_write_is_not_saved_by_a_later_successful_one(
    tmp_path: Path, disk: Disk
) -> None:
    ws = _open(tmp_path)
    await ws.write("things", {"id": "thg_made", "n": 7})
    disk.full = True
    await _attempt_every_kind_of_change(ws)
    disk.full = False
    await ws.write("events", {"id": "evt_after", "n": 9})
    await ws._delta.compact()  # the log folded into the snapshot, which is then read
    stored = json.loads((tmp_path / "delta.json").read_text())
    docs = {(d["collection"], d["id"]): d["record"] for t in stored.values() for d in t.values()}
    assert docs == {
        ("things", "thg_made"): {"id": "thg_made", "n": 7},
        ("events", "evt_after"): {"id": "evt_after", "n": 9},
    }
    again = _open(tmp_path)
    assert _records(again) == _records(ws)
    assert again.get("things", "thg_failed") is None
    assert again.get("things", "thg_1") == {"id": "thg_1", "n": 1}


@in_loop
async def test_a_refused_creation_gives_its_sequence_number_to_the_next_one(
    tmp_path: Path, disk: Disk
) -> None:
    ws = _open(tmp_path)
    view = ws.view("things")
    disk.full = True
    await _refused(lambda: ws.write("things", {"id": "thg_failed", "n": -1}))
    disk.full = False
    await ws.write("things", {"id": "thg_next", "n": 1})
    assert view.seq_of("thg_next") == len(view.base) + 1 and view.created_count == 1
    assert _open(tmp_path).view("things").seq_of("thg_next") == len(view.base) + 1


@in_loop
async def test_a_rename_that_cannot_be_made_durable_is_undone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A new file whose directory entry may not survive is taken back: here the change log a
    write starts after a compaction removed the last one."""
    ws = _open(tmp_path)
    await ws.write("things", {"id": "thg_made", "n": 7})
    await ws._delta.compact()
    on_disk, cached, memory = _on_disk(tmp_path), _cached(ws), _memory(ws)
    real_fsync = os.fsync
    failures: list[int] = []

    def fsync(fd: int) -> None:
        if stat.S_ISDIR(os.fstat(fd).st_mode) and not failures:
            failures.append(fd)
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    with pytest.raises(ApiError) as caught:
        await ws.write("things", {"id": "thg_failed", "n": -1})
    assert caught.value.code == "STORE_UNAVAILABLE" and failures
    assert _on_disk(tmp_path) == on_disk
    assert _cached(ws) == cached and _memory(ws) == memory
    assert _open(tmp_path).get("things", "thg_failed") is None


@in_loop
async def test_a_reset_the_store_cannot_save_keeps_every_workspace(
    tmp_path: Path, disk: Disk
) -> None:
    bases = _bases()
    spaces = Workspaces(bases, DeltaStore(tmp_path))
    await spaces.get("default").write("things", {"id": "thg_a", "n": 1})
    await spaces.get("ci").write("things", {"id": "thg_b", "n": 2})
    disk.full = True
    with pytest.raises(ApiError) as caught:
        await spaces.reset()
    assert caught.value.code == "STORE_UNAVAILABLE"
    disk.full = False
    # saves what memory has
    await spaces.get("default").write("events", {"id": "evt_later", "n": 3})
    again = Workspaces(_bases(), DeltaStore(tmp_path))
    assert again.get("default").get("things", "thg_a") == {"id": "thg_a", "n": 1}
    assert again.get("ci").get("things", "thg_b") == {"id": "thg_b", "n": 2}
    await spaces.reset("ci")
    assert Workspaces(_bases(), DeltaStore(tmp_path)).names() == ["default"]


# ---------------------------------------------------------------------------- transactions


@in_loop
async def test_a_transaction_saves_all_its_changes_with_one_write(
    tmp_path: Path, disk: Disk
) -> None:
    ws = _open(tmp_path)
    before = disk.writes
    ws.begin()
    await ws.write("things", {"id": "thg_1", "n": 11})
    await ws.write("events", {"id": "evt_new", "n": 5})
    await ws.delete("events", "evt_0")
    # nothing is visible or stored until commit
    assert ws.get("things", "thg_1") == {"id": "thg_1", "n": 1}
    assert ws.get("events", "evt_new") is None and ws.get("events", "evt_0") is not None
    assert disk.writes == before
    await ws.commit()
    assert disk.writes == before + 1
    assert ws.get("things", "thg_1") == {"id": "thg_1", "n": 11}
    assert ws.get("events", "evt_new") == {"id": "evt_new", "n": 5}
    assert ws.get("events", "evt_0") is None
    assert _records(_open(tmp_path)) == _records(ws)


@in_loop
async def test_a_transaction_the_store_cannot_save_applies_none_of_it(
    tmp_path: Path, disk: Disk
) -> None:
    ws = _open(tmp_path)
    await ws.write("events", {"id": "evt_made", "n": 1})
    memory, cached = _memory(ws), _cached(ws)
    ws.begin()
    await ws.write("things", {"id": "thg_1", "n": 11})
    await ws.write("events", {"id": "evt_a", "n": 2})
    await ws.write("events", {"id": "evt_b", "n": 3})
    await ws.delete("events", "evt_made")
    disk.full = True
    await _refused(ws.commit)
    assert not ws.in_transaction
    assert _memory(ws) == memory and _cached(ws) == cached
    disk.full = False
    await ws.write("events", {"id": "evt_c", "n": 4})
    events = ws.view("events")
    assert events.seq_of("evt_c") == len(events.base) + 2  # the next number after evt_made
    assert _records(_open(tmp_path)) == _records(ws)


@in_loop
async def test_rollback_drops_the_staged_changes_and_their_numbers(
    tmp_path: Path, disk: Disk
) -> None:
    ws = _open(tmp_path)
    memory, before = _memory(ws), disk.writes
    transaction = ws.begin()
    await ws.write("events", {"id": "evt_a", "n": 2})
    await ws.write("things", {"id": "thg_0", "n": 10})
    ws.rollback(transaction)
    assert _memory(ws) == memory and disk.writes == before and not ws.in_transaction
    ws.rollback(transaction)  # nothing open: nothing to do
    await ws.write("events", {"id": "evt_b", "n": 3})
    assert ws.view("events").seq_of("evt_b") == len(ws.view("events").base) + 1


@in_loop
async def test_a_transaction_is_dropped_or_committed_only_by_the_request_that_opened_it(
    tmp_path: Path, disk: Disk
) -> None:
    ws = _open(tmp_path)
    first = ws.begin()
    await ws.write("events", {"id": "evt_a", "n": 2})
    await ws.commit()
    second = ws.begin()  # the next writer's, opened while the first still finishes its request
    await ws.write("events", {"id": "evt_b", "n": 3})
    assert ws.owns(second) and not ws.owns(first) and not ws.owns(None)
    ws.rollback(first)  # the first request's clean-up: its own transaction is long committed
    assert ws.in_transaction and ws.owns(second)
    await ws.commit()
    assert ws.get("events", "evt_b") == {"id": "evt_b", "n": 3}
    third = ws.begin()
    await ws.write("events", {"id": "evt_c", "n": 4})
    ws.rollback(None)  # a request that opened none (a read) ends meanwhile: nothing is dropped
    assert ws.in_transaction and ws.owns(third)
    ws.rollback(third)
    assert not ws.in_transaction and ws.get("events", "evt_c") is None
    assert _records(_open(tmp_path)) == _records(ws)


@in_loop
async def test_a_lone_write_that_fails_on_the_way_leaves_no_transaction_open(
    tmp_path: Path,
) -> None:
    ws = _open(tmp_path)
    with pytest.raises(KeyError):
        ws.write("no_such_collection", {"id": "x_1"})  # outside any transaction
    assert not ws.in_transaction and ws.transaction is None
    ws.begin()  # the next writer is not refused
    await ws.write("events", {"id": "evt_after", "n": 1})
    await ws.commit()
    assert _records(_open(tmp_path)) == _records(ws)


@in_loop
async def test_creations_in_one_transaction_get_consecutive_numbers(tmp_path: Path) -> None:
    ws = _open(tmp_path)
    events = ws.view("events")
    first = len(events.base) + 1
    ws.begin()
    await ws.write("events", {"id": "evt_a", "n": 1})
    assert events.created_count == 1  # what the next creation's number is computed from
    await ws.write("events", {"id": "evt_b", "n": 2})
    ws.write("events", {"id": "evt_a", "n": 10})  # a change to a staged creation keeps its number
    assert (events.seq_of("evt_a"), events.seq_of("evt_b")) == (first, first + 1)
    await ws.commit()
    assert (events.seq_of("evt_a"), events.seq_of("evt_b")) == (first, first + 1)
    assert events.created_count == 2 and events.get("evt_a") == {"id": "evt_a", "n": 10}
    again = _open(tmp_path)
    assert _records(again) == _records(ws)
    await again.write("events", {"id": "evt_c", "n": 3})
    assert again.view("events").seq_of("evt_c") == first + 2


@in_loop
async def test_a_record_created_and_deleted_in_one_transaction_keeps_only_its_number(
    tmp_path: Path,
) -> None:
    ws = _open(tmp_path)
    events = ws.view("events")
    ws.begin()
    await ws.write("events", {"id": "evt_gone", "n": 1})
    await ws.delete("events", "evt_gone")
    await ws.commit()
    assert events.get("evt_gone") is None and events.count() == len(events.base)
    await ws.write("events", {"id": "evt_next", "n": 2})
    assert events.seq_of("evt_next") == len(events.base) + 2
    again = _open(tmp_path)
    assert again.get("events", "evt_gone") is None
    assert again.view("events").seq_of("evt_next") == len(events.base) + 2


@in_loop
async def test_a_second_begin_is_refused_while_a_transaction_is_open(tmp_path: Path) -> None:
    ws = _open(tmp_path)
    transaction = ws.begin()
    with pytest.raises(RuntimeError, match="already has an open transaction"):
        ws.begin()
    ws.rollback(transaction)
    ws.begin()
    await ws.commit()


def test_writes_in_memory_mode_need_no_disk() -> None:
    ws = Workspace("default", _bases(), DeltaStore(None))
    ws.begin()
    ws.write("things", {"id": "thg_new", "n": 1})
    ws.commit()  # in memory a commit is done when it returns: nothing to wait for
    ws.write("things", {"id": "thg_0", "n": 5})
    assert ws.get("things", "thg_new") and ws.get("things", "thg_0") == {"id": "thg_0", "n": 5}


# ---------------------------------------------------------------------------- a real full disk

CLI = str(Path(sys.executable).parent / "opsmerge-sandbox")
STORE_LIMIT = 48 * 1024  # bytes the store may grow to before writes fail


class FullDisk:
    """A data directory that runs out of space for real, and a way to make room again."""

    def __init__(self, kind: str, root: Path) -> None:
        self.kind = kind
        self.data_dir = root / "data"
        self.data_dir.mkdir()

    @contextlib.contextmanager
    def mounted(self) -> Iterator[FullDisk]:
        if self.kind != "tmpfs":
            yield self
            return
        made = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={STORE_LIMIT * 2}", "tmpfs", str(self.data_dir)],
            capture_output=True,
            text=True,
        )
        if made.returncode != 0:
            pytest.skip(f"cannot mount a small tmpfs here: {made.stderr.strip()}")
        try:
            yield self
        finally:
            subprocess.run(["umount", "-l", str(self.data_dir)], check=False)

    def preexec(self) -> Callable[[], None] | None:
        """For the file-size limit: the sandbox's writes past it fail with EFBIG."""
        if self.kind != "rlimit":
            return None

        def limit() -> None:
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
            resource.setrlimit(resource.RLIMIT_FSIZE, (STORE_LIMIT, resource.RLIM_INFINITY))

        return limit

    def make_room(self, pid: int) -> None:
        if self.kind == "tmpfs":
            subprocess.run(
                ["mount", "-o", "remount,size=8m", str(self.data_dir)], check=True
            )
        else:
            unlimited = (resource.RLIM_INFINITY, resource.RLIM_INFINITY)
            resource.prlimit(pid, resource.RLIMIT_FSIZE, unlimited)


@contextlib.contextmanager
def _sandbox(data_dir: Path, log: Path, preexec: Callable[[], None] | None = None) -> Iterator[
    tuple[subprocess.Popen[bytes], httpx.Client]
]:
    """`opsmerge-sandbox serve` on the data dir, in its own process, with a client for it."""
    port = free_port()
    cmd = [CLI, "serve", "--data-dir", str(data_dir), "--port", str(port), "--rate-limit", "100000"]
    env = {**os.environ, "OPSMERGE_SANDBOX_ADMIN_TOKEN": ADMIN_TOKEN}
    with log.open("ab") as err:
        proc = subprocess.Popen(
            cmd, env=env, stdout=subprocess.DEVNULL, stderr=err, preexec_fn=preexec
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, "the sandbox did not start"
            try:
                if httpx.get(url + "/healthz", timeout=0.5).is_success:
                    break
            except httpx.HTTPError:
                time.sleep(0.05)
        with httpx.Client(base_url=url, timeout=10) as client:
            yield proc, client
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _names(client: httpx.Client, h: dict[str, str], needle: str) -> list[str]:
    r = client.get("/api/v1/clients", headers=h, params={"q": needle, "per_page": 100})
    assert r.status_code == 200, r.text
    return [c["name"] for c in r.json()["data"]["items"]]


def _total(client: httpx.Client, h: dict[str, str]) -> int:
    return int(client.get("/api/v1/clients?per_page=1", headers=h).json()["data"]["total"])


@pytest.fixture(scope="module")
def owner() -> dict[str, str]:
    return {"Authorization": f"Bearer {key_named(make_app(), 'Owner - full')}"}


@pytest.mark.parametrize("kind", ["tmpfs", "rlimit"])
def test_a_full_disk_answers_503_and_loses_no_acknowledged_write(
    tmp_path: Path, kind: str, owner: dict[str, str]
) -> None:
    if kind == "rlimit" and not hasattr(resource, "prlimit"):
        pytest.skip("this OS cannot change a running process's file-size limit")
    h = owner
    log = tmp_path / "sandbox.log"
    with FullDisk(kind, tmp_path).mounted() as full:
        with _sandbox(full.data_dir, log, full.preexec()) as (proc, c):
            seeded = _total(c, h)
            acknowledged: dict[str, str] = {}
            refused = None
            for i in range(1000):
                name = f"fill-{i:04d}-" + "x" * 150
                r = c.post("/api/v1/clients", headers=h, json={"name": name})
                if r.status_code == 201:
                    acknowledged[r.json()["data"]["id"]] = name
                    continue
                assert r.status_code == 503, r.text
                error = r.json()["error"]
                assert error["code"] == "STORE_UNAVAILABLE" and error["message"], error
                refused = name
                break
            assert refused is not None, "the store never filled up"
            assert len(acknowledged) > 10
            assert _names(c, h, refused[:10]) == []
            assert _total(c, h) == seeded + len(acknowledged)
            # changes that grow records fail too, once the room the refused creation left is used
            for i, rid in enumerate(list(acknowledged)):
                name = f"renamed-{i:04d}-" + "y" * 180
                r = c.patch(f"/api/v1/clients/{rid}", headers=h, json={"name": name})
                if r.status_code == 200:
                    acknowledged[rid] = name
                    continue
                assert r.status_code == 503 and r.json()["error"]["code"] == "STORE_UNAVAILABLE"
                assert c.get(f"/api/v1/clients/{rid}", headers=h).json()["data"]["name"] == (
                    acknowledged[rid]
                )
                break
            else:
                pytest.fail("no change was refused on the full disk")

            full.make_room(proc.pid)
            r = c.post("/api/v1/clients", headers=h, json={"name": "after-the-disk-had-room"})
            assert r.status_code == 201, r.text
            acknowledged[r.json()["data"]["id"]] = "after-the-disk-had-room"
            assert _names(c, h, refused[:10]) == []

        with _sandbox(full.data_dir, log) as (_, c):
            for rid, name in acknowledged.items():
                got = c.get(f"/api/v1/clients/{rid}", headers=h)
                assert got.status_code == 200 and got.json()["data"]["name"] == name
            assert _names(c, h, refused[:10]) == []
            assert _total(c, h) == seeded + len(acknowledged)
    assert "Traceback" not in log.read_text()

"""The durable write path: an append-only change log, group commit, and answers only once durable.

A write appends one line to `delta.log` and is acknowledged once an fsync covers it; writes that
arrive meanwhile share the next fsync. `delta.json` is a TinyDB snapshot, rewritten only when the
log is folded into it. A batch the disk refuses fails with every commit queued after it, and
memory goes back to what the disk holds; a read waits for the writes it shows.
"""

from __future__ import annotations

import asyncio
import errno
import gc
import json
import os
import signal
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from tinydb import TinyDB

from opsmerge_sandbox.errors import ApiError
from opsmerge_sandbox.store import persistence
from opsmerge_sandbox.store.base import BaseCollection
from opsmerge_sandbox.store.persistence import ChangeLog, DeltaStore, StoreError
from opsmerge_sandbox.store.workspace import Workspaces
from tests.conftest import ADMIN_TOKEN, free_port, key_named, make_app


def _bases() -> dict[str, BaseCollection]:
    return {"things": BaseCollection("things", [{"id": f"thg_{i}", "n": i} for i in range(3)])}


def in_loop(test: Callable[..., Coroutine[Any, Any, None]]) -> Callable[..., None]:
    """Runs an async test in a fresh event loop (the store writes from the loop)."""

    def run(*args: Any, **kwargs: Any) -> None:
        asyncio.run(test(*args, **kwargs))

    run.__name__, run.__doc__, run.__wrapped__ = test.__name__, test.__doc__, test  # type: ignore[attr-defined]
    return run


class HeldDisk:
    """Holds each log append until released, and fails the ones it is told to fail."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.entered = threading.Semaphore(0)
        self.release = threading.Semaphore(0)
        self.fail_next = False
        self.batches: list[bytes] = []
        real = ChangeLog.append

        def append(log: ChangeLog, data: bytes) -> None:
            self.entered.release()
            self.release.acquire()
            if self.fail_next:
                self.fail_next = False
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            real(log, data)
            self.batches.append(data)

        monkeypatch.setattr(ChangeLog, "append", append)

    async def wait_entered(self) -> None:
        """Until the writer thread is inside an append (the batch is closed)."""
        assert await asyncio.to_thread(self.entered.acquire, True, 5)


def _stored(data_dir: Path) -> dict[tuple[str, str], Any]:
    """What a fresh open of the directory holds: (workspace, id) -> record."""
    store = DeltaStore(data_dir)
    return {(ws, d["id"]): d["record"] for ws in store.workspaces() for d in store.load(ws)}


@in_loop
async def test_concurrent_writes_share_one_durable_append(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spaces = Workspaces(_bases(), DeltaStore(tmp_path))
    ws = spaces.get()
    await ws.write("things", {"id": "thg_first", "n": 0})  # the log file exists from here on
    appends: list[bytes] = []
    real = ChangeLog.append

    def counting(log: ChangeLog, data: bytes) -> None:
        appends.append(data)
        real(log, data)

    monkeypatch.setattr(ChangeLog, "append", counting)
    writes = [ws.write("things", {"id": f"thg_c{i}", "n": i}) for i in range(50)]
    await asyncio.gather(*writes)
    assert 1 <= len(appends) < 10, len(appends)
    assert sum(data.count(b"\n") for data in appends) == 50  # every commit, each once
    monkeypatch.undo()
    assert len([k for k in _stored(tmp_path) if k[1].startswith("thg_c")]) == 50


_DROP = b'{"drop":["gone"]}\n'  # a well-formed commit line


def test_an_append_to_an_open_log_blocks_twice_a_stat_and_one_durable_write(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each call that blocks gives the interpreter's lock back, and the writer thread then
    waits for the busy event loop to give it up again: a batch's append makes two such calls
    (is the file still ours; write it durably), not five (stat, fstat, write, fsync)."""
    if getattr(os, "RWF_DSYNC", None) is None:
        pytest.skip("no per-write sync on this platform (write and fsync are two calls)")
    log = ChangeLog(tmp_path)
    log.append(_DROP)  # opens the file
    calls: list[str] = []
    for name in ("stat", "fstat", "write", "pwrite", "pwritev", "fsync", "fdatasync", "ftruncate"):
        real = getattr(os, name)

        def counted(*args: Any, _real: Any = real, _name: str = name, **kw: Any) -> Any:
            calls.append(_name)
            return _real(*args, **kw)

        monkeypatch.setattr(persistence.os, name, counted)
    for _ in range(3):
        log.append(_DROP)
    monkeypatch.undo()
    assert calls == ["stat", "pwritev"] * 3
    assert persistence.read_log(log.path) == [("drop", ("gone",), ())] * 4
    log.close()


def test_a_file_system_without_per_write_sync_gets_write_and_fsync_and_is_not_asked_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(persistence, "_DSYNC", getattr(os, "RWF_DSYNC", 8))
    asked: list[int] = []
    synced: list[int] = []
    real_fsync = os.fsync

    def no_dsync(fd: int, buffers: Any, offset: int, *flags: int) -> int:
        asked.append(fd)
        raise OSError(errno.EOPNOTSUPP, os.strerror(errno.EOPNOTSUPP))

    def fsync(fd: int) -> None:
        synced.append(fd)
        real_fsync(fd)

    monkeypatch.setattr(persistence.os, "pwritev", no_dsync)
    monkeypatch.setattr(persistence.os, "fsync", fsync)
    log = ChangeLog(tmp_path)
    for _ in range(3):
        log.append(_DROP)
    assert len(asked) == 1 and persistence._DSYNC is None
    assert len([fd for fd in synced if fd == log._fd]) == 3  # each append made durable
    assert log.path.read_bytes() == _DROP * 3 and log.size == 3 * len(_DROP)
    log.close()


def test_bytes_a_failed_append_left_behind_are_cut_before_the_next_append(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A disk that took half a batch and then refused the rest, where cutting the half back
    failed too: the next append cuts it first, so the log stays one whole commit a line."""
    log = ChangeLog(tmp_path)
    log.append(_DROP)
    real_pwritev, real_write = os.pwritev, os.write

    def half_then_full(fd: int, buffers: Any, offset: int, *flags: int) -> int:
        data = bytes(buffers[0])
        if len(data) > 8:
            return real_pwritev(fd, [data[: len(data) // 2]], offset, *flags)
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def half_then_full_plain(fd: int, data: Any, offset: int) -> int:
        return half_then_full(fd, [data], offset)

    def half_then_full_appended(fd: int, data: Any) -> int:
        data = bytes(data)
        if len(data) > 8:
            return real_write(fd, data[: len(data) // 2])
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def no_cut(*args: Any, **kwargs: Any) -> Any:
        raise OSError(errno.EIO, os.strerror(errno.EIO))

    monkeypatch.setattr(persistence.os, "pwritev", half_then_full)
    monkeypatch.setattr(persistence.os, "pwrite", half_then_full_plain)
    monkeypatch.setattr(persistence.os, "write", half_then_full_appended)
    monkeypatch.setattr(persistence, "open", no_cut, raising=False)
    with pytest.raises(OSError):
        log.append(b'{"drop":["refused","by","the","disk"]}\n')
    monkeypatch.undo()
    assert log.path.stat().st_size > len(_DROP)  # the half is still there
    log.append(_DROP)
    assert log.path.read_bytes() == _DROP * 2
    assert persistence.read_log(log.path) == [("drop", ("gone",), ())] * 2
    log.close()


@in_loop
async def test_a_write_appends_to_the_log_and_leaves_the_snapshot_alone(tmp_path: Path) -> None:
    spaces = Workspaces(_bases(), DeltaStore(tmp_path))
    snapshot = tmp_path / "delta.json"
    before = snapshot.stat()
    ws = spaces.get()
    for i in range(5):
        await ws.write("things", {"id": f"thg_a{i}", "n": i})
    await ws.delete("things", "thg_0")
    await spaces.reset("other")  # resets go through the log too
    after = snapshot.stat()
    assert (after.st_ino, after.st_size, after.st_mtime_ns) == (
        before.st_ino, before.st_size, before.st_mtime_ns
    )
    lines = (tmp_path / "delta.log").read_bytes().splitlines()
    assert len(lines) == 7
    assert json.loads(lines[-1]) == {"drop": ["other"]}
    assert json.loads(lines[0])["changes"][0][:3] == ["things", "thg_a0", {"id": "thg_a0", "n": 0}]


def _walked_dicts_holding(key: str) -> list[dict[Any, Any]]:
    """The dicts the cyclic collector walks that hold `key`, alone or in a (collection, key)."""
    return [o for o in gc.get_objects() if isinstance(o, dict) and (
        key in o or ("things", key) in o)]


@in_loop
async def test_the_store_keeps_its_index_of_written_records_out_of_the_collectors_passes(
    tmp_path: Path,
) -> None:
    """Which document each written record has is kept for every record ever written; a full
    collection that walked it each time grew with the store (~8 ms a pass at 40,000 records)."""
    store = DeltaStore(tmp_path)
    for i in range(500):
        store.commit("default", [("things", f"thg_w{i}", {"id": f"thg_w{i}"}, True, i + 4)])
    await store.settle()
    gc.collect()  # a serving process's pass
    store.commit("default", [("things", "thg_next", {"id": "thg_next"}, True, 504)])
    await store.settle()
    assert "thg_w7" in {d["id"] for d in store.load("default")}  # still indexed
    assert not _walked_dicts_holding("thg_w7")
    await store.close()


@in_loop
async def test_a_torn_last_log_line_is_dropped_at_open(tmp_path: Path) -> None:
    spaces = Workspaces(_bases(), DeltaStore(tmp_path))
    await spaces.get().write("things", {"id": "thg_kept", "n": 1})
    await spaces.get().write("things", {"id": "thg_also", "n": 2})
    log = tmp_path / "delta.log"
    whole = log.read_bytes()
    log.write_bytes(whole + b'{"ws":"default","changes":[["things","thg_torn",{"id":"thg_t')
    # a crash here: the store is opened again without having been closed
    reopened = Workspaces(_bases(), DeltaStore(tmp_path)).get()
    assert reopened.get("things", "thg_kept") == {"id": "thg_kept", "n": 1}
    assert reopened.get("things", "thg_also") == {"id": "thg_also", "n": 2}
    assert reopened.get("things", "thg_torn") is None
    assert not log.exists()  # folded into the snapshot at open
    table = TinyDB(tmp_path / "delta.json").tables()
    assert table and all(name.startswith("ws:default:") for name in table)


def test_damage_before_the_last_log_line_stops_the_open(tmp_path: Path) -> None:
    (tmp_path / "delta.log").write_bytes(
        b'{"ws":"default","changes":[["things","thg_1",{"id":"thg_1"},false,2]]}\n'
        b'{"ws":"default","changes":[["things","thg_2",{"id":"thg_9"},false,3]]}\n'
        b'{"ws":"default","changes":[["things","thg_3",{"id":"thg_3"},false,4]]}\n'
    )
    with pytest.raises(StoreError) as caught:
        DeltaStore(tmp_path)
    message = str(caught.value)
    assert "\n" not in message and str(tmp_path / "delta.log") in message
    assert "line 2" in message and "'thg_9' is not the document's id" in message
    (tmp_path / "delta.log").write_bytes(b"not json\n{}\n")
    with pytest.raises(StoreError, match="line 1 is not a JSON commit"):
        DeltaStore(tmp_path)


@in_loop
async def test_a_failed_batch_refuses_every_write_in_it_and_after_it_and_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spaces = Workspaces(_bases(), DeltaStore(tmp_path))
    disk = HeldDisk(monkeypatch)
    ws, other = spaces.get(), spaces.get("other")
    things = ws.view("things")
    seeded = len(things.base)

    first = asyncio.ensure_future(ws.write("things", {"id": "thg_ok", "n": 1}))
    await disk.wait_entered()  # batch 1 is being written: what follows queues as batch 2
    failing = [
        asyncio.ensure_future(ws.write("things", {"id": "thg_lost1", "n": 2})),
        asyncio.ensure_future(ws.write("things", {"id": "thg_1", "n": -1})),
        asyncio.ensure_future(other.write("things", {"id": "thg_lost2", "n": 3})),
    ]
    assert ws.get("things", "thg_lost1") is not None  # the next request builds on it at once
    assert things.seq_of("thg_lost1") == seeded + 2
    disk.release.release()
    await first
    await disk.wait_entered()  # batch 2 is being written; a commit queued now comes after it
    failing.append(asyncio.ensure_future(ws.delete("things", "thg_ok")))
    disk.fail_next = True
    disk.release.release()
    for write in failing:
        with pytest.raises(ApiError) as caught:
            await write
        assert caught.value.status == 503 and caught.value.code == "STORE_UNAVAILABLE"
    # memory is what the disk holds: batch 1 only
    assert ws.get("things", "thg_ok") == {"id": "thg_ok", "n": 1}
    assert ws.get("things", "thg_lost1") is None and other.get("things", "thg_lost2") is None
    assert ws.get("things", "thg_1") == {"id": "thg_1", "n": 1}
    assert things.count() == seeded + 1 and things.created_count == 1
    # later writes succeed, and take the next number after the last acknowledged one
    later = asyncio.ensure_future(ws.write("things", {"id": "thg_later", "n": 4}))
    await disk.wait_entered()
    disk.release.release()
    await later
    assert things.seq_of("thg_later") == seeded + 2
    assert len(disk.batches) == 2
    monkeypatch.undo()
    assert _stored(tmp_path) == {
        ("default", "thg_ok"): {"id": "thg_ok", "n": 1},
        ("default", "thg_later"): {"id": "thg_later", "n": 4},
    }


@in_loop
async def test_a_compaction_writes_documents_encoded_when_they_were_written_not_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Encoding the whole document on the compaction's thread held the interpreter against the
    event loop for as long as a snapshot took to write, and halved durable creates meanwhile."""
    store = DeltaStore(tmp_path)
    ws = Workspaces(_bases(), store).get()
    for i in range(300):
        await ws.write("things", {"id": f"thg_e{i}", "n": i, "pad": "x" * 200})
    await store.settle()
    encoded: list[int] = []
    real = persistence._encode

    def counting(value: Any) -> bytes:
        out = real(value)
        encoded.append(len(out))
        return out

    monkeypatch.setattr(persistence, "_encode", counting)
    await store.compact()
    monkeypatch.undo()
    size = (tmp_path / "delta.json").stat().st_size
    assert size > 300 * 200 and sum(encoded) < size // 20  # table names, not documents
    assert len(_stored(tmp_path)) == 300  # and a fresh open reads every one back from it
    tinydb = TinyDB(tmp_path / "delta.json")
    assert sum(len(tinydb.table(name)) for name in tinydb.tables()) == 300
    await store.close()


def test_a_snapshot_is_flushed_a_megabyte_at_a_time_not_all_at_the_end(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An append's flush waits for the file system's other dirty data: a snapshot flushed
    only once it was whole (27-44 MB under a burst of creates) held appends for up to 170 ms,
    so it is flushed as it grows and an append waits for a megabyte at most."""
    pad = "x" * 2000
    tables: dict[str, dict[str, bytes]] = {}
    for doc_id in range(1, 2561):  # ~5 MB in 256 tables
        doc = {"collection": "things", "id": f"thg_{doc_id}", "record": {"id": f"thg_{doc_id}",
               "pad": pad}, "created": True, "seq": doc_id}
        tables.setdefault(f"ws:default:{doc_id % 256:02x}", {})[str(doc_id)] = (
            persistence._encode(doc))
    flushed_at: list[int] = []
    real_fsync, real_fdatasync = os.fsync, os.fdatasync

    def noting(real: Callable[[int], None]) -> Callable[[int], None]:
        def flush(fd: int) -> None:
            info = os.fstat(fd)
            if stat.S_ISREG(info.st_mode):
                flushed_at.append(info.st_size)
            real(fd)
        return flush

    monkeypatch.setattr(persistence.os, "fsync", noting(real_fsync))
    monkeypatch.setattr(persistence.os, "fdatasync", noting(real_fdatasync))
    size = persistence.write_snapshot(tmp_path / "delta.json", tables)
    monkeypatch.undo()
    assert size == (tmp_path / "delta.json").stat().st_size > 5_000_000
    largest_table = max(sum(len(d) for d in t.values()) for t in tables.values()) + 1024
    gaps = [b - a for a, b in zip([0, *flushed_at], flushed_at, strict=False)]
    assert flushed_at[-1] == size and len(flushed_at) >= 5, flushed_at
    assert max(gaps) <= persistence.SNAPSHOT_SYNC_BYTES + largest_table, gaps
    assert len(_stored(tmp_path)) == 2560


@in_loop
async def test_the_log_is_folded_into_the_snapshot_once_it_outgrows_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(persistence, "COMPACT_MIN_BYTES", 2048)
    store = DeltaStore(tmp_path)
    ws = Workspaces(_bases(), store).get()
    for i in range(40):
        await ws.write("things", {"id": f"thg_f{i}", "n": i, "pad": "x" * 100})
    await store.settle()
    log = tmp_path / "delta.log"
    assert not (tmp_path / "delta.log.1").exists()
    logged = len(log.read_bytes().splitlines()) if log.exists() else 0
    snapshot = json.loads((tmp_path / "delta.json").read_text())
    in_snapshot = sum(len(t) for t in snapshot.values())
    # each write is in the snapshot or still in the log, and most were folded while writing
    assert in_snapshot + logged >= 40 and logged < 30 and in_snapshot > 10
    assert len(_stored(tmp_path)) == 40


# ---------------------------------------------------------------------------- through the API


def test_a_read_in_a_workspace_with_a_write_in_flight_answers_once_it_is_durable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = make_app(data_dir=tmp_path)
    h = {"Authorization": f"Bearer {key_named(app, 'Owner - full')}"}
    disk = HeldDisk(monkeypatch)

    async def scenario() -> None:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://sandbox") as c:
            async def names(workspace: str = "default") -> httpx.Response:
                headers = {**h, "X-Sandbox-Workspace": workspace}
                return await c.get("/api/v1/clients?q=inflight&per_page=100", headers=headers)

            post = asyncio.ensure_future(
                c.post("/api/v1/clients", headers=h, json={"name": "Inflight One"})
            )
            await disk.wait_entered()
            read = asyncio.ensure_future(names())
            elsewhere = await asyncio.wait_for(names("elsewhere"), 5)  # nothing pending there
            assert elsewhere.status_code == 200 and elsewhere.json()["data"]["total"] == 0
            await asyncio.sleep(0.3)
            assert not post.done() and not read.done()
            disk.release.release()
            created, listed = await post, await read
            assert created.status_code == 201
            assert [x["name"] for x in listed.json()["data"]["items"]] == ["Inflight One"]

            # a write that fails takes down the read that showed it
            post = asyncio.ensure_future(
                c.post("/api/v1/clients", headers=h, json={"name": "Inflight Two"})
            )
            await disk.wait_entered()
            read = asyncio.ensure_future(names())
            await asyncio.sleep(0.2)
            disk.fail_next = True
            disk.release.release()
            refused, listed = await post, await read
            assert refused.status_code == 503 and listed.status_code == 503
            assert listed.json()["error"]["code"] == "STORE_UNAVAILABLE"
            again = asyncio.ensure_future(names())
            assert [x["name"] for x in (await again).json()["data"]["items"]] == ["Inflight One"]

    asyncio.run(scenario())


@pytest.mark.interpreted
@pytest.mark.parametrize(("durable", "waits"), [(False, 0), (True, 3)])
def test_a_create_in_memory_commits_without_waiting_and_a_durable_one_waits_for_its_disk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, durable: bool, waits: int
) -> None:
    from litestar.testing import TestClient

    from opsmerge_sandbox.pipeline.commit import Commit

    waited = 0
    wait = Commit._durable

    async def counted(self: Commit, *args: Any) -> None:
        nonlocal waited
        waited += 1
        await wait(self, *args)

    monkeypatch.setattr(Commit, "_durable", counted)
    app = make_app(data_dir=tmp_path) if durable else make_app()
    h = {"Authorization": f"Bearer {key_named(app, 'Owner - full')}"}
    with TestClient(app) as c:
        for n in range(3):
            made = c.post("/api/v1/clients", headers=h, json={"name": f"Committed {n}"})
            assert made.status_code == 201
        listed = c.get("/api/v1/clients?q=committed&per_page=10", headers=h).json()["data"]
    assert listed["total"] == 3
    assert waited == waits


CLI = str(Path(sys.executable).parent / "opsmerge-sandbox")


@pytest.fixture()
def served(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], str, Path]]:
    port = free_port()
    data_dir = tmp_path / "data"
    env = {**os.environ, "OPSMERGE_SANDBOX_ADMIN_TOKEN": ADMIN_TOKEN}
    proc = subprocess.Popen(
        [CLI, "serve", "--data-dir", str(data_dir), "--port", str(port)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None and time.monotonic() < deadline, "serve did not start"
            try:
                if httpx.get(url + "/healthz", timeout=0.5).is_success:
                    break
            except httpx.HTTPError:
                time.sleep(0.05)
        yield proc, url, data_dir
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()


def test_a_clean_shutdown_folds_the_log_into_a_snapshot_tinydb_opens(
    served: tuple[subprocess.Popen[bytes], str, Path],
) -> None:
    proc, url, data_dir = served
    h = {"Authorization": f"Bearer {key_named(make_app(), 'Owner - full')}"}
    ids = []
    for i in range(5):
        r = httpx.post(url + "/api/v1/clients", headers=h, json={"name": f"Shutdown {i}"})
        assert r.status_code == 201, r.text
        ids.append(r.json()["data"]["id"])
    assert (data_dir / "delta.log").exists()
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    # uvicorn shuts down gracefully, then lets the signal end the process as it would have
    assert proc.returncode in (0, -signal.SIGTERM), err.decode()[-2000:]
    assert "Traceback" not in err.decode()
    assert not (data_dir / "delta.log").exists()
    db = TinyDB(data_dir / "delta.json")
    docs = [d for t in db.tables() for d in db.table(t).all() if d["collection"] == "clients"]
    stored = {d["id"]: d["record"]["name"] for d in docs}
    assert stored == {rid: f"Shutdown {i}" for i, rid in enumerate(ids)}

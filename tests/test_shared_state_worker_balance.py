"""`serve --workers`: a burst of connections, as a load tool or a CI farm opens them, is served by
every worker, not by whichever woke first."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.shared_state_servers import Host, RedisServer, redis_server

BURST = 64


@pytest.fixture()
def store() -> Iterator[RedisServer]:
    yield from redis_server()


def _workers(parent: int) -> list[int]:
    """The worker processes of a `serve --workers` (not multiprocessing's tracker)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == parent and b"spawn_main" in cmdline:
            found.append(int(entry.name))
    return found


def _socket_owners(pids: list[int]) -> dict[str, set[int]]:
    """Socket inode -> the workers holding it."""
    owners: dict[str, set[int]] = {}
    for pid in pids:
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            if target.startswith("socket:["):
                owners.setdefault(target[8:-1], set()).add(pid)
    return owners


def _listening(port: int, workers: list[int]) -> set[int]:
    """The workers that listen on the port now."""
    owners = _socket_owners(workers)
    listening: set[int] = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if int(fields[1].split(":")[1], 16) == port and fields[3] == "0A":  # LISTEN
            listening |= owners.get(fields[9], set())
    return listening


def _wait_listening(port: int, workers: list[int], timeout: float = 60) -> None:
    """Until each worker listens on the port."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _listening(port, workers) >= set(workers):
            return
        time.sleep(0.1)
    raise AssertionError(f"not every worker listens on {port}")


def test_the_first_answer_comes_once_every_worker_listens(store: RedisServer) -> None:
    """A client that connects as soon as the sandbox answers reaches every worker: no worker
    listens before all are ready (one that did took every early connection)."""
    for _ in range(2):
        host = Host(store.url, workers=3)  # returns at the first answer to /healthz
        try:
            workers = _workers(host.proc.pid)
            assert len(workers) == 3
            assert _listening(host.port, workers) == set(workers)
            ready_dirs = _ready_dirs(host.proc.pid)
            assert len(ready_dirs) == 1 and len(list(ready_dirs[0].iterdir())) == 3
        finally:
            host.close()
        assert not ready_dirs[0].exists()  # the parent cleans up after its workers


def _ready_dirs(parent: int) -> list[Path]:
    """Where the workers of `parent` said they were ready (named in their environment)."""
    found = set()
    for pid in _workers(parent):
        environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        for entry in environ:
            name, _, value = entry.partition(b"=")
            if name == b"OPSMERGE_SANDBOX_WORKERS_READY_DIR":
                found.add(Path(value.decode()))
    return sorted(found)


def _served_by(port: int, clients: set[int], owners: dict[str, set[int]]) -> Counter[int]:
    """How many of the clients' connections (by their local ports) each worker holds."""
    counts: Counter[int] = Counter()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, remote, inode = fields[1], fields[2], fields[9]
        if int(local.split(":")[1], 16) == port and int(remote.split(":")[1], 16) in clients:
            for pid in owners.get(inode, ()):
                counts[pid] += 1
    return counts


def test_a_burst_of_connections_is_spread_over_every_worker(store: RedisServer) -> None:
    host = Host(store.url, workers=2)
    try:
        workers = _workers(host.proc.pid)
        assert len(workers) == 2
        _wait_listening(host.port, workers)

        async def burst() -> tuple[set[int], list[asyncio.StreamWriter]]:
            opened = await asyncio.gather(
                *(asyncio.open_connection("127.0.0.1", host.port) for _ in range(BURST))
            )
            for _, writer in opened:
                writer.write(b"GET /healthz HTTP/1.1\r\nHost: sandbox\r\n\r\n")
            for reader, _ in opened:  # every connection served: accepted by some worker
                assert (await reader.readline()).startswith(b"HTTP/1.1 200")
            ports = {w.get_extra_info("sockname")[1] for _, w in opened}
            return ports, [w for _, w in opened]

        async def scenario() -> Counter[int]:
            ports, writers = await burst()
            counts = _served_by(host.port, ports, _socket_owners(workers))
            for writer in writers:
                writer.close()
            return counts

        counts = asyncio.run(scenario())
        assert sum(counts.values()) == BURST
        # even shares would be 32 each; draining the queue gave one worker all 64
        assert min(counts[pid] for pid in workers) >= BURST // 8, counts
    finally:
        host.close()


def test_a_second_sandbox_cannot_take_the_port_the_workers_listen_on(store: RedisServer) -> None:
    """The workers' sockets share the port with one another, not with another process: a
    second `serve`, with workers or without, is refused as on any port in use."""
    host = Host(store.url, workers=2)
    try:
        _wait_listening(host.port, _workers(host.proc.pid))
        for workers in ("2", "1"):
            done = subprocess.run(
                [sys.executable, "-m", "opsmerge_sandbox.cli", "serve", "--port", str(host.port),
                 "--state", store.url, "--workers", workers],
                capture_output=True, text=True, timeout=60,
            )
            assert done.returncode == 2, done.stderr
            assert "is not available" in done.stderr
    finally:
        host.close()

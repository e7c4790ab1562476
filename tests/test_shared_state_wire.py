"""The request path's connection to the shared store, against a real redis-server: commands of one
loop turn leave together, each caller gets its own answer or error, and a store that stalls, goes
away or comes back is reported as redis-py would and used again without a restart."""

from __future__ import annotations

import asyncio
import re
import signal
from collections.abc import Iterator
from typing import Any

import pytest
import redis
import redis.exceptions

from opsmerge_sandbox.shared.wire import Wire, WireScript, rebased
from tests.shared_state_servers import RedisServer, redis_server


@pytest.fixture()
def store() -> Iterator[RedisServer]:
    yield from redis_server()


def _reads(store: RedisServer) -> int:
    """Socket reads the store has made so far (one per batch of commands that arrived)."""
    found = re.search(r"total_reads_processed:(\d+)", store.cli("info", "stats"))
    assert found, "INFO stats lists total_reads_processed"
    return int(found[1])


def test_commands_issued_in_one_loop_turn_reach_the_store_in_one_write(
    store: RedisServer,
) -> None:
    async def main() -> tuple[list[Any], int]:
        wire = Wire(store.url, 2.0)
        await wire.call("PING")  # connected
        before = _reads(store)
        answers = await asyncio.gather(*(wire.call("INCR", "counter") for _ in range(50)))
        spent = _reads(store) - before - 1  # the INFO that counts is one read too
        wire.close()
        return answers, spent

    answers, spent = asyncio.run(main())
    assert answers == list(range(1, 51)), "each caller gets its own answer, in order"
    assert spent <= 2, f"50 commands cost the store {spent} reads"


def test_an_error_reply_fails_only_its_own_command(store: RedisServer) -> None:
    async def main() -> list[Any]:
        wire = Wire(store.url, 2.0)
        found = await asyncio.gather(
            wire.call("SET", "k", "text"), wire.call("INCR", "k"), wire.call("GET", "k"),
            return_exceptions=True,
        )
        wire.close()
        return found

    ok, failed, value = asyncio.run(main())
    assert ok == b"OK"
    assert isinstance(failed, redis.exceptions.ResponseError)
    assert "not an integer" in str(failed)
    assert value == b"text"


def test_a_script_the_store_lacks_is_loaded_and_run(store: RedisServer) -> None:
    async def main() -> list[Any]:
        wire = Wire(store.url, 2.0)
        script = WireScript(wire, "return {KEYS[1], ARGV[1]}")
        first = await script(["a"], [1])
        store.cli("script", "flush")  # as a restarted store would
        second = await script(["b"], ["two"])
        wire.close()
        return [first, second]

    assert asyncio.run(main()) == [[b"a", b"1"], [b"b", b"two"]]


def test_a_stalled_store_times_out_every_waiting_command_and_the_next_connects_again(
    store: RedisServer,
) -> None:
    assert store.proc is not None
    proc = store.proc

    async def main() -> tuple[list[Any], float, Any]:
        wire = Wire(store.url, 0.3)
        await wire.call("PING")
        proc.send_signal(signal.SIGSTOP)
        loop = asyncio.get_running_loop()
        started = loop.time()
        try:
            stalled = await asyncio.gather(
                wire.call("PING"), wire.call("INCR", "n"), return_exceptions=True
            )
        finally:
            proc.send_signal(signal.SIGCONT)
        took = loop.time() - started
        again = await wire.call("INCR", "n")
        wire.close()
        return stalled, took, again

    stalled, took, again = asyncio.run(main())
    assert all(isinstance(e, redis.TimeoutError) for e in stalled), stalled
    assert 0.25 <= took < 1.5, f"timed out after {took:.2f} s (timeout 0.3 s)"
    assert isinstance(again, int)  # a new connection; the stalled INCR may or may not have run


def test_an_unreachable_store_fails_what_is_queued_and_is_used_again_once_it_is_back(
    store: RedisServer,
) -> None:
    async def main() -> tuple[list[Any], Any]:
        wire = Wire(store.url, 1.0)
        await wire.call("SET", "kept", "1")
        store.stop()
        down = await asyncio.gather(
            wire.call("PING"), wire.call("GET", "kept"), return_exceptions=True
        )
        store.start()
        back = await wire.call("PING")
        wire.close()
        return down, back

    down, back = asyncio.run(main())
    assert all(isinstance(e, redis.ConnectionError) for e in down), down
    assert back == b"PONG"


@pytest.mark.parametrize("user", ["", "default"])
def test_the_password_and_database_in_the_url_are_used(store: RedisServer, user: str) -> None:
    store.cli("config", "set", "requirepass", "s3cret")
    url = f"redis://{user}:s3cret@127.0.0.1:{store.port}/3"

    async def main() -> None:
        wire = Wire(url, 2.0)
        await wire.call("SET", "where", "db3")
        wire.close()
        refused = Wire(f"redis://127.0.0.1:{store.port}/3", 2.0)
        with pytest.raises(redis.exceptions.AuthenticationError, match="NOAUTH"):
            await refused.call("GET", "where")
        refused.close()

    asyncio.run(main())
    seen = store.cli("-a", "s3cret", "--no-auth-warning", "-n", "3", "get", "where")
    assert seen.strip() == "db3"
    other = store.cli("-a", "s3cret", "--no-auth-warning", "-n", "0", "get", "where")
    assert other.strip() == ""


def test_a_wire_used_from_a_new_event_loop_connects_again(store: RedisServer) -> None:
    wire = Wire(store.url, 2.0)

    async def incr() -> Any:
        return await wire.call("INCR", "runs")

    assert asyncio.run(incr()) == 1
    assert asyncio.run(incr()) == 2  # the first loop, and its socket, are gone
    wire.close()


def test_a_rebased_part_has_its_keys_and_arguments_moved_and_a_part_that_cannot_move_is_refused(
) -> None:
    part = "local a = redis.call('GET', KEYS[1])\nlocal b = ARGV[2] .. KEYS[12]\n"
    assert rebased(part, keys=3, args=5) == (
        "local a = redis.call('GET', KEYS[4])\nlocal b = ARGV[7] .. KEYS[15]\n"
    )
    with pytest.raises(ValueError, match=r"KEYS\[i\]"):
        rebased("for i = 1, 2 do redis.call('DEL', KEYS[i]) end", keys=1, args=0)
    with pytest.raises(ValueError, match="return"):
        rebased("local a = KEYS[1]\nreturn a\n", keys=1, args=0)

"""A request that opened no transaction never drops another's.

A write's transaction is open from its handler to its commit. Between the two a stage may wait:
on shared state in hosted mode the commit first charges the visitor's budget in Redis. A read of
the same workspace that ends meanwhile cleans up after itself; with no transaction of its own,
that clean-up must leave the write's alone, or the write is answered 201 and never stored.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any

import httpx
import pytest

from opsmerge_sandbox.app import create_app
from opsmerge_sandbox.pipeline.commit import Commit
from opsmerge_sandbox.pipeline.stages import Stages
from opsmerge_sandbox.settings import Settings
from tests.conftest import ADMIN_TOKEN, bearer

OWNER = "om_sbx_owner_full_pG5aQxpYERgXwi9iPGPE2lWARD"
HEADERS = {**bearer(OWNER), "X-Sandbox-Workspace": "read-beside-write"}


@pytest.mark.parametrize("read", ["/api/v1/tickets?per_page=1", "/api/v1/agents/agt_acmesrv01"])
def test_a_read_that_ends_while_a_write_waits_before_its_commit_leaves_the_write_stored(
    read: str,
) -> None:
    asyncio.run(_read_beside_write(read))


async def _read_beside_write(read: str) -> None:
    app = create_app(Settings(admin_token=ADMIN_TOKEN))
    pipeline = app.state.pipeline
    stages = pipeline.stages
    paused, go_on = asyncio.Event(), asyncio.Event()

    async def _wait(ctx: Any) -> None:
        paused.set()
        await go_on.wait()

    def wait_before_commit(ctx: Any) -> Awaitable[None] | None:
        """A stage that waits between a write's handler and its commit, as a hosted commit on
        shared state waits for Redis."""
        return _wait(ctx) if ctx.op.method == "POST" else None

    at = next(i for i, s in enumerate(stages.answer) if isinstance(s, Commit))
    answer = (*stages.answer[:at], wait_before_commit, *stages.answer[at:])
    pipeline.stages = Stages(stages.request, answer, stages.admission)

    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://sandbox") as client:
        write = asyncio.create_task(
            client.post(
                "/api/v1/tickets",
                json={"subject": "Beside a read", "client_id": "cli_acme"},
                headers=HEADERS,
            )
        )
        await asyncio.wait_for(paused.wait(), 10)
        assert (await client.get(read, headers=HEADERS)).status_code == 200
        go_on.set()
        created = await asyncio.wait_for(write, 10)
        assert created.status_code == 201, created.text
        ticket = created.json()["data"]
        stored = await client.get(f"/api/v1/tickets/{ticket['id']}", headers=HEADERS)
    assert stored.status_code == 200, stored.text
    assert stored.json()["data"]["subject"] == "Beside a read"

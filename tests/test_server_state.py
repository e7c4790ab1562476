"""What clients write stays written: durable data dirs, atomic writes, reset, concurrency."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
from litestar.testing import TestClient

from tests.conftest import (
    ADMIN,
    ADMIN_TOKEN,
    LoopbackServer,
    bearer,
    free_port,
    key_named,
    make_app,
)


def test_writes_survive_a_restart_with_a_data_dir(tmp_path: Path) -> None:
    app = make_app(data_dir=tmp_path)
    h = bearer(key_named(app, "Owner - full"))
    with TestClient(app, base_url="http://sandbox.local") as c:
        made = c.post("/api/v1/clients", headers=h, json={"name": "Durable Ltd"}).json()["data"]
        c.patch("/api/v1/clients/cli_acme", headers=h, json={"industry": "Legal"})
        # a New ticket has no answers and no time logged: nothing holds on to it
        new = c.get("/api/v1/tickets", headers=h, params={"status": "New"}).json()["data"]
        gone = new["items"][0]["id"]
        assert c.delete(f"/api/v1/tickets/{gone}", headers=h).status_code == 200
        ws = c.post(
            "/api/v1/clients",
            headers={**h, "X-Sandbox-Workspace": "ci-1"},
            json={"name": "Only in ci-1"},
        )
        ws_id = ws.json()["data"]["id"]
    again = make_app(data_dir=tmp_path)
    with TestClient(again, base_url="http://sandbox.local") as c:
        assert c.get(f"/api/v1/clients/{made['id']}", headers=h).json()["data"] == made
        assert c.get("/api/v1/clients/cli_acme", headers=h).json()["data"]["industry"] == "Legal"
        assert c.get(f"/api/v1/tickets/{gone}", headers=h).status_code == 404
        assert c.get(f"/api/v1/clients/{ws_id}", headers=h).status_code == 404
        assert (
            c.get(
                f"/api/v1/clients/{ws_id}", headers={**h, "X-Sandbox-Workspace": "ci-1"}
            ).status_code
            == 200
        )
        # sequence numbers continue after a restart
        t1 = c.post(
            "/api/v1/tickets", headers=h, json={"subject": "a", "client_id": "cli_acme"}
        ).json()["data"]
    third = make_app(data_dir=tmp_path)
    with TestClient(third, base_url="http://sandbox.local") as c:
        t2 = c.post(
            "/api/v1/tickets", headers=h, json={"subject": "b", "client_id": "cli_acme"}
        ).json()["data"]
    assert t2["number"] == t1["number"] + 1


def test_reset_restores_the_seeded_world(fresh_client: Any) -> None:
    c = fresh_client
    h = bearer(key_named(c.app, "Owner - full"))
    total = c.get("/api/v1/clients?per_page=1", headers=h).json()["data"]["total"]
    c.post("/api/v1/clients", headers=h, json={"name": "Temp"})
    c.delete("/api/v1/contacts/con_acmejane", headers=h)
    assert c.get("/api/v1/clients?per_page=1", headers=h).json()["data"]["total"] == total + 1
    ws = c.headers["X-Sandbox-Workspace"]
    assert c.post("/_sandbox/reset", headers=ADMIN, json={"workspace": ws}).status_code == 200
    assert c.get("/api/v1/clients?per_page=1", headers=h).json()["data"]["total"] == total
    assert c.get("/api/v1/contacts/con_acmejane", headers=h).status_code == 200


def test_a_failed_validation_changes_nothing(fresh_client: Any) -> None:
    c = fresh_client
    h = bearer(key_named(c.app, "Owner - full"))
    before = c.get("/api/v1/clients/cli_acme", headers=h).json()["data"]
    r = c.patch("/api/v1/clients/cli_acme", headers=h, json={"name": "", "status": "gone"})
    assert r.status_code == 400 and {d["field"] for d in r.json()["error"]["details"]} == {
        "name",
        "status",
    }
    assert c.get("/api/v1/clients/cli_acme", headers=h).json()["data"] == before


def test_concurrent_writes_lose_nothing() -> None:
    app = make_app()
    h = bearer(key_named(app, "Owner - full"))
    with LoopbackServer(app) as server:
        httpx.post(server.url + "/_sandbox/keys", headers=ADMIN, json={"name": "x"})

        async def writes() -> list[str]:
            async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
                rs = await asyncio.gather(
                    *(
                        client.post(
                            "/api/v1/tickets",
                            headers=h,
                            json={"subject": f"c{i}", "client_id": "cli_acme"},
                        )
                        for i in range(150)
                    )
                )
            assert all(r.status_code == 201 for r in rs)
            return [r.json()["data"]["id"] for r in rs]

        ids = asyncio.run(writes())
        with httpx.Client(base_url=server.url) as client:
            numbers = {
                client.get(f"/api/v1/tickets/{rid}", headers=h).json()["data"]["number"]
                for rid in ids
            }
    assert len(set(ids)) == 150 and len(numbers) == 150


def test_killing_the_process_mid_writes_keeps_every_acknowledged_write(tmp_path: Path) -> None:
    port = free_port()
    env = {**os.environ, "OPSMERGE_SANDBOX_ADMIN_TOKEN": ADMIN_TOKEN}
    cmd = [
        sys.executable,
        "-m",
        "opsmerge_sandbox.cli",
        "serve",
        "--port",
        str(port),
        "--data-dir",
        str(tmp_path),
        "--rate-limit",
        "100000",
    ]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 20
        while time.time() < deadline:
            try:
                httpx.get(url + "/healthz", timeout=0.5)
                break
            except httpx.HTTPError:
                time.sleep(0.05)
        app_keys = make_app().state.sandbox.recipe.keys
        h = bearer(next(k.key for k in app_keys if k.name.startswith("Owner - full")))
        acknowledged: list[str] = []
        with httpx.Client(base_url=url, timeout=5) as client:
            for i in range(400):
                try:
                    r = client.post("/api/v1/clients", headers=h, json={"name": f"Kill {i}"})
                except httpx.HTTPError:
                    break
                if r.status_code == 201:
                    acknowledged.append(r.json()["data"]["id"])
                if i == 150:
                    os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    assert len(acknowledged) >= 150
    stored = json.loads((tmp_path / "delta.json").read_text())  # a whole, readable document
    assert stored
    app = make_app(data_dir=tmp_path)
    with TestClient(app, base_url="http://sandbox.local") as c:
        for rid in acknowledged:
            assert c.get(f"/api/v1/clients/{rid}", headers=h).status_code == 200

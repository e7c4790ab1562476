"""Shared fixtures: an in-process sandbox in strict mode, its keys, and a loopback server."""

from __future__ import annotations

import copy
import json
import os
import socket
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator, Mapping
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import TestClient

from opsmerge_contracts.options import Options
from opsmerge_contracts.sandboxes import LoopbackServer, Sandbox, start_sandbox
from opsmerge_contracts.session import ContractRun
from opsmerge_sandbox import native
from opsmerge_sandbox.app import create_app
from opsmerge_sandbox.settings import Settings
from opsmerge_sandbox.spec import Spec, load_spec, parse_spec
from opsmerge_sandbox.world import build_world, load_recipe
from opsmerge_sandbox.world.invariants import check_world
from opsmerge_sandbox.world.recipe import Recipe

# the webhook tests' `box` (a strict loopback sandbox per module) and `api` (a fresh workspace)
pytest_plugins = ["tests.webhooks_support"]

ADMIN_TOKEN = "test-admin-token"
SMALL_RECIPE = Path(__file__).resolve().parent / "contracts_small_recipe.yaml"


def key_named(app: Any, prefix: str) -> str:
    """The secret of the recipe key whose name starts with `prefix`."""
    for k in app.state.sandbox.recipe.keys:
        if k.name.startswith(prefix):
            return k.key
    raise KeyError(prefix)


def bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


def every_record(
    client: Any, path: str, headers: Mapping[str, str], **params: Any
) -> list[dict[str, Any]]:
    """Every record a list operation answers, a hundred a page until its total."""
    items: list[dict[str, Any]] = []
    page = 1
    while True:
        query = {**params, "per_page": 100, "page": page}
        r = client.get(path, headers=headers, params=query)
        assert r.status_code == 200, r.text
        data = r.json()["data"]
        items += data["items"]
        if len(items) >= data["total"] or not data["items"]:
            return items
        page += 1


def records_by_id(client: Any, path: str, headers: Mapping[str, str]) -> dict[str, dict[str, Any]]:
    """Every record a list operation answers, by id."""
    return {r["id"]: r for r in every_record(client, path, headers)}


def at(text: str) -> datetime:
    """An API timestamp (`...Z`) as an aware datetime."""
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def sandbox_now(client: Any, workspace: str | None = None) -> datetime:
    """The sandbox clock's now, or one workspace's."""
    headers = {**ADMIN, **({"X-Sandbox-Workspace": workspace} if workspace else {})}
    return at(client.get("/_sandbox/clock", headers=headers).json()["data"]["now"])


def conflict(client: Any, path: str, headers: Mapping[str, str]) -> dict[str, Any]:
    """The error of a POST the record's state holds back: 409 CONFLICT."""
    refused = client.post(path, headers=headers)
    assert refused.status_code == 409, refused.text
    error: dict[str, Any] = refused.json()["error"]
    assert error["code"] == "CONFLICT"
    return error


def settle_contracts(client: Any, headers: Mapping[str, str], client_id: str) -> None:
    """Take a client's contracts out of force as the API allows: one that has billed (an
    invoice of it stands) is ended, its end date set to yesterday; one never billed is voided."""
    invoices = every_record(client, "/api/v1/invoices", headers, client_id=client_id)
    billed = {i["contract_id"] for i in invoices if i["status"] != "Voided"}
    yesterday = (sandbox_now(client) - timedelta(days=1)).date().isoformat()
    for contract in every_record(client, "/api/v1/contracts", headers, client_id=client_id):
        if contract["status"] not in ("active", "scheduled"):
            continue
        path = f"/api/v1/contracts/{contract['id']}"
        if contract["id"] in billed:
            done = client.patch(path, headers=headers, json={"end_date": yesterday})
        else:
            done = client.post(f"{path}/void", headers=headers)
        assert done.status_code == 200, done.text
        assert done.json()["data"]["status"] in ("ended", "voided"), done.text


def advance_clock(client: Any, workspace: str, seconds: float) -> None:
    """Move one workspace's clock forward."""
    r = client.post(
        "/_sandbox/clock",
        headers={**ADMIN, "X-Sandbox-Workspace": workspace},
        json={"advance_seconds": seconds},
    )
    assert r.status_code == 200, r.text


def spec_with(spec: Spec, schemas: dict[str, Any]) -> Spec:
    """The spec with these component schemas added (or replaced): a test's own collections."""
    raw = copy.deepcopy(spec.raw)
    raw["components"]["schemas"].update(schemas)
    return parse_spec(raw, spec.path, spec.catalogue)


def violations(spec: Spec, world: dict[str, list[dict[str, Any]]]) -> set[tuple[str, str]]:
    """(record id, invariant) of every rule a default-recipe world breaks, as `fixtures check`
    judges it."""
    recipe = load_recipe()
    schemas = {name: c.schema for name, c in spec.collections.items()}
    found = check_world(world, schemas, int(recipe.epoch.timestamp()), recipe.organisation)
    return {(v.record_id, v.invariant) for v in found}


def rules_broken_by(
    spec: Spec, world: dict[str, list[dict[str, Any]]], collection: str,
    pick: Callable[[dict[str, Any]], bool], **change: Any,
) -> tuple[str, set[str]]:
    """The first record of `collection` that `pick` holds for, and the invariants a copy of the
    world breaks on it once `change` is made to it: what the checker says of one wrong record."""
    changed = copy.deepcopy(world)
    record = next(r for r in changed[collection] if pick(r))
    record.update(change)
    return record["id"], {rule for rid, rule in violations(spec, changed) if rid == record["id"]}


@pytest.fixture(scope="module", params=[None, 7], ids=["default-seed", "seed-7"])
def seeded_world(request: pytest.FixtureRequest, spec: Spec) -> dict[str, list[dict[str, Any]]]:
    """The default recipe's world, at its own seed and another: a rule about the world holds
    for more than one draw."""
    seed = request.param
    return build_world(spec, load_recipe("default", seed) if seed else load_recipe())


@pytest.fixture(scope="module")
def spec() -> Spec:
    return load_spec()


@pytest.fixture(scope="module")
def recipe() -> Recipe:
    return load_recipe()


def make_app(**overrides: Any) -> Any:
    return create_app(Settings(admin_token=ADMIN_TOKEN, strict=True, **overrides))


@pytest.fixture(scope="module")
def app() -> Any:
    return make_app()


@pytest.fixture(scope="module")
def client(app: Any) -> Iterator[TestClient]:
    with TestClient(app, base_url="http://sandbox.local") as c:
        yield c


@pytest.fixture()
def fresh_client(app: Any) -> Iterator[TestClient]:
    """A client with a workspace of its own: writes and rate budget start from the seed."""
    headers = {"X-Sandbox-Workspace": f"test-{uuid.uuid4().hex[:12]}"}
    with TestClient(app, base_url="http://sandbox.local") as c:
        c.headers.update(headers)
        yield c


@pytest.fixture(scope="module")
def owner(app: Any) -> dict[str, str]:
    return bearer(key_named(app, "Owner - full"))


ADMIN = {"X-Sandbox-Admin-Token": ADMIN_TOKEN}


@pytest.fixture(scope="module")
def sandbox_run() -> Iterator[ContractRun]:
    """A contract run against the in-process sandbox, in the sandbox profile, for a module."""
    run = ContractRun(Options(target="sandbox", profile="sandbox"))
    try:
        yield run
    finally:
        run.close()


@pytest.fixture(scope="module")
def served() -> Iterator[Sandbox]:
    """A sandbox with the small recipe served on loopback: a target the harness reaches by URL."""
    box = start_sandbox(Settings(recipe=str(SMALL_RECIPE)), loopback=True)
    try:
        yield box
    finally:
        box.close()


def contracts_command(
    url: str, cwd: Path, *args: str, env: dict[str, str] | None = None
) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    """`opsmerge-sandbox contracts --target URL --report ... ARGS` in a subprocess, with no
    OPSMERGE_* variable of this environment leaking in; its result and the JSON report."""
    report = cwd / "run"
    environ = {k: v for k, v in os.environ.items() if not k.startswith("OPSMERGE_")}
    environ.update(env or {})
    result = subprocess.run(
        [sys.executable, "-m", "opsmerge_sandbox.cli", "contracts", "--target", url,
         "--report", str(report), *args],
        capture_output=True, text=True, timeout=600, env=environ, cwd=cwd,
    )  # fmt: skip
    path = report.with_suffix(".json")
    return result, (json.loads(path.read_text()) if path.exists() else {})


def write_calls(io_file: str) -> int:
    """The write calls into the kernel a process or thread has made (`syscw` of its
    `/proc/.../io`): what tells one write per answer from two."""
    for line in Path(io_file).read_text().splitlines():
        if line.startswith("syscw:"):
            return int(line.split()[1])
    raise AssertionError(f"no syscw in {io_file}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture()
def loopback() -> Iterator[LoopbackServer]:
    with LoopbackServer(make_app()) as server:
        yield server


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Shared-state tests race real worker processes on a real Redis with second-scale timeouts:
    they are marked `alone`, so `make test` runs them with no other test beside them.

    Tests marked `interpreted` replace a module's functions to count or fail its calls, which
    compiled modules call directly: with the compiled modules in use they are skipped, and
    `make test` runs them in a run of their own with those modules off."""
    skip = pytest.mark.skip(
        reason=f"replaces compiled functions: run with {native.SWITCH}=0 (make test does)"
    )
    for item in items:
        if item.path.name.startswith("test_shared_state_"):
            item.add_marker(pytest.mark.alone)
        if native.state == "on" and item.get_closest_marker("interpreted") is not None:
            item.add_marker(skip)

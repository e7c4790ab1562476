"""A request's writes become durable and visible together, and only with a success answer."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from litestar.testing import TestClient

from opsmerge_sandbox.app import create_app
from opsmerge_sandbox.errors import ApiError
from opsmerge_sandbox.pipeline.strict import StrictChecker
from opsmerge_sandbox.settings import Settings
from tests.test_store_durability import Disk

OWNER = {"Authorization": "Bearer om_sbx_owner_full_pG5aQxpYERgXwi9iPGPE2lWARD"}


@pytest.fixture()
def disk(monkeypatch: pytest.MonkeyPatch) -> Disk:
    return Disk(monkeypatch)


def _durable(tmp_path: Path) -> TestClient:
    return TestClient(create_app(Settings(data_dir=tmp_path, strict=True)))


def test_an_action_the_store_cannot_save_answers_503_and_creates_nothing(
    tmp_path: Path, disk: Disk
) -> None:
    with _durable(tmp_path) as client:
        before = client.get("/api/v1/agents/agt_acmesrv01/reboots", headers=OWNER).json()
        disk.full = True
        r = client.post("/api/v1/agents/agt_acmesrv01/reboot", headers=OWNER)
        assert r.status_code == 503, r.text
        assert r.json()["error"]["code"] == "STORE_UNAVAILABLE"
        assert "x-ratelimit-remaining" in r.headers
        after = client.get("/api/v1/agents/agt_acmesrv01/reboots", headers=OWNER).json()
        assert after["data"]["total"] == before["data"]["total"]
        disk.full = False
        assert client.post("/api/v1/agents/agt_acmesrv01/reboot", headers=OWNER).status_code == 202


def test_a_refused_creation_spends_no_sequence_number(tmp_path: Path, disk: Disk) -> None:
    body = {"subject": "Printer offline", "client_id": "cli_acme", "priority": "High"}
    with _durable(tmp_path) as client:
        first = client.post("/api/v1/tickets", json=body, headers=OWNER).json()["data"]
        disk.full = True
        refused = client.post("/api/v1/tickets", json=body, headers=OWNER)
        assert refused.status_code == 503
        disk.full = False
        second = client.post("/api/v1/tickets", json=body, headers=OWNER).json()["data"]
        assert second["number"] == first["number"] + 1


def test_an_error_after_the_handler_leaves_no_write_behind(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real = StrictChecker.check

    def failing(self: StrictChecker, op: Any, status: int, *args: Any) -> None:
        if op.method == "POST":
            raise ApiError("INTERNAL_ERROR", "the answer broke the spec")
        real(self, op, status, *args)

    monkeypatch.setattr(StrictChecker, "check", failing)
    with TestClient(create_app(Settings(strict=True))) as client:
        r = client.post("/api/v1/clients", json={"name": "Half Written Ltd"}, headers=OWNER)
        assert r.status_code == 500
        found = client.get("/api/v1/clients?q=Half%20Written", headers=OWNER).json()
        assert found["data"]["total"] == 0

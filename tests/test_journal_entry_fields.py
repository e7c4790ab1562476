"""A journal entry holds each field of the request it records, in its own place: the entry is
made on every request as a plain tuple (`record_exchange.py`), so a field in the wrong place
would be read back under another name."""

from __future__ import annotations

from datetime import datetime

from litestar.testing import TestClient

from opsmerge_sandbox.app import create_app
from opsmerge_sandbox.settings import Settings
from tests.conftest import ADMIN, ADMIN_TOKEN, bearer

OWNER = "om_sbx_owner_full_pG5aQxpYERgXwi9iPGPE2lWARD"
WORKSPACE = "journal-fields"


def test_a_journal_entry_records_each_field_of_its_request_in_its_own_place() -> None:
    app = create_app(Settings(admin_token=ADMIN_TOKEN))
    headers = {**bearer(OWNER), "X-Sandbox-Workspace": WORKSPACE}
    with TestClient(app) as client:
        me = client.get("/api/v1/auth/me", headers=headers).json()["data"]["key"]
        plain = client.get("/api/v1/agents/agt_acmesrv01?colour=red", headers=headers)
        forced = client.get(
            "/api/v1/agents/agt_acmesrv01", headers={**headers, "Prefer": "code=503"}
        )
        items = client.get(
            "/_sandbox/requests", params={"workspace": WORKSPACE}, headers=ADMIN
        ).json()["data"]["items"]
    assert (plain.status_code, forced.status_code) == (200, 503)
    first, second = items[-2:]
    for item in (first, second):
        assert item["method"] == "GET"
        assert item["path"] == "/api/v1/agents/agt_acmesrv01"
        assert item["operation_id"] == "getAgent"
        assert item["key_name"] == me["name"]
        assert item["key_id"] == me["id"]
        assert item["workspace"] == WORKSPACE
        assert isinstance(item["duration_ms"], float) and item["duration_ms"] >= 0
        assert datetime.fromisoformat(item["at"].replace("Z", "+00:00")).year >= 2024
    assert (first["query"], first["status"], first["fault"]) == ("colour=red", 200, None)
    assert first["unknown_params"] == ["colour"]
    assert (second["query"], second["status"], second["fault"]) == ("", 503, "prefer code=503")
    assert second["unknown_params"] == []

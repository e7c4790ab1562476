"""The sandbox clock stays in the range every timestamp can be written in, and a full reset
puts it back; bad clock and expiry values are 400s that change nothing.

Advancing past year 9999 used to make every later write (and the clock itself) a 500 until the
process restarted.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from litestar.testing import TestClient

from opsmerge_sandbox.clock import LATEST
from tests.conftest import ADMIN, bearer, key_named, make_app

TEN_YEARS = 315_360_000  # the most one call may advance (admin.yaml)
TICKET = {"subject": "Printer offline", "client_id": "cli_acme", "priority": "High"}


@pytest.fixture()
def sandbox() -> Iterator[tuple[TestClient, dict[str, str]]]:
    """A sandbox of its own: these tests move the clock far ahead."""
    app = make_app()
    with TestClient(app) as client:
        yield client, bearer(key_named(app, "Owner - full"))


def _clock(client: TestClient) -> dict[str, Any]:
    answer = client.get("/_sandbox/clock", headers=ADMIN)
    assert answer.status_code == 200, answer.text[:200]
    return dict(answer.json()["data"])


def _advance(client: TestClient, seconds: Any) -> Any:
    return client.post("/_sandbox/clock", json={"advance_seconds": seconds}, headers=ADMIN)


def _advance_to_the_end(client: TestClient) -> None:
    while (answer := _advance(client, TEN_YEARS)).status_code == 200:
        pass
    assert answer.status_code == 400, answer.text[:200]


def test_the_clock_cannot_be_advanced_past_its_last_writable_time(
    sandbox: tuple[TestClient, dict[str, str]],
) -> None:
    client, auth = sandbox
    for _ in range(800):  # 8,000 years: far past 9999 if nothing stopped it
        answer = _advance(client, TEN_YEARS)
        if answer.status_code != 200:
            break
    assert answer.status_code == 400, answer.text[:200]
    error = answer.json()["error"]
    assert error["code"] == "VALIDATION_ERROR"
    assert error["details"][0]["field"] == "advance_seconds"
    stopped = _clock(client)
    assert datetime.fromisoformat(stopped["now"].replace("Z", "+00:00")).timestamp() <= LATEST
    assert _advance(client, TEN_YEARS).status_code == 400
    assert _clock(client)["offset_seconds"] == stopped["offset_seconds"]  # refused: unchanged
    # everything that writes a time still works at the end of the range
    assert client.post("/api/v1/tickets", json=TICKET, headers=auth).status_code == 201
    minted = client.post("/_sandbox/keys", json={"expires_in": TEN_YEARS}, headers=ADMIN)
    assert minted.status_code == 201, minted.text[:200]
    rule = {"effect": {"status": 503}, "match": {"path": "/nowhere"}, "expires_in": TEN_YEARS}
    assert client.post("/_sandbox/faults", json=rule, headers=ADMIN).status_code == 201
    assert client.get("/_sandbox/faults", headers=ADMIN).status_code == 200
    assert client.get("/_sandbox/requests", headers=ADMIN).status_code == 200


@pytest.mark.parametrize("seconds", [-1, 1e308, 10**30, "NaN", "Infinity", None])
def test_a_negative_huge_or_non_numeric_advance_is_a_400_and_leaves_the_clock(
    sandbox: tuple[TestClient, dict[str, str]], seconds: Any
) -> None:
    client, _ = sandbox
    before = _clock(client)["offset_seconds"]
    answer = _advance(client, seconds)
    assert answer.status_code == 400, answer.text[:200]
    assert answer.json()["error"]["details"][0]["field"] == "advance_seconds"
    assert _clock(client)["offset_seconds"] == before


def test_a_reset_of_every_workspace_puts_the_clock_back_and_one_workspace_does_not(
    sandbox: tuple[TestClient, dict[str, str]],
) -> None:
    client, auth = sandbox
    assert _advance(client, 3 * TEN_YEARS // 10).status_code == 200
    moved = _clock(client)["offset_seconds"]
    assert moved >= 3 * TEN_YEARS // 10
    one = client.post("/_sandbox/reset", json={"workspace": "default"}, headers=ADMIN)
    assert one.status_code == 200
    assert _clock(client)["offset_seconds"] == moved  # the shared clock stays
    assert client.post("/_sandbox/reset", headers=ADMIN).status_code == 200
    assert _clock(client)["offset_seconds"] == 0
    year = datetime.now(UTC).year
    assert _clock(client)["now"].startswith((str(year), str(year + 1)))
    created = client.post("/api/v1/tickets", json=TICKET, headers=auth).json()["data"]
    assert created["created_at"].startswith((str(year), str(year + 1)))


def test_a_reset_of_every_workspace_after_reaching_the_end_makes_the_clock_usable_again(
    sandbox: tuple[TestClient, dict[str, str]],
) -> None:
    client, _ = sandbox
    _advance_to_the_end(client)
    assert client.post("/_sandbox/reset", headers=ADMIN).status_code == 200
    assert _advance(client, TEN_YEARS).status_code == 200


@pytest.mark.parametrize("name", ["✓", "../other", "", "a" * 65])
def test_a_reset_naming_an_impossible_workspace_is_a_400(
    sandbox: tuple[TestClient, dict[str, str]], name: str
) -> None:
    client, _ = sandbox
    answer = client.post("/_sandbox/reset", json={"workspace": name}, headers=ADMIN)
    assert answer.status_code == 400, answer.text[:200]
    assert answer.json()["error"]["details"][0]["field"] == "workspace"


@pytest.mark.parametrize("expires_at", ["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00"])
def test_a_fault_rule_expiring_outside_the_writable_years_is_a_400_and_not_kept(
    sandbox: tuple[TestClient, dict[str, str]], expires_at: str
) -> None:
    """Both are valid ISO 8601 but fall before year 1 or after 9999 in UTC."""
    client, _ = sandbox
    rule = {"effect": {"status": 503}, "match": {"path": "/nowhere"}, "expires_at": expires_at}
    answer = client.post("/_sandbox/faults", json=rule, headers=ADMIN)
    assert answer.status_code == 400, answer.text[:200]
    assert answer.json()["error"]["details"][0]["field"] == "expires_at"
    listed = client.get("/_sandbox/faults", headers=ADMIN)
    assert listed.status_code == 200 and listed.json()["data"]["items"] == []

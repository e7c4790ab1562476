"""Per-request faults: the Prefer grammar and the forced answers, over a real socket."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from faults_live import LiveServer, live_server

from opsmerge_sandbox.faults.prefer import Preferences, PreferError, parse_prefer, parse_query


@pytest.fixture(scope="module")
def live() -> Iterator[LiveServer]:
    with live_server() as server:
        yield server


@pytest.fixture(autouse=True)
def _clean(live: LiveServer) -> None:
    live.clean()


# ---------------------------------------------------------------- the grammar, alone


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        (["code=429"], Preferences(code=429)),
        (["code=503, delay=120"], Preferences(code=503, delay_ms=120)),
        (["code=429; retry-after=7"], Preferences(code=429, retry_after=7)),
        (['CODE="404" , Example=missing'], Preferences(code=404, example="missing")),
        (
            ["code=200, example=first, dynamic=false"],
            Preferences(code=200, example="first", dynamic=False),
        ),
        (["dynamic"], Preferences(dynamic=True)),
        (["code=500, code=429"], Preferences(code=500)),  # RFC 7240: the first instance wins
        (["respond-async, wait=10, return=minimal"], Preferences()),  # not ours: ignored
        (["code=401", "delay=5"], Preferences(code=401, delay_ms=5)),  # several Prefer headers
    ],
)
def test_prefer_header_grammar(headers: list[str], expected: Preferences) -> None:
    assert parse_prefer(headers) == expected


@pytest.mark.parametrize(
    ("header", "name"),
    [
        ("code=abc", "code"),
        ("code=42", "code"),
        ("code=700", "code"),
        ("code=", "code"),
        ("delay=-1", "delay"),
        ("delay=60001", "delay"),
        ("delay=1.5", "delay"),
        ("retry-after=soon", "retry-after"),
        ("dynamic=maybe", "dynamic"),
        ("example=" + "x" * 101, "example"),
    ],
)
def test_prefer_header_rejects_bad_values(header: str, name: str) -> None:
    with pytest.raises(PreferError) as caught:
        parse_prefer([header])
    assert caught.value.name == name


def test_query_twins_name_the_parameter_they_came_from() -> None:
    prefs, sources = parse_query({"__code": ["503"], "__delay": ["10"], "__retry-after": ["3"]})
    assert prefs == Preferences(code=503, delay_ms=10, retry_after=3)
    assert sources == {"code": "__code", "delay": "__delay", "retry-after": "__retry-after"}
    with pytest.raises(PreferError) as caught:
        parse_query({"__dynamic": ["yes"]})
    assert caught.value.name == "__dynamic"


# ---------------------------------------------------------------- forced answers, from httpx


def test_forced_429_is_a_real_rate_limit_answer(live: LiveServer) -> None:
    with live.api() as api:
        response = api.get("/api/v1/clients", headers={"Prefer": "code=429"})
    assert response.status_code == 429
    assert response.json()["error"]["code"] == "RATE_LIMITED"
    assert response.headers["x-ratelimit-remaining"] == "0"
    assert response.headers["x-ratelimit-limit"] == "300"
    assert int(response.headers["retry-after"]) >= 1
    assert response.headers["retry-after"] == response.headers["x-ratelimit-reset"]
    assert "warning" not in response.headers  # 429 is documented for listClients
    assert response.headers["preference-applied"] == "code=429"


def test_forced_429_takes_our_retry_after(live: LiveServer) -> None:
    with live.api() as api:
        response = api.get("/api/v1/clients", headers={"Prefer": "code=429, retry-after=2"})
    assert response.status_code == 429
    assert response.headers["retry-after"] == "2"
    assert response.headers["x-ratelimit-reset"] == "2"


def test_forced_401_challenges_like_a_rejected_key(live: LiveServer) -> None:
    with live.api() as api:
        response = api.get("/api/v1/tickets", headers={"Prefer": "code=401"})
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "AUTH_REQUIRED"
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert "x-ratelimit-remaining" not in response.headers  # no key was recognised


@pytest.mark.parametrize(
    ("status", "code"),
    [(403, "FORBIDDEN"), (500, "INTERNAL_ERROR"), (503, "SERVICE_UNAVAILABLE"), (404, "NOT_FOUND")],
)
def test_forced_statuses_carry_the_catalogue_code(live: LiveServer, status: int, code: str) -> None:
    with live.api() as api:
        response = api.get("/api/v1/clients", headers={"Prefer": f"code={status}"})
    assert response.status_code == status
    assert response.json() == {
        "error": {"code": code, "message": response.json()["error"]["message"]}
    }
    assert response.json()["error"]["message"]
    assert "x-ratelimit-limit" in response.headers
    assert "warning" not in response.headers


@pytest.mark.parametrize("status", [502, 418, 409])
def test_an_undocumented_status_says_so_in_a_warning(live: LiveServer, status: int) -> None:
    with live.api() as api:
        response = api.get("/api/v1/clients", headers={"Prefer": f"code={status}"})
    assert response.status_code == status
    warning = response.headers["warning"]
    assert warning.startswith('299 - "') and str(status) in warning and "listClients" in warning
    assert response.json()["error"]["code"]


def test_query_twin_forces_a_status_without_headers(live: LiveServer) -> None:
    with live.api() as api:
        response = api.get("/api/v1/clients", params={"__code": "503", "__retry-after": "4"})
        assert response.status_code == 503
        assert response.headers["retry-after"] == "4"
        # the query twin wins over the header, field by field
        response = api.get(
            "/api/v1/clients", params={"__code": "500"}, headers={"Prefer": "code=429"}
        )
        assert response.status_code == 500


def test_prism_style_success_preferences_change_nothing(live: LiveServer) -> None:
    with live.api() as api:
        plain = api.get("/api/v1/clients")
        preferred = api.get(
            "/api/v1/clients", headers={"Prefer": "code=200, example=x, dynamic=true"}
        )
        created = api.post(
            "/api/v1/clients", json={"name": "Prefer Ltd"}, headers={"Prefer": "code=201"}
        )
    assert preferred.status_code == 200 and preferred.json() == plain.json()
    assert preferred.headers["preference-applied"] == "code=200, example=x, dynamic=true"
    assert created.status_code == 201


@pytest.mark.parametrize(
    ("prefer", "fragment"),
    [
        ("code=abc", "whole number"),
        ("code=42", "three-digit"),
        ("code=204", "success status"),
        ("code=302", "success status"),
        ("delay=99999999", "from 0 to 60000"),
        ("delay=-5", "whole number"),
        ("retry-after=5", "code=429 or code=503"),
        ("code=500, retry-after=5", "code=429 or code=503"),
        ("dynamic=maybe", "true or false"),
    ],
)
def test_invalid_preferences_are_a_400_naming_the_prefer_header(
    live: LiveServer, prefer: str, fragment: str
) -> None:
    with live.api() as api:
        response = api.get("/api/v1/clients", headers={"Prefer": prefer})
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "VALIDATION_ERROR"
    assert "Prefer" in error["message"] and fragment in error["message"]
    assert error["details"][0]["location"] == "header"
    assert error["details"][0]["field"] == "Prefer"


def test_invalid_query_twin_names_the_parameter(live: LiveServer) -> None:
    with live.api() as api:
        response = api.get("/api/v1/clients", params={"__code": "nope"})
    assert response.status_code == 400
    assert response.json()["error"]["details"][0] == {
        "location": "query",
        "field": "__code",
        "message": "code='nope': the status must be a three-digit number",
    }


def test_a_success_code_of_another_operation_is_refused(live: LiveServer) -> None:
    with live.api() as api:
        response = api.post(
            "/api/v1/clients", json={"name": "Wrong Ltd"}, headers={"Prefer": "code=200"}
        )
    assert response.status_code == 400
    assert "201" in response.json()["error"]["message"]


def test_forced_answers_skip_the_handler_and_show_in_the_journal(live: LiveServer) -> None:
    with live.api() as api:
        before = api.get("/api/v1/clients", params={"per_page": 1}).json()["data"]["total"]
        forced = api.post(
            "/api/v1/clients", json={"name": "Never Ltd"}, headers={"Prefer": "code=503"}
        )
        after = api.get("/api/v1/clients", params={"per_page": 1}).json()["data"]["total"]
    assert forced.status_code == 503 and after == before
    with live.admin() as admin:
        items = admin.get("/_sandbox/requests").json()["data"]["items"]
    assert [(i["method"], i["status"], i["fault"]) for i in items] == [
        ("GET", 200, None),
        ("POST", 503, "prefer code=503"),
        ("GET", 200, None),
    ]
    assert items[1]["key_name"] == "Owner - full access"

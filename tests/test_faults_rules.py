"""Fault rules over a real socket: matching, next N, every Nth, seeded chance, expiry, scenarios,
the control endpoints and the YAML file loaded at start."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from faults_live import LiveServer, live_server

from opsmerge_sandbox.clock import Clock
from opsmerge_sandbox.errors import ApiError
from opsmerge_sandbox.faults.loader import FaultsFileError, load_faults
from opsmerge_sandbox.faults.rules import MAX_RULES, Effect, FaultRegistry, Match, Rule

FAULTS_YAML = """\
rules:
  - name: from the file
    match: {operation_id: listSites, workspace: yaml-ws}
    effect: {status: 502}
    times: 2
  - scenario: flaky-5xx
    params: {probability: 1, seed: 5}
    match: {path: /api/v1/contacts*, workspace: yaml-ws}
  - scenario: expiring-key
    name: ci key
    params: {expires_in: 120, secret: om_sbx_ci_expiring_key_0123456789}
"""


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    path = tmp_path_factory.mktemp("faults") / "faults.yaml"
    path.write_text(FAULTS_YAML)
    with live_server(faults_file=path) as server:
        yield server


@pytest.fixture(autouse=True)
def _clean(live: LiveServer, request: pytest.FixtureRequest) -> Iterator[None]:
    # every test but the one reading the file's rules starts with none, whichever ran before
    # it (a run of a few of these tests may leave the file's rules in place)
    if request.node.originalname != "test_rules_from_the_yaml_file_are_live_at_start":
        live.clean()
    yield
    live.clean()


def _statuses(live: LiveServer, n: int, path: str = "/api/v1/clients", **kwargs: Any) -> list[int]:
    with live.api(**kwargs) as api:
        return [api.get(path).status_code for _ in range(n)]


def _rules(live: LiveServer, **params: str) -> list[dict[str, Any]]:
    with live.admin() as admin:
        return admin.get("/_sandbox/faults", params=params).json()["data"]["items"]  # type: ignore[no-any-return]


def _advance(live: LiveServer, seconds: float) -> None:
    with live.admin() as admin:
        assert admin.post("/_sandbox/clock", json={"advance_seconds": seconds}).status_code == 200


# ---------------------------------------------------------------- the file loaded at start
# (first, before any test clears the rules it installed)


def test_rules_from_the_yaml_file_are_live_at_start(live: LiveServer) -> None:
    listed = _rules(live)
    assert [(r["name"], r["scenario"]) for r in listed] == [
        ("from the file", None),
        (None, "flaky-5xx"),
        ("ci key", "expiring-key"),
    ]
    assert _statuses(live, 3, "/api/v1/sites", workspace="yaml-ws") == [502, 502, 200]
    assert _statuses(live, 1, "/api/v1/sites") == [200]  # the rule is scoped to yaml-ws
    assert _statuses(live, 2, "/api/v1/contacts", workspace="yaml-ws") == [503, 503]
    with live.api(key="om_sbx_ci_expiring_key_0123456789") as api:
        assert api.get("/api/v1/auth/me").json()["data"]["key"]["name"] == "ci key"


def test_a_bad_rule_in_the_file_names_the_file_rule_and_field(
    live: LiveServer, tmp_path: Path
) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(
        "- effect: {status: 503}\n- match: {operation_id: noSuchOp}\n  effect: {status: 500}\n"
    )
    registry = live.state.faults
    with pytest.raises(FaultsFileError, match=r"bad\.yaml: rule 2: .*match\.operation_id"):
        load_faults(path, live.state, registry)
    path.write_text("rules: {not: a list}\n")
    with pytest.raises(FaultsFileError, match="expected a list"):
        load_faults(path, live.state, registry)


# ---------------------------------------------------------------- when a rule fires


def test_next_n_fires_exactly_n_times_then_lists_as_exhausted(live: LiveServer) -> None:
    rule = live.add_rule(
        {"match": {"operation_id": "listClients"}, "effect": {"status": 503}, "times": 3}
    )
    assert rule["remaining"] == 3 and rule["status"] == "active"
    assert _statuses(live, 5) == [503, 503, 503, 200, 200]
    (listed,) = _rules(live)
    assert (listed["matched"], listed["fired"], listed["remaining"], listed["status"]) == (
        3,
        3,
        0,
        "exhausted",
    )


def test_every_nth_matching_request(live: LiveServer) -> None:
    live.add_rule({"match": {"method": "GET"}, "effect": {"status": 500}, "every": 3})
    assert _statuses(live, 7) == [200, 200, 500, 200, 200, 500, 200]
    (listed,) = _rules(live)
    assert (listed["matched"], listed["fired"]) == (7, 2)


def test_a_rule_expires_on_the_sandbox_clock(live: LiveServer) -> None:
    live.add_rule(
        {"match": {"operation_id": "listClients"}, "effect": {"status": 503}, "expires_in": 30}
    )
    assert _statuses(live, 1) == [503]
    _advance(live, 29)
    assert _statuses(live, 1) == [503]
    _advance(live, 2)
    assert _statuses(live, 1) == [200]
    assert _rules(live)[0]["status"] == "expired"


def _chance_run(live: LiveServer, seed: int) -> list[int]:
    with live.admin() as admin:
        admin.delete("/_sandbox/faults")
    live.add_rule(
        {
            "match": {"operation_id": "listClients"},
            "effect": {"status": 503},
            "probability": 0.3,
            "seed": seed,
        }
    )
    return _statuses(live, 40)


def test_the_same_seed_gives_the_same_faults_and_another_seed_others(live: LiveServer) -> None:
    first, second, other = _chance_run(live, 7), _chance_run(live, 7), _chance_run(live, 8)
    assert first == second
    assert 503 in first and 200 in first
    assert other != first


def test_probability_without_a_seed_uses_the_recipe_seed(live: LiveServer) -> None:
    rule = live.add_rule({"effect": {"status": 503}, "probability": 0.5})
    assert rule["seed"] == live.state.recipe.seed


def test_the_first_rule_that_fires_wins(live: LiveServer) -> None:
    live.add_rule({"match": {"operation_id": "listClients"}, "effect": {"status": 502}, "times": 1})
    live.add_rule({"match": {"operation_id": "listClients"}, "effect": {"status": 504}})
    assert _statuses(live, 3) == [502, 504, 504]


# ---------------------------------------------------------------- what a rule matches


OWNER, ADMIN = "Owner - full", "Admin - full"
TICKETS = ("GET", "/api/v1/tickets", OWNER, "match-ws")


@pytest.mark.parametrize(
    ("match", "hit", "miss"),
    [
        ({"method": "post"}, ("POST", "/api/v1/tickets", OWNER, None), TICKETS),
        ({"path": "/api/v1/tickets*"}, TICKETS, ("GET", "/api/v1/clients", OWNER, "match-ws")),
        ({"path": "/tickets"}, TICKETS, ("GET", "/api/v1/tickets/tkt_1", OWNER, "match-ws")),
        ({"operation_id": "listTickets"}, TICKETS, ("GET", "/api/v1/clients", OWNER, "match-ws")),
        ({"key": "Owner - full access"}, TICKETS, ("GET", "/api/v1/tickets", ADMIN, "match-ws")),
        ({"workspace": "match-ws"}, TICKETS, ("GET", "/api/v1/tickets", OWNER, "other-ws")),
    ],
)
def test_match_fields_pick_their_requests(
    live: LiveServer, match: dict[str, str], hit: tuple[str, ...], miss: tuple[str, ...]
) -> None:
    live.add_rule({"match": match, "effect": {"status": 500}})

    def send(method: str, path: str, key: str, workspace: str | None) -> int:
        with live.api(key=live.key(key), workspace=workspace) as api:
            body = {"title": "x"} if method == "POST" else None
            return api.request(method, path, json=body).status_code

    assert send(*hit) == 500
    assert send(*miss) != 500


def test_a_key_matches_by_id_too(live: LiveServer) -> None:
    key_id = next(k.id for k in live.state.keys if k.name.startswith("Admin - full"))
    live.add_rule({"match": {"key": key_id}, "effect": {"status": 503}})
    assert _statuses(live, 1, key=live.key("Admin - full")) == [503]
    assert _statuses(live, 1) == [200]


# ---------------------------------------------------------------- scenarios


def test_rate_limit_storm_scenario(live: LiveServer) -> None:
    rule = live.add_rule({"scenario": "rate-limit-storm", "params": {"every": 4}})
    assert rule["effect"] == {"status": 429, "retry_after": 1} and rule["every"] == 4
    with live.api() as api:
        answers = [api.get("/api/v1/clients") for _ in range(8)]
    assert [a.status_code for a in answers] == [200, 200, 200, 429] * 2
    storm = answers[3]
    assert storm.headers["retry-after"] == "1"
    assert storm.headers["x-ratelimit-remaining"] == "0"
    assert storm.json()["error"]["code"] == "RATE_LIMITED"


def test_flaky_5xx_scenario_defaults_to_a_seeded_five_percent_of_503s(live: LiveServer) -> None:
    rule = live.add_rule({"scenario": "flaky-5xx", "params": {"seed": 3}})
    assert (rule["probability"], rule["seed"], rule["effect"]) == (0.05, 3, {"status": 503})
    statuses = _statuses(live, 120)
    assert set(statuses) == {200, 503}
    assert 1 <= statuses.count(503) <= 15


def test_expiring_key_scenario_mints_a_key_that_dies_on_time(live: LiveServer) -> None:
    rule = live.add_rule({"scenario": "expiring-key", "params": {"expires_in": 60}})
    secret = rule["key"]["key"]
    with live.api(key=secret) as api:
        assert api.get("/api/v1/auth/me").status_code == 200
        _advance(live, 61)
        expired = api.get("/api/v1/auth/me")
    assert expired.status_code == 401
    assert "expired" in expired.json()["error"]["message"]
    assert expired.headers["www-authenticate"].startswith("Bearer")
    (listed,) = [r for r in _rules(live) if r["id"] == rule["id"]]
    assert listed["status"] == "expired" and "key" not in listed["key"]  # the secret is shown once


def test_expiring_key_copies_a_scoped_key(live: LiveServer) -> None:
    rule = live.add_rule(
        {
            "scenario": "expiring-key",
            "params": {"like": "Owner - agents read only", "expires_in": 30},
        }
    )
    with live.api(key=rule["key"]["key"]) as api:
        assert api.get("/api/v1/agents").status_code == 200
        assert api.get("/api/v1/clients").status_code == 403


def test_deleting_an_expiring_key_scenario_revokes_its_key(live: LiveServer) -> None:
    rule = live.add_rule({"scenario": "expiring-key", "params": {"expires_in": 600}})
    with live.admin() as admin:
        assert admin.delete(f"/_sandbox/faults/{rule['id']}").status_code == 200
    with live.api(key=rule["key"]["key"]) as api:
        assert api.get("/api/v1/auth/me").status_code == 401


def test_scenarios_are_listed(live: LiveServer) -> None:
    with live.admin() as admin:
        items = admin.get("/_sandbox/faults/scenarios").json()["data"]["items"]
    assert [i["name"] for i in items] == ["rate-limit-storm", "flaky-5xx", "expiring-key"]


# ---------------------------------------------------------------- the control endpoints


def test_delete_one_rule_and_then_all(live: LiveServer) -> None:
    first = live.add_rule({"effect": {"status": 500}, "match": {"operation_id": "listSites"}})
    live.add_rule({"effect": {"status": 500}, "match": {"operation_id": "listContacts"}})
    with live.admin() as admin:
        removed = admin.delete(f"/_sandbox/faults/{first['id']}")
        assert removed.status_code == 200 and removed.json()["data"]["id"] == first["id"]
        assert (
            admin.delete(f"/_sandbox/faults/{first['id']}").json()["error"]["code"] == "NOT_FOUND"
        )
        assert len(_rules(live)) == 1
        assert admin.delete("/_sandbox/faults").json()["data"]["removed"] == 1
    assert _rules(live) == []


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        ({"effect": {"status": 302}}, 400, "effect.status"),
        ({"effect": {}}, 400, "effect"),
        ({"match": {"operation_id": "listClients"}}, 400, "effect"),
        ({"effect": {"connection": "reset", "status": 500}}, 400, "effect.status"),
        ({"effect": {"connection": "explode"}}, 400, "effect.connection"),
        ({"effect": {"status": 500, "retry_after": 3}}, 400, "effect.retry_after"),
        ({"effect": {"status": 500}, "probability": 1.5}, 400, "probability"),
        ({"effect": {"status": 500}, "seed": 3}, 400, "seed"),
        ({"effect": {"status": 500}, "surprise": 1}, 400, "surprise"),
        ({"effect": {"status": 500}, "match": {"operation_id": "nope"}}, 422, "match.operation_id"),
        ({"effect": {"status": 500}, "match": {"key": "nobody"}}, 422, "match.key"),
        ({"effect": {"status": 500}, "match": {"method": "BREW"}}, 400, "match.method"),
        ({"scenario": "flaky-5xx", "params": {"probability": 2}}, 400, "params.probability"),
        ({"scenario": "rate-limit-storm", "every": 3}, 400, "every"),
        ({"scenario": "expiring-key", "params": {"like": "ghost"}}, 422, "params.like"),
    ],
)
def test_bad_rules_are_refused_with_the_field_named(
    live: LiveServer, body: dict[str, Any], status: int, field: str
) -> None:
    with live.admin() as admin:
        response = admin.post("/_sandbox/faults", json=body)
    assert response.status_code == status, response.text
    assert response.json()["error"]["details"][0]["field"] == field
    assert _rules(live) == []


def test_the_control_endpoints_need_the_admin_token(live: LiveServer) -> None:
    with httpx.Client(base_url=live.base_url) as anonymous:
        response = anonymous.post("/_sandbox/faults", json={"effect": {"status": 500}})
    assert response.status_code == 401
    assert _rules(live) == []


def test_a_forcing_prefer_header_wins_over_rules_and_a_success_code_does_not(
    live: LiveServer,
) -> None:
    live.add_rule({"match": {"operation_id": "listClients"}, "effect": {"status": 500}})
    with live.api() as api:
        forced = api.get("/api/v1/clients", headers={"Prefer": "code=503"})
        habitual = api.get("/api/v1/clients", headers={"Prefer": "code=200"})
    assert forced.status_code == 503
    assert habitual.status_code == 500
    assert "preference-applied" not in habitual.headers  # the rule answered, not the preference
    (listed,) = _rules(live)
    assert (listed["matched"], listed["fired"]) == (1, 1)


def test_a_rule_forced_401_looks_like_a_rejected_key(live: LiveServer) -> None:
    live.add_rule({"match": {"operation_id": "listClients"}, "effect": {"status": 401}})
    with live.api() as api:
        response = api.get("/api/v1/clients")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "AUTH_REQUIRED"
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert not any(h.startswith("x-ratelimit-") for h in response.headers)


def test_the_rule_list_is_bounded() -> None:
    registry = FaultRegistry(Clock())
    for _ in range(MAX_RULES):
        registry.add(Rule(registry.new_id(), None, Match(), Effect(status=500), "now"))
    with pytest.raises(ApiError) as refused:
        registry.add(Rule(registry.new_id(), None, Match(), Effect(status=500), "now"))
    assert refused.value.status == 409
    assert len(registry.rules) == MAX_RULES

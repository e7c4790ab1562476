"""Resource behaviour: lists, pagination, filters, reads, writes, actions and nested lists."""

from __future__ import annotations

from typing import Any

from tests.conftest import ADMIN, bearer, every_record, key_named


def _world(client: Any, collection: str) -> list[dict[str, Any]]:
    return client.app.state.sandbox.bases[collection].records


def test_list_defaults_to_page_one_of_fifty_with_the_true_total(client: Any, owner: Any) -> None:
    body = client.get("/api/v1/agents", headers=owner).json()["data"]
    assert body["page"] == 1 and body["per_page"] == 50
    assert len(body["items"]) == 50
    assert body["total"] == len(_world(client, "agents"))


def test_pages_walk_every_record_once_in_a_stable_order(client: Any, owner: Any) -> None:
    seen: list[str] = []
    page = 1
    while True:
        data = client.get(f"/api/v1/sites?per_page=17&page={page}", headers=owner).json()["data"]
        if not data["items"]:
            break
        seen += [r["id"] for r in data["items"]]
        page += 1
    assert len(seen) == len(set(seen)) == data["total"] == len(_world(client, "sites"))
    again = client.get("/api/v1/sites?per_page=17&page=2", headers=owner).json()["data"]["items"]
    assert [r["id"] for r in again] == seen[17:34]


def test_a_page_past_the_end_is_empty_with_the_true_total(client: Any, owner: Any) -> None:
    data = client.get("/api/v1/clients?page=999", headers=owner).json()["data"]
    assert data["items"] == [] and data["total"] == len(_world(client, "clients"))
    assert data["page"] == 999


def test_per_page_over_one_hundred_is_a_validation_error_naming_the_field(
    client: Any, owner: Any
) -> None:
    r = client.get("/api/v1/agents?per_page=101", headers=owner)
    assert r.status_code == 400
    err = r.json()["error"]
    assert err["code"] == "VALIDATION_ERROR"
    assert err["details"][0]["location"] == "query" and err["details"][0]["field"] == "per_page"
    assert (
        client.get("/api/v1/agents?per_page=100", headers=owner).json()["data"]["per_page"] == 100
    )


def test_page_below_one_and_non_integers_are_rejected(client: Any, owner: Any) -> None:
    for query, field in (
        ("page=0", "page"),
        ("page=-3", "page"),
        ("per_page=0", "per_page"),
        ("page=two", "page"),
        ("per_page=1.5", "per_page"),
    ):
        r = client.get(f"/api/v1/tickets?{query}", headers=owner)
        assert r.status_code == 400, query
        assert r.json()["error"]["details"][0]["field"] == field


def test_filters_count_the_total_after_filtering(client: Any, owner: Any) -> None:
    expected = [a for a in _world(client, "agents") if a["status"] == "offline"]
    data = client.get("/api/v1/agents?status=offline&per_page=100", headers=owner).json()["data"]
    assert data["total"] == len(expected)
    assert all(a["status"] == "offline" for a in data["items"])
    bad = client.get("/api/v1/agents?status=sleeping", headers=owner)
    assert bad.status_code == 400 and bad.json()["error"]["details"][0]["field"] == "status"


def test_combined_filters_and_search(client: Any, owner: Any) -> None:
    tickets = _world(client, "tickets")
    expected = [t for t in tickets if t["client_id"] == "cli_acme" and t["priority"] == "High"]
    r = client.get("/api/v1/tickets?client_id=cli_acme&priority=High&per_page=100", headers=owner)
    assert r.json()["data"]["total"] == len(expected)
    found = client.get("/api/v1/clients?q=ACME", headers=owner).json()["data"]["items"]
    assert any(c["id"] == "cli_acme" for c in found)


def _as_read(agent: dict[str, Any]) -> tuple[str, str, str]:
    """Text sorts as people read it: case ignored, the case then the id breaking ties."""
    return agent["hostname"].casefold(), agent["hostname"], agent["id"]


def test_sort_orders_ascending_and_descending(client: Any, owner: Any) -> None:
    up = client.get("/api/v1/agents?sort=hostname&per_page=100", headers=owner).json()["data"][
        "items"
    ]
    down = client.get("/api/v1/agents?sort=-hostname&per_page=100", headers=owner).json()["data"][
        "items"
    ]
    world = _world(client, "agents")
    assert [a["id"] for a in up] == [a["id"] for a in sorted(world, key=_as_read)][:100]
    assert [a["id"] for a in down] == [
        a["id"] for a in sorted(world, key=_as_read, reverse=True)
    ][:100]


def test_text_sorts_without_regard_to_case(client: Any, owner: Any) -> None:
    names = [a["hostname"] for a in _world(client, "agents")]
    assert any(n.islower() for n in names) and any(n.isupper() for n in names)
    up = every_record(client, "/api/v1/agents", owner, sort="hostname")
    read = [a["hostname"].casefold() for a in up]
    assert read == sorted(read)
    first = client.get("/api/v1/clients?sort=name&per_page=1", headers=owner).json()["data"]
    names = [c["name"] for c in _world(client, "clients")]
    assert first["items"][0]["name"] == min(names, key=str.casefold)


def test_get_unknown_id_is_not_found_in_the_envelope(client: Any, owner: Any) -> None:
    r = client.get("/api/v1/agents/agt_doesnotexist", headers=owner)
    assert r.status_code == 404
    assert r.json()["error"]["code"] == "NOT_FOUND"


def test_unknown_path_and_wrong_method_answer_in_the_envelope(client: Any, owner: Any) -> None:
    r = client.get("/api/v1/widgets", headers=owner)
    assert r.status_code == 404 and r.json()["error"]["code"] == "NOT_FOUND"
    r = client.put("/api/v1/agents", headers=owner)
    assert r.status_code == 405 and r.json()["error"]["code"] == "METHOD_NOT_ALLOWED"
    assert "GET" in r.headers["allow"]


def test_create_assigns_id_timestamps_and_sequence_and_reads_back(fresh_client: Any) -> None:
    h = bearer(key_named(fresh_client.app, "Owner - full"))
    r = fresh_client.post(
        "/api/v1/tickets",
        headers=h,
        json={"subject": "Printer jam", "client_id": "cli_acme", "type": "Service Request"},
    )
    assert r.status_code == 201
    t = r.json()["data"]
    assert t["id"].startswith("tkt_") and t["created_at"] == t["updated_at"]
    assert t["reference"] == f"REQ-{t['number']}" and t["status"] == "New"
    assert fresh_client.get(f"/api/v1/tickets/{t['id']}", headers=h).json()["data"] == t
    second = fresh_client.post(
        "/api/v1/tickets", headers=h, json={"subject": "Two", "client_id": "cli_acme"}
    )
    assert second.json()["data"]["number"] == t["number"] + 1


def test_create_refuses_read_only_fields_and_changes_nothing(fresh_client: Any) -> None:
    h = bearer(key_named(fresh_client.app, "Owner - full"))
    before = fresh_client.get("/api/v1/tickets?per_page=1", headers=h).json()["data"]["total"]
    r = fresh_client.post(
        "/api/v1/tickets",
        headers=h,
        json={"subject": "x", "client_id": "cli_acme", "number": 1, "id": "tkt_mine"},
    )
    assert r.status_code == 400
    fields = {d["field"] for d in r.json()["error"]["details"]}
    assert {"number", "id"} & fields
    assert (
        fresh_client.get("/api/v1/tickets?per_page=1", headers=h).json()["data"]["total"] == before
    )


def test_create_with_a_missing_reference_is_refused_with_a_clear_code(fresh_client: Any) -> None:
    h = bearer(key_named(fresh_client.app, "Owner - full"))
    r = fresh_client.post(
        "/api/v1/tickets", headers=h, json={"subject": "x", "client_id": "cli_ghost"}
    )
    assert r.status_code == 422
    err = r.json()["error"]
    assert err["code"] == "REFERENCE_NOT_FOUND" and err["details"][0]["field"] == "client_id"


def test_missing_required_fields_are_each_named(fresh_client: Any) -> None:
    h = bearer(key_named(fresh_client.app, "Owner - full"))
    r = fresh_client.post("/api/v1/tickets", headers=h, json={"priority": "Urgent"})
    assert r.status_code == 400
    fields = {d["field"] for d in r.json()["error"]["details"]}
    assert {"subject", "client_id", "priority"} <= fields


def test_patch_merges_and_delete_makes_the_id_not_found(fresh_client: Any) -> None:
    h = bearer(key_named(fresh_client.app, "Owner - full"))
    before = fresh_client.get("/api/v1/contacts/con_acmejane", headers=h).json()["data"]
    r = fresh_client.patch(
        "/api/v1/contacts/con_acmejane", headers=h, json={"job_title": "IT lead"}
    )
    after = r.json()["data"]
    assert after["job_title"] == "IT lead" and after["email"] == before["email"]
    assert after["updated_at"] >= before["updated_at"]
    made = fresh_client.post(
        "/api/v1/sites", headers=h, json={"client_id": "cli_acme", "name": "Annex"}
    )
    sid = made.json()["data"]["id"]
    assert fresh_client.delete(f"/api/v1/sites/{sid}", headers=h).json()["data"] == {
        "id": sid,
        "deleted": True,
    }
    assert fresh_client.get(f"/api/v1/sites/{sid}", headers=h).status_code == 404
    assert fresh_client.delete(f"/api/v1/sites/{sid}", headers=h).status_code == 404


def test_delete_refuses_a_record_still_referenced(fresh_client: Any) -> None:
    h = bearer(key_named(fresh_client.app, "Owner - full"))
    r = fresh_client.delete("/api/v1/roles/rol_technician", headers=h)
    assert r.status_code == 409
    r = fresh_client.delete("/api/v1/clients/cli_acme", headers=h)
    assert r.status_code == 409 and r.json()["error"]["code"] == "IN_USE"


def test_reboot_creates_a_request_that_can_be_fetched_and_moves_on_with_the_clock(
    fresh_client: Any,
) -> None:
    h = bearer(key_named(fresh_client.app, "Owner - full"))
    r = fresh_client.post(
        "/api/v1/agents/agt_acmesrv01/reboot", headers=h, json={"reason": "patching"}
    )
    assert r.status_code == 202
    reboot = r.json()["data"]
    assert reboot["status"] == "queued" and reboot["agent_id"] == "agt_acmesrv01"
    listed = fresh_client.get("/api/v1/agents/agt_acmesrv01/reboots", headers=h).json()["data"][
        "items"
    ]
    assert reboot["id"] in [x["id"] for x in listed]
    fresh_client.post("/_sandbox/clock", headers=ADMIN, json={"advance_seconds": 31})
    listed = fresh_client.get("/api/v1/agents/agt_acmesrv01/reboots", headers=h).json()["data"][
        "items"
    ]
    done = next(x for x in listed if x["id"] == reboot["id"])
    assert done["status"] == "completed" and done["completed_at"] is not None


def test_reboot_of_an_offline_agent_is_a_conflict(fresh_client: Any) -> None:
    h = bearer(key_named(fresh_client.app, "Owner - full"))
    offline = fresh_client.get("/api/v1/agents?status=offline&per_page=1", headers=h).json()[
        "data"
    ]["items"][0]
    r = fresh_client.post(f"/api/v1/agents/{offline['id']}/reboot", headers=h)
    assert r.status_code == 409 and r.json()["error"]["code"] == "AGENT_OFFLINE"


def test_script_run_moves_from_queued_to_completed(fresh_client: Any) -> None:
    h = bearer(key_named(fresh_client.app, "Owner - full"))
    scripts = fresh_client.get("/api/v1/scripts?per_page=100", headers=h).json()["data"]["items"]
    # a script for the agent's platform (a Windows server): others are refused
    script = next(s for s in scripts if "windows" in s["platforms"])
    r = fresh_client.post(
        f"/api/v1/scripts/{script['id']}/run", headers=h, json={"agent_ids": ["agt_acmesrv01"]}
    )
    assert r.status_code == 202, r.text
    run = r.json()["data"]
    assert run["status"] == "queued" and run["script_id"] == script["id"]
    fresh_client.post("/_sandbox/clock", headers=ADMIN, json={"advance_seconds": 3})
    assert (
        fresh_client.get(f"/api/v1/script-runs/{run['id']}", headers=h).json()["data"]["status"]
        == "running"
    )
    fresh_client.post("/_sandbox/clock", headers=ADMIN, json={"advance_seconds": 10})
    final = fresh_client.get(f"/api/v1/script-runs/{run['id']}", headers=h).json()["data"]
    assert final["status"] == "completed" and final["exit_code"] == 0 and final["finished_at"]


def test_alert_acknowledge_then_resolve_and_illegal_transition(fresh_client: Any) -> None:
    h = bearer(key_named(fresh_client.app, "Owner - full"))
    alert = fresh_client.get("/api/v1/alerts?status=open&per_page=1", headers=h).json()["data"][
        "items"
    ][0]
    acked = fresh_client.post(f"/api/v1/alerts/{alert['id']}/acknowledge", headers=h).json()["data"]
    assert acked["status"] == "acknowledged" and acked["acknowledged_by"] == "usr_owner"
    again = fresh_client.post(f"/api/v1/alerts/{alert['id']}/acknowledge", headers=h)
    assert again.status_code == 409 and again.json()["error"]["code"] == "CONFLICT"
    resolved = fresh_client.post(f"/api/v1/alerts/{alert['id']}/resolve", headers=h).json()["data"]
    assert resolved["status"] == "resolved" and resolved["resolved_at"]


def test_ticket_comments_are_a_nested_list(fresh_client: Any) -> None:
    h = bearer(key_named(fresh_client.app, "Owner - full"))
    r = fresh_client.post(
        "/api/v1/tickets/tkt_acmeprinter/comments", headers=h, json={"body": "On my way."}
    )
    assert r.status_code == 201
    comment = r.json()["data"]
    assert comment["ticket_id"] == "tkt_acmeprinter" and comment["author_id"] == "usr_owner"
    items = fresh_client.get(
        "/api/v1/tickets/tkt_acmeprinter/comments?per_page=100", headers=h
    ).json()["data"]
    assert comment["id"] in [c["id"] for c in items["items"]]
    assert all(c["ticket_id"] == "tkt_acmeprinter" for c in items["items"])
    assert fresh_client.get("/api/v1/tickets/tkt_nope/comments", headers=h).status_code == 404


def test_malformed_json_wrong_type_and_oversized_bodies(fresh_client: Any) -> None:
    h = bearer(key_named(fresh_client.app, "Owner - full"))
    before = fresh_client.get("/api/v1/clients?per_page=1", headers=h).json()["data"]["total"]
    r = fresh_client.post(
        "/api/v1/clients", headers={**h, "Content-Type": "application/json"}, content=b"{name:"
    )
    assert r.status_code == 400 and r.json()["error"]["code"] == "MALFORMED_JSON"
    r = fresh_client.post(
        "/api/v1/clients", headers={**h, "Content-Type": "text/plain"}, content=b'{"name": "x"}'
    )
    assert r.status_code == 415 and r.json()["error"]["code"] == "UNSUPPORTED_MEDIA_TYPE"
    big = b'{"name": "' + b"x" * (1024 * 1024 + 10) + b'"}'
    r = fresh_client.post(
        "/api/v1/clients", headers={**h, "Content-Type": "application/json"}, content=big
    )
    assert r.status_code == 413 and r.json()["error"]["code"] == "PAYLOAD_TOO_LARGE"
    r = fresh_client.post("/api/v1/clients", headers=h, json=["not", "an", "object"])
    assert r.status_code == 400 and r.json()["error"]["code"] == "VALIDATION_ERROR"
    assert (
        fresh_client.get("/api/v1/clients?per_page=1", headers=h).json()["data"]["total"] == before
    )


def test_auth_me_returns_the_full_access_identity(client: Any, owner: Any) -> None:
    me = client.get("/api/v1/auth/me", headers=owner).json()["data"]
    assert me["user"]["id"] == "usr_owner" and me["key"]["access"] == "full"
    assert "agents:execute" in me["scopes"] and me["rate_limit"]["limit"] == 300


def test_without_strict_mode_pre_encoded_answers_match_and_follow_writes() -> None:
    """Outside strict mode seeded records are served pre-encoded; a write must show through."""
    from litestar.testing import TestClient

    from opsmerge_sandbox.app import create_app
    from opsmerge_sandbox.settings import Settings
    from tests.conftest import ADMIN_TOKEN, make_app

    fast = create_app(Settings(admin_token=ADMIN_TOKEN, strict=False))
    strict = make_app()
    h = bearer(key_named(fast, "Owner - full"))
    with (
        TestClient(fast, base_url="http://sandbox.local") as f,
        TestClient(strict, base_url="http://sandbox.local") as s,
    ):
        for path in (
            "/api/v1/agents?per_page=100",
            "/api/v1/agents/agt_acmesrv01",
            "/api/v1/tickets?status=Open",
        ):
            # times that move with the clock (an agent's last check-in) agree within one
            # second: a pair read across a second's turn is read again
            for _ in range(3):
                fast_answer = f.get(path, headers=h).json()
                strict_answer = s.get(path, headers=h).json()
                if fast_answer == strict_answer:
                    break
            assert fast_answer == strict_answer
        f.patch("/api/v1/agents/agt_acmesrv01", headers=h, json={"billing_category": "laptop"})
        assert (
            f.get("/api/v1/agents/agt_acmesrv01", headers=h).json()["data"]["billing_category"]
            == "laptop"
        )
        listed = f.get("/api/v1/agents?per_page=100&sort=hostname", headers=h).json()["data"][
            "items"
        ]
        assert next(a for a in listed if a["id"] == "agt_acmesrv01")["billing_category"] == "laptop"


def test_a_huge_invalid_value_gets_a_short_answer(fresh_client: Any) -> None:
    h = bearer(key_named(fresh_client.app, "Owner - full"))
    r = fresh_client.post("/api/v1/clients", headers=h, json={"name": "x" * 500_000})
    assert r.status_code == 400
    assert r.json()["error"]["details"][0]["field"] == "name"
    assert len(r.content) < 2_000

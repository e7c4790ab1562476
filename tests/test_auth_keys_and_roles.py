"""Authentication and authorization exactly as OpsMerge's API article describes them."""

from __future__ import annotations

from typing import Any

import pytest

from opsmerge_sandbox.spec import load_spec
from tests.conftest import ADMIN, bearer, key_named
from tests.operation_calls import call_for


def _secret(client: Any, prefix: str) -> str:
    return key_named(client.app, prefix)


def _assert_401(r: Any, code: str, secret: str | None = None) -> dict[str, Any]:
    assert r.status_code == 401, r.text
    assert r.headers["www-authenticate"].startswith("Bearer")
    err = r.json()["error"]
    assert err["code"] == code
    if secret:
        assert secret not in r.text and secret[3:] not in r.text
    return err


@pytest.mark.parametrize(
    ("header", "needle"),
    [
        (None, "Missing API key"),
        ("", "Missing API key"),
        ("Basic dXNlcjpwYXNz", "scheme"),
        ("Token om_abc", "scheme"),
        ("Bearer", "no key"),
        ("Bearer sk_live_1234", "start with 'om_'"),
        ("Bearer om_this_key_does_not_exist", "Unknown API key"),
    ],
)
def test_bad_credentials_get_401_auth_required_with_a_message_that_names_the_case(
    client: Any, header: str | None, needle: str
) -> None:
    headers = {} if header is None else {"Authorization": header}
    err = _assert_401(client.get("/api/v1/agents", headers=headers), "AUTH_REQUIRED")
    assert needle in err["message"]


def test_copy_paste_mistakes_are_named_without_echoing_the_key(client: Any) -> None:
    secret = _secret(client, "Owner - full")
    err = _assert_401(
        client.get("/api/v1/agents", headers={"Authorization": f"Bearer{secret}"}),
        "AUTH_REQUIRED",
        secret,
    )
    assert "No space between 'Bearer' and the key" in err["message"]
    for mangled in (f"Bearer  {secret}", f"Bearer {secret} ", f"Bearer {secret}\t"):
        err = _assert_401(
            client.get("/api/v1/agents", headers={"Authorization": mangled}),
            "AUTH_REQUIRED",
            secret,
        )
        assert "stray whitespace" in err["message"]


def test_the_scheme_name_is_case_insensitive(client: Any) -> None:
    secret = _secret(client, "Owner - full")
    for scheme in ("bearer", "BEARER", "BeArEr"):
        assert (
            client.get(
                "/api/v1/auth/me", headers={"Authorization": f"{scheme} {secret}"}
            ).status_code
            == 200
        )


def test_expired_revoked_and_deactivated_owner_keys_stop_working(client: Any) -> None:
    for prefix, code, needle in (
        ("Expired", "AUTH_REQUIRED", "expired"),
        ("Revoked", "AUTH_REQUIRED", "revoked"),
        ("Former", "AUTH_DISABLED", "deactivated"),
    ):
        secret = _secret(client, prefix)
        err = _assert_401(client.get("/api/v1/auth/me", headers=bearer(secret)), code, secret)
        assert needle in err["message"]


def test_auth_me_describes_the_key_owner_roles_scopes_expiry_and_bucket(client: Any) -> None:
    r = client.get("/api/v1/auth/me", headers=bearer(_secret(client, "Owner - agents read")))
    me = r.json()["data"]
    assert me["key"]["name"].startswith("Owner - agents read") and me["key"]["access"] == "custom"
    assert me["user"]["id"] == "usr_owner"
    assert [role["name"] for role in me["roles"]] == ["Owner"]
    assert me["scopes"] == ["agents:read"]
    assert "expires_at" in me["key"]
    assert me["rate_limit"]["limit"] == 300 and me["rate_limit"]["window_seconds"] == 60
    assert me["rate_limit"]["remaining"] == int(r.headers["x-ratelimit-remaining"])
    assert _secret(client, "Owner - agents read") not in r.text


def test_roles_are_checked_first_and_scopes_narrow(fresh_client: Any) -> None:
    c = fresh_client
    readonly = bearer(_secret(c, "Read-only"))
    assert c.get("/api/v1/clients", headers=readonly).status_code == 200
    r = c.post("/api/v1/clients", headers=readonly, json={"name": "Nope Ltd"})
    assert r.status_code == 403 and r.json()["error"]["code"] == "FORBIDDEN"

    tech = bearer(_secret(c, "Technician"))
    assert c.get("/api/v1/invoices", headers=tech).status_code == 200
    invoice = c.get("/api/v1/invoices?per_page=1", headers=tech).json()["data"]["items"][0]
    r = c.patch(f"/api/v1/invoices/{invoice['id']}", headers=tech, json={"notes": "x"})
    assert r.status_code == 403 and r.json()["error"]["code"] == "FORBIDDEN"  # billing is read-only
    assert (
        c.patch(
            "/api/v1/tickets/tkt_acmeprinter", headers=tech, json={"priority": "High"}
        ).status_code
        == 200
    )

    custom = bearer(_secret(c, "Owner - agents read"))
    assert c.get("/api/v1/agents", headers=custom).status_code == 200
    r = c.get("/api/v1/tickets", headers=custom)
    assert r.status_code == 403 and r.json()["error"]["code"] == "SCOPE_DENIED"

    # a scope the owner's role lacks is no help: the role refuses first
    minted = c.post(
        "/_sandbox/keys",
        headers=ADMIN,
        json={"name": "ro exec", "role": "Read-only", "scopes": ["agents:execute"]},
    )
    assert minted.status_code == 201
    r = c.post("/api/v1/agents/agt_acmesrv01/reboot", headers=bearer(minted.json()["data"]["key"]))
    assert r.status_code == 403 and r.json()["error"]["code"] == "FORBIDDEN"


def test_key_management_refuses_every_api_key(client: Any) -> None:
    session_only = [op for op in load_spec().operations if op.session_only]
    assert session_only
    for name in ("Owner - full", "Admin - full", "Technician", "Owner - agents read"):
        for op in session_only:
            path = op.path.replace("{id}", "key_ownerfull")
            r = client.request(
                op.method,
                "/api/v1" + path,
                headers=bearer(_secret(client, name)),
                json={"name": "x"} if op.body_schema else None,
            )
            assert r.status_code == 403 and r.json()["error"]["code"] == "API_KEY_FORBIDDEN", (
                name,
                op.operation_id,
            )


SCOPED = [op for op in load_spec().operations if op.scopes]


@pytest.mark.parametrize("op", SCOPED, ids=[o.operation_id for o in SCOPED])
def test_auth_matrix_a_key_without_the_scope_is_denied_and_one_with_it_is_not(
    fresh_client: Any, op: Any
) -> None:
    c = fresh_client
    scope = op.scopes[0]
    other = "audit:read" if scope != "audit:read" else "agents:read"
    without = c.post("/_sandbox/keys", headers=ADMIN, json={"name": "without", "scopes": [other]})
    with_ = c.post("/_sandbox/keys", headers=ADMIN, json={"name": "with", "scopes": [scope]})
    call = call_for(c.app.state.sandbox, op)
    r = c.request(
        call.method,
        "/api/v1" + call.path,
        json=call.json,
        headers=bearer(without.json()["data"]["key"]),
    )
    assert r.status_code == 403 and r.json()["error"]["code"] == "SCOPE_DENIED", r.text
    r = c.request(
        call.method,
        "/api/v1" + call.path,
        json=call.json,
        headers=bearer(with_.json()["data"]["key"]),
    )
    assert r.status_code not in (401, 403), (op.operation_id, r.text)


def test_editing_a_role_changes_what_its_keys_may_do_at_once(fresh_client: Any) -> None:
    c = fresh_client
    owner = bearer(_secret(c, "Owner - full"))
    readonly = bearer(_secret(c, "Read-only"))
    assert c.post("/api/v1/clients", headers=readonly, json={"name": "A"}).status_code == 403
    r = c.patch(
        "/api/v1/roles/rol_readonly",
        headers=owner,
        json={"permissions": ["*:read", "clients:write"]},
    )
    assert r.status_code == 200
    assert c.post("/api/v1/clients", headers=readonly, json={"name": "B"}).status_code == 201
    c.patch("/api/v1/roles/rol_readonly", headers=owner, json={"permissions": ["*:read"]})
    r = c.post("/api/v1/clients", headers=readonly, json={"name": "C"})
    assert r.status_code == 403 and r.json()["error"]["code"] == "FORBIDDEN"
    me = c.get("/api/v1/auth/me", headers=readonly).json()["data"]
    assert "clients:write" not in me["scopes"]


def test_auth_me_lists_what_the_role_allows_beside_what_the_key_may_use(client: Any) -> None:
    narrow = client.get("/api/v1/auth/me", headers=bearer(key_named(client.app, "Owner - agents")))
    data = narrow.json()["data"]
    assert data["scopes"] == ["agents:read"]
    assert "agents:read" in data["role_scopes"] and "psa_tickets:write" in data["role_scopes"]
    reader = client.get("/api/v1/auth/me", headers=bearer(key_named(client.app, "Read-only")))
    assert reader.json()["data"]["role_scopes"] == reader.json()["data"]["scopes"]
    assert not [s for s in reader.json()["data"]["role_scopes"] if not s.endswith(":read")]


def test_a_key_is_not_minted_for_a_user_who_has_never_signed_in(fresh_client: Any) -> None:
    c = fresh_client
    owner = bearer(_secret(c, "Owner - full"))
    role = c.post(
        "/api/v1/roles", headers=owner, json={"name": "Night desk", "permissions": ["*:read"]}
    )
    assert role.status_code == 201, role.text
    invited = c.post(
        "/api/v1/users/invite",
        headers=owner,
        json={"email": "night.desk@example.com", "role_ids": [role.json()["data"]["id"]]},
    )
    assert invited.status_code == 201, invited.text
    user_id = invited.json()["data"]["id"]

    r = c.post("/_sandbox/keys", headers=ADMIN, json={"name": "k", "user_id": user_id})
    assert r.status_code == 409, r.text
    err = r.json()["error"]
    assert err["code"] == "CONFLICT" and "invited" in err["message"]
    assert err["details"][0]["field"] == "user_id"

    # a role held only by somebody who has not signed in has nobody to own a key
    r = c.post("/_sandbox/keys", headers=ADMIN, json={"name": "k", "role": "Night desk"})
    assert r.status_code == 422, r.text
    assert r.json()["error"]["details"][0]["field"] == "role"


def test_a_key_is_minted_for_a_role_given_in_the_workspace_the_header_names(
    fresh_client: Any,
) -> None:
    c = fresh_client
    owner = bearer(_secret(c, "Owner - full"))
    role = c.post(
        "/api/v1/roles", headers=owner, json={"name": "Late shift", "permissions": ["*:read"]}
    ).json()["data"]
    moved = c.patch(
        "/api/v1/users/usr_tech", headers=owner, json={"role_ids": [role["id"]]}
    )
    assert moved.status_code == 200, moved.text
    r = c.post("/_sandbox/keys", headers=ADMIN, json={"name": "k", "role": "Late shift"})
    assert r.status_code == 201, r.text
    assert r.json()["data"]["user_id"] == "usr_tech"
    key = bearer(r.json()["data"]["key"])
    assert c.get("/api/v1/agents?per_page=1", headers=key).status_code == 200
    assert c.post("/api/v1/clients", headers=key, json={"name": "No"}).status_code == 403
    # the default workspace has no such role
    default = c.post(
        "/_sandbox/keys",
        headers={**ADMIN, "X-Sandbox-Workspace": "default"},
        json={"name": "k", "role": "Late shift"},
    )
    assert default.status_code == 422, default.text

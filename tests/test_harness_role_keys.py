"""The keys the harness mints per role on a sandbox it administers.

A run works in a workspace of its own, where its tests may have made users; the sandbox mints
keys only for users of the seeded world. A user the run made, listed first for its role (its
name sorts first), must not cost the role its key: the role's next holder gets it.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from opsmerge_contracts.options import Options
from opsmerge_contracts.rolekeys import mint_per_role
from opsmerge_contracts.sandboxes import start_sandbox
from opsmerge_contracts.session import ContractRun
from opsmerge_sandbox.settings import Settings
from tests.conftest import ADMIN_TOKEN


@pytest.fixture(scope="module")
def run() -> Iterator[ContractRun]:
    """A run against a sandbox served on loopback, administered with its admin token."""
    box = start_sandbox(Settings(admin_token=ADMIN_TOKEN), loopback=True)
    contract_run = ContractRun(
        Options(target=box.root_url, admin_token=ADMIN_TOKEN, profile="sandbox")
    )
    try:
        yield contract_run
    finally:
        contract_run.close()
        box.close()


def test_a_role_whose_first_listed_user_the_run_made_still_gets_a_key(run: ContractRun) -> None:
    body = {
        "email": "aaron.aardvark@example.com",
        "name": "aaron aardvark",
        "role_ids": ["rol_billing"],
    }
    with run.target.client() as client:
        made = client.post("/users/invite", json=body)
        assert made.status_code == 201, made.text
        seeded = client.get("/users", params={"per_page": 100}).json()["data"]["items"]
    users = [made.json()["data"], *(u for u in seeded if u["id"] != made.json()["data"]["id"])]
    keys = mint_per_role(run.target, run.spec, users)
    billing = [k for k in keys if k.role_ids == ("rol_billing",) and k.full]
    assert billing and billing[0].user_id != made.json()["data"]["id"]
    assert {"rol_owner", "rol_admin", "rol_technician", "rol_readonly"} <= {
        r for k in keys for r in k.role_ids
    }

"""Scenario files: parsing, variables, expectations, cleanup that always runs, and collection of a
project's own `*.contract.yaml` files by the plugin."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from opsmerge_contracts.expect import match_value, resolve_pointer
from opsmerge_contracts.options import Options
from opsmerge_contracts.scenarios import (
    ScenarioError,
    ScenarioRun,
    Skip,
    builtin_scenarios,
    parse_scenarios,
    substitute,
)
from opsmerge_contracts.session import Contract, ContractFailure, ContractRun

pytest_plugins = ["pytester"]


def scenario(text: str) -> Any:
    return parse_scenarios(yaml.safe_load(text), "test.contract.yaml")


# --- parsing ---------------------------------------------------------------------------------


def test_the_built_in_scenarios_parse_and_cover_the_article() -> None:
    names = {s.name for s in builtin_scenarios()}
    assert {
        "ticket lifecycle",
        "pagination conventions",
        "scopes narrow what a key may do",
        "no key is refused with 401 and a Bearer challenge",
    } <= names


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ("name: x", 'at /: "steps" is a required property'),
        ("name: x\nsteps: [{request: {method: GET}}]", "at /steps/0/request"),
        (
            "name: x\nsteps: [{request: {method: GET, path: /a}, capture: {v: data/id}}]",
            "/steps/0/capture/v",
        ),
        (
            "name: x\nsteps: [{request: {method: GET, path: /a, auth: admin}}]",
            "/steps/0/request/auth",
        ),
        (
            "name: x\nsteps: [{request: {method: GET, path: /a}, expect: {stauts: 200}}]",
            "/steps/0/expect",
        ),
    ],
)
def test_malformed_scenarios_are_refused_with_the_place(text: str, where: str) -> None:
    with pytest.raises(ScenarioError, match=r"test\.contract\.yaml") as info:
        scenario(text)
    assert where in str(info.value)


def test_a_file_may_hold_several_scenarios_with_distinct_names() -> None:
    two = scenario(
        "scenarios: [{name: a, steps: [{request: {method: GET, path: /a}}]},"
        " {name: b, steps: [{request: {method: POST, path: /b}}]}]"
    )
    assert [s.name for s in two] == ["a", "b"] and two[1].writes and not two[0].writes
    with pytest.raises(ScenarioError, match="share a name"):
        scenario(
            "scenarios: [{name: a, steps: [{request: {method: GET, path: /a}}]},"
            " {name: a, steps: [{request: {method: GET, path: /b}}]}]"
        )


def test_substitution_keeps_the_type_of_a_whole_variable() -> None:
    variables = {"id": "tkt_1", "total": 42, "flag": False}
    assert substitute(
        {"path": "/tickets/${id}", "n": "${total}", "f": ["${flag}"], "s": "${total} items"},
        variables,
    ) == {"path": "/tickets/tkt_1", "n": 42, "f": [False], "s": "42 items"}
    with pytest.raises(KeyError):
        substitute("/tickets/${missing}", variables)


def test_pointers_and_matchers() -> None:
    doc = {"data": {"items": [{"id": "a"}, {"id": "b"}], "a/b": 1, "total": 2}}
    assert resolve_pointer(doc, "/data/items/1/id") == "b"
    assert resolve_pointer(doc, "/data/a~1b") == 1
    assert match_value(resolve_pointer(doc, "/data/items/5"), {"exists": False}) is None
    assert match_value(2, {"gte": 1, "lte": 2}) is None
    assert match_value(2, {"gte": 3}) == "is 2, expected at least 3"
    assert match_value(True, 1) is not None  # a boolean is not a number
    assert match_value("INC-1042", {"matches": "^[A-Z]+-[0-9]+$"}) is None
    assert match_value(["a", "b"], {"contains": "c"}) == "does not contain 'c'"


# --- running against the sandbox ----------------------------------------------------------------


def test_captures_flow_into_later_steps_and_cleanup_runs_after_a_failed_step(
    sandbox_run: ContractRun,
) -> None:
    [s] = scenario("""
        name: create then fail
        steps:
          - request: {method: GET, path: /clients, query: {per_page: 1}}
            capture: {client_id: /data/items/0/id}
          - request:
              method: POST
              path: /tickets
              json: {subject: "cleanup check ${run}", client_id: "${client_id}"}
            expect: {status: 201}
            capture: {ticket_id: /data/id}
          - name: this step's expectation is wrong on purpose
            request: {method: GET, path: "/tickets/${ticket_id}"}
            expect: {status: 418}
          - name: never sent
            request: {method: GET, path: /auth/me}
        cleanup:
          - request: {method: DELETE, path: "/tickets/${ticket_id}"}
            expect: {status: 200}
          - request: {method: DELETE, path: "/never/${not_captured}"}
    """)
    contract = Contract(sandbox_run, "cleanup-check")
    runner = ScenarioRun(contract, s)
    runner.run()
    sent = [(e.request.method, e.request.path) for e in contract.exchanges]
    ticket = runner.variables["ticket_id"]
    assert sent == [
        ("GET", "/api/v1/clients"),
        ("POST", "/api/v1/tickets"),
        ("GET", f"/api/v1/tickets/{ticket}"),
        ("DELETE", f"/api/v1/tickets/{ticket}"),
    ]
    with pytest.raises(ContractFailure) as info:
        contract.verify()
    assert info.value.check_ids == ["scenario_expectation"]
    assert "status is 200, expected 418" in str(info.value)
    with sandbox_run.target.client() as client:
        assert client.get(f"/tickets/{ticket}").status_code == 404
    contract.finish()


def test_scoped_auth_mints_a_key_in_the_sandbox(sandbox_run: ContractRun) -> None:
    [s] = scenario("""
        name: scoped
        steps:
          - request:
              method: GET
              path: /clients
              auth: {has: ["agents:read"], lacks: ["clients:read"]}
            expect: {status: 403, code: SCOPE_DENIED}
    """)
    contract = Contract(sandbox_run, "scoped")
    ScenarioRun(contract, s).run()
    contract.verify()
    assert contract.exchanges[0].key_label == "minted"


def test_a_scenario_that_writes_is_skipped_under_the_production_profile() -> None:
    prod = ContractRun(Options(target="sandbox", profile="production"))
    try:
        [s] = scenario("name: w\nsteps: [{request: {method: POST, path: /tickets, json: {}}}]")
        with pytest.raises(Skip, match="only GET and HEAD"):
            ScenarioRun(Contract(prod, "w"), s).applicable()
    finally:
        prod.close()


# --- a project's own scenario files, through the plugin ------------------------------------------

PASSING = """
name: my integration's happy path
steps:
  - request: {method: GET, path: /auth/me}
    expect: {status: 200, json: {/data/key/access: full}}
"""
FAILING = """
name: a wrong expectation
steps:
  - request: {method: GET, path: /agents, query: {per_page: 2}}
    expect: {status: 200, json: {/data/items: {len: 3}}}
"""


def test_a_projects_contract_files_are_collected_and_run(pytester: pytest.Pytester) -> None:
    pytester.makefile(".contract.yaml", mine=PASSING, broken=FAILING)
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider", "-v")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(
        [
            "*broken.contract.yaml::a wrong expectation FAILED*",
            "*mine.contract.yaml::my integration's happy path PASSED*",
            "*[[]scenario_expectation[]]*/data/items has length 2, expected 3*",
        ]
    )

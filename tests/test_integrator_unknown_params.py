"""Typos in query parameters: answered as the real API answers (ignored), but named in a Warning
header and the journal, or refused with a 400 under `serve --reject-unknown-params`."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import integrator_refusing_app
import pytest
from integrator_serve import OWNER_KEY, serving

from opsmerge_contracts.sandboxes import LoopbackServer
from tests.conftest import ADMIN, bearer, make_app

pytest_plugins = ["pytester"]

OWNER = bearer(OWNER_KEY)


@pytest.fixture(scope="module")
def ignoring() -> Iterator[httpx.Client]:
    with LoopbackServer(make_app()) as server, httpx.Client(base_url=server.root_url) as c:
        yield c


@pytest.fixture(scope="module")
def refusing() -> Iterator[httpx.Client]:
    app = make_app(reject_unknown_params=True)
    with LoopbackServer(app) as server, httpx.Client(base_url=server.root_url) as c:
        yield c


def _last_entry(client: httpx.Client) -> dict[str, Any]:
    entries = client.get("/_sandbox/requests", params={"limit": 1}, headers=ADMIN).json()
    return entries["data"]["items"][-1]  # type: ignore[no-any-return]


def test_a_typo_in_a_query_parameter_is_ignored_as_the_real_api_does_and_named_in_a_warning(
    ignoring: httpx.Client,
) -> None:
    plain = ignoring.get("/api/v1/tickets", headers=OWNER)
    typo = ignoring.get("/api/v1/tickets?stauts=Open&limt=2", headers=OWNER)
    assert typo.status_code == 200
    assert typo.json()["data"]["total"] == plain.json()["data"]["total"]  # nothing filtered
    assert len(typo.json()["data"]["items"]) == 50  # limt is not per_page
    assert typo.headers["warning"] == '299 - "unknown query parameter(s) ignored: stauts, limt"'
    assert "warning" not in plain.headers


def test_known_parameters_and_the_fault_twins_carry_no_warning(ignoring: httpx.Client) -> None:
    r = ignoring.get("/api/v1/tickets?status=Open&per_page=2&__delay=0", headers=OWNER)
    assert r.status_code == 200 and len(r.json()["data"]["items"]) == 2
    assert "warning" not in r.headers


def test_the_journal_names_the_ignored_parameters(ignoring: httpx.Client) -> None:
    ignoring.get("/api/v1/agents?pgae=2&per_page=5", headers=OWNER)
    entry = _last_entry(ignoring)
    assert entry["operation_id"] == "listAgents" and entry["unknown_params"] == ["pgae"]
    ignoring.get("/api/v1/agents?page=2", headers=OWNER)
    assert _last_entry(ignoring)["unknown_params"] == []


def test_unknown_names_cannot_inject_a_header_leak_a_key_or_make_a_huge_header(
    ignoring: httpx.Client,
) -> None:
    names = ["%0D%0AX-Evil:%201", "%22quoted%22", "x" * 5000, OWNER_KEY]
    names += [f"extra{i}" for i in range(40)]
    r = ignoring.get("/api/v1/agents?" + "&".join(f"{n}=1" for n in names), headers=OWNER)
    assert r.status_code == 200
    warning = r.headers["warning"]
    assert "x-evil" not in r.headers and "\r" not in warning and "\n" not in warning
    assert warning.isascii() and warning.isprintable() and len(warning) < 700
    assert warning.count('"') == 2  # the quoted text holds no quote of its own
    assert "%0D%0AX-Evil%3A%201" in warning and "x" * 38 not in warning
    assert OWNER_KEY[:10] not in warning and "[redacted]" in warning
    assert "(and 34 more)" in warning
    shown = _last_entry(ignoring)["unknown_params"]
    assert len(shown) == 11 and shown[-1] == "(and 34 more)"
    assert not any(OWNER_KEY[:10] in s for s in shown)


def test_reject_unknown_params_answers_400_naming_each_and_changes_nothing(
    refusing: httpx.Client,
) -> None:
    r = refusing.get("/api/v1/tickets?stauts=Open&limt=2&status=Open", headers=OWNER)
    assert r.status_code == 400
    error = r.json()["error"]
    assert error["code"] == "VALIDATION_ERROR"
    assert "stauts, limt" in error["message"] and "status" in error["message"]
    assert [(d["location"], d["field"]) for d in error["details"]] == [
        ("query", "stauts"),
        ("query", "limt"),
    ]
    before = refusing.get("/api/v1/tickets?per_page=1", headers=OWNER).json()["data"]["total"]
    created = refusing.post(
        "/api/v1/tickets?notify=yes",
        headers=OWNER,
        json={"subject": "Printer offline", "client_id": "cli_acme", "priority": "High"},
    )
    assert created.status_code == 400 and created.json()["error"]["details"][0]["field"] == "notify"
    after = refusing.get("/api/v1/tickets?per_page=1", headers=OWNER).json()["data"]["total"]
    assert after == before
    assert _last_entry(refusing)["unknown_params"] == []  # the last one was clean
    ok = refusing.get("/api/v1/tickets?status=Open&__delay=0", headers=OWNER)
    assert ok.status_code == 200


def test_the_refusal_of_unknown_parameters_also_names_bad_values_of_known_ones(
    refusing: httpx.Client,
) -> None:
    r = refusing.get("/api/v1/tickets?per_page=abc&stauts=Open", headers=OWNER)
    assert r.status_code == 400
    fields = [(d["location"], d["field"]) for d in r.json()["error"]["details"]]
    assert fields == [("query", "stauts"), ("query", "per_page")]


def test_serve_reject_unknown_params_refuses_a_typo_on_a_real_server() -> None:
    with serving("--reject-unknown-params") as served:
        r = httpx.get(f"{served.url}/api/v1/tickets?stauts=Open", headers=OWNER)
        assert r.status_code == 400 and r.json()["error"]["details"][0]["field"] == "stauts"
        assert "unknown query parameters refused" in served.stderr
    with serving() as served:
        r = httpx.get(f"{served.url}/api/v1/tickets?stauts=Open", headers=OWNER)
        assert r.status_code == 200 and "stauts" in r.headers["warning"]


def test_the_contract_suite_sends_no_unknown_query_parameter(pytester: pytest.Pytester) -> None:
    integrator_refusing_app.SEEN.clear()
    integrator_refusing_app.BUILT.clear()
    report = pytester.path / "report.json"
    result = pytester.runpytest_inprocess(
        "--opsmerge-target=sandbox",
        "--opsmerge-app=integrator_refusing_app:create_refusing_app",
        f"--opsmerge-report={report}",
        "-p",
        "no:cacheprovider",
    )
    assert integrator_refusing_app.BUILT, "the suite did not run against the refusing sandbox"
    assert integrator_refusing_app.SEEN == []
    # the suite ran in full (whether its every contract passes is test_contracts_suite's to say)
    assert result.parseoutcomes().get("passed", 0) >= 250

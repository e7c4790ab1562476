"""openapi-python-client, fed the spec a running sandbox serves, makes a client that keeps data.

The client is generated with zero warnings (every operation and model present) and then driven
against the same sandbox: a page of a list, a get, a create, a one-field update that must leave
every other field alone, a 403 and a forced 429, each parsed into the generated models.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from tests.client_tooling import (
    AGENTS_READ_KEY,
    OWNER_KEY,
    PYTHON_BIN,
    ROOT,
    download_spec,
    run,
    sandbox,
    tool,
)

PACKAGE = "opsmerge_client"
DRIVER = ROOT / "tests" / "client-tools" / "drive_python_client.py"


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    generator = tool(PYTHON_BIN / "openapi-python-client")
    work = tmp_path_factory.mktemp("python-client")
    with sandbox() as server:
        spec = download_spec(server.url, work / "openapi.json")
        where = ("--path", "openapi.json", "--output-path", PACKAGE)
        out = run([generator, "generate", *where, "--meta", "none"], work)
        drive = None
        if out.returncode == 0:
            keys = (OWNER_KEY, AGENTS_READ_KEY)
            argv = (str(DRIVER), str(work), PACKAGE, spec["servers"][0]["url"], *keys)
            drive = run([str(PYTHON_BIN / "python"), *argv], work)
        yield {"work": work, "spec": spec, "generate": out, "drive": drive}


def _seen(generated: dict[str, Any]) -> dict[str, Any]:
    drive = generated["drive"]
    assert drive is not None, generated["generate"].stdout + generated["generate"].stderr
    assert drive.returncode == 0, drive.stdout + drive.stderr
    seen: dict[str, Any] = json.loads(drive.stdout)
    return seen


def test_the_client_generates_with_zero_warnings(generated: dict[str, Any]) -> None:
    out = generated["generate"]
    text = out.stdout + out.stderr
    assert out.returncode == 0, text
    assert "warning" not in text.lower(), text
    models = {p.stem for p in (generated["work"] / PACKAGE / "models").glob("*.py")}
    # the records and their create/update bodies are models of their own, not aliases
    for name in ("agent", "ticket", "ticket_create", "ticket_update", "invoice", "invoice_line"):
        assert name in models, sorted(models)
    # one enum class per nullable enum field, and sort values with names
    assert not [m for m in models if "_type_1" in m], sorted(models)
    sort_enum = (generated["work"] / PACKAGE / "models" / "list_tickets_sort.py").read_text()
    assert "VALUE_" not in sort_enum and "CREATED_AT_DESC" in sort_enum, sort_enum


def test_the_generated_client_pages_through_a_list(generated: dict[str, Any]) -> None:
    seen = _seen(generated)["list"]
    assert seen["status"] == 200
    assert (seen["model"], seen["item_model"]) == ("AgentPage", "Agent")
    assert (seen["page"], seen["per_page"]) == (2, 100)
    assert seen["total"] > 100 and 0 < seen["items"] <= 100
    assert seen["first_id"].startswith("agt_")


def test_the_generated_client_reads_a_record_with_its_read_only_fields(
    generated: dict[str, Any],
) -> None:
    seen = _seen(generated)["get"]
    assert (seen["status"], seen["model"], seen["id"]) == (200, "Ticket", "tkt_acmeprinter")
    assert isinstance(seen["number"], int)
    assert seen["reference"].endswith(f"-{seen['number']}")


def test_a_created_record_gets_the_defaults_the_server_applies(generated: dict[str, Any]) -> None:
    seen = _seen(generated)["create"]
    ticket = generated["spec"]["components"]["schemas"]["Ticket"]
    own = ticket["allOf"][1]["properties"]
    defaults = {k: v["default"] for k, v in own.items() if "default" in v}
    assert seen["status"] == 201
    # only what was set goes on the wire; the server fills in the rest
    sent = {"subject": "Printer offline", "client_id": "cli_acme", "priority": "High"}
    assert seen["sent"] == sent
    assert (seen["type"], seen["status_field"], seen["queue"]) == (
        defaults["type"],
        defaults["status"],
        defaults["queue"],
    )
    assert seen["priority"] == "High"


def test_a_one_field_update_changes_nothing_else(generated: dict[str, Any]) -> None:
    seen = _seen(generated)["update"]
    assert seen["status"] == 200
    assert seen["sent"] == {"subject": "Printer offline (second floor)"}
    assert seen["subject"] == "Printer offline (second floor)"
    assert (seen["priority"], seen["status_field"]) == ("Critical", "In Progress")
    assert (seen["type"], seen["queue"]) == ("Incident", "Service Desk")


def test_the_generated_client_parses_a_403(generated: dict[str, Any]) -> None:
    seen = _seen(generated)["forbidden"]
    assert (seen["status"], seen["model"], seen["code"]) == (403, "Error", "SCOPE_DENIED")


def test_the_generated_client_parses_a_forced_429(generated: dict[str, Any]) -> None:
    seen = _seen(generated)["rate_limited"]
    assert (seen["status"], seen["model"], seen["code"]) == (429, "Error", "RATE_LIMITED")
    assert seen["retry_after"] is not None and int(seen["retry_after"]) >= 0

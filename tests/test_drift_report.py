"""`opsmerge-sandbox drift`: what recorded traffic shows that the spec does not say. Nothing on
the clean sandbox; the fields, parameters and statuses planted in a broken server's answers,
counted with an example each; the reports CI gates on; and `--against` a changed spec, the
breaking changes for the operations the traffic used, and only those."""

from __future__ import annotations

import copy
import json
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import broken_server
import httpx
import pytest
import yaml
from proxy_live import ProxyServer

from opsmerge_contracts.sandboxes import LoopbackServer, SandboxKeys
from opsmerge_sandbox.app import create_app
from opsmerge_sandbox.cli import main
from opsmerge_sandbox.har import HarWriter
from opsmerge_sandbox.proxy.app import ProxyConfig, ValidatingProxy
from opsmerge_sandbox.settings import Settings
from opsmerge_sandbox.spec import SPEC_PATH, load_spec


def _workflow(c: httpx.Client, broken: broken_server.BrokenApp | None = None) -> None:
    """Ordinary traffic; with `broken`, the server drifts for some of it."""

    def breaking(name: str) -> None:
        if broken is not None:
            broken.breakage = name

    ticket = c.get("/tickets", params={"per_page": 2}).json()["data"]["items"][0]["id"]
    c.get(f"/tickets/{ticket}")
    breaking("undocumented_field")
    c.get(f"/tickets/{ticket}")
    c.get("/tickets", params={"per_page": 3})
    breaking("undocumented_status")
    c.get("/tickets/tkt_does_not_exist")
    c.get("/tickets/tkt_nor_this_one")
    breaking("none")
    if broken is not None:  # a parameter the API accepts without documenting it
        c.get("/tickets", params={"per_page": 2, "legacy_sort": "oldest"})
    created = c.post("/tickets", json={"subject": "Drift", "client_id": "cli_acme"})
    c.patch(f"/tickets/{created.json()['data']['id']}", json={"status": "Open"})
    c.delete(f"/tickets/{created.json()['data']['id']}")
    c.get("/no-such-thing")


@pytest.fixture(scope="module")
def recordings(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Path]]:
    """The same workflow through the recording proxy: before the clean sandbox, and before a
    server that drifts."""
    folder = tmp_path_factory.mktemp("drift")
    broken = broken_server.BrokenApp(
        create_app(Settings(recipe=str(broken_server.SMALL_RECIPE))), "none"
    )
    key = SandboxKeys(broken.app.state.sandbox.recipe.keys).owner.key
    out = {}
    with LoopbackServer(broken) as upstream:
        for name, drifting in (("clean", None), ("drifting", broken)):
            writer = HarWriter(folder / f"{name}.har")
            proxy = ValidatingProxy(
                ProxyConfig(upstream=upstream.url, spec=load_spec(), admin_token="t", record=writer)
            )
            with ProxyServer(proxy) as server, httpx.Client(
                base_url=server.url + "/api/v1", headers={"Authorization": f"Bearer {key}"}
            ) as c:
                _workflow(c, drifting)
            writer.close()
            out[name] = folder / f"{name}.har"
    yield out


def _drift(tmp_path: Path, *args: str) -> tuple[int, dict[str, Any]]:
    code = main(["drift", *args, "--report", str(tmp_path / "drift")])
    return code, json.loads((tmp_path / "drift.json").read_text())


def test_the_clean_sandboxs_traffic_shows_nothing_the_spec_does_not_say(
    recordings: dict[str, Path], tmp_path: Path
) -> None:
    code, report = _drift(tmp_path, str(recordings["clean"]))
    assert report["findings"] == []
    assert code == 0
    assert report["summary"]["operations_used"] == 5  # list, get, create, update, delete


def test_planted_fields_parameters_and_statuses_are_found_with_counts_and_an_example(
    recordings: dict[str, Path], tmp_path: Path
) -> None:
    code, report = _drift(tmp_path, str(recordings["drifting"]))
    assert code == 1
    found = {(f["operation"], f["kind"], f["subject"]): f for f in report["findings"]}
    field = found[("getTicket", "field", "response 200 /data/legacy_code")]
    assert field["count"] == 1 and field["example"]["value"] == "L-1"
    assert field["example"]["request"].startswith("GET /api/v1/tickets/tkt_")
    items = found[("listTickets", "field", "response 200 /data/items/*/legacy_code")]
    assert items["count"] == 3  # every item of the page, under one pointer
    status = found[("getTicket", "status", "410")]
    assert status["count"] == 2 and "documented:" in status["example"]["detail"]
    param = found[("listTickets", "parameter", "legacy_sort")]
    assert param["count"] == 1 and param["example"]["value"] == "oldest"
    assert len(found) == 4, sorted(found)  # and nothing else: the rest of the traffic is clean


def test_the_report_is_written_as_json_html_and_junit_for_ci(
    recordings: dict[str, Path], tmp_path: Path
) -> None:
    junit = tmp_path / "drift.xml"
    code = main(["drift", str(recordings["drifting"]), "--report", str(tmp_path / "out"),
                 "--junitxml", str(junit)])  # fmt: skip
    assert code == 1
    html = (tmp_path / "out.html").read_text()
    assert "legacy_code" in html and "<script" not in html and "http" not in html.split("<body>")[0]
    suite = ET.parse(junit).getroot().find("testsuite")
    assert suite is not None
    cases = {c.get("name"): c for c in suite.iter("testcase")}
    assert cases["getTicket"].find("failure") is not None
    assert cases["deleteTicket"].find("failure") is None
    assert int(suite.get("failures") or 0) == 2


def test_a_journal_listing_shows_paths_parameters_and_statuses(tmp_path: Path) -> None:
    listing = {"data": {"items": [
        {"method": "GET", "path": "/api/v1/tickets", "query": "per_page=2&legacy_sort=x",
         "status": 200},
        {"method": "GET", "path": "/api/v1/tickets/tkt_1", "query": "", "status": 418},
        {"method": "GET", "path": "/api/v1/reports/tkt_1", "query": "", "status": 200},
    ]}}  # fmt: skip
    path = tmp_path / "journal.json"
    path.write_text(json.dumps(listing))
    code, report = _drift(tmp_path, str(path))
    assert code == 1
    kinds = {(f["kind"], f["subject"]) for f in report["findings"]}
    assert kinds == {("parameter", "legacy_sort"), ("status", "418"), ("path", "GET /reports/{id}")}


def _changed_spec(tmp_path: Path) -> Path:
    """The bundled spec with breaking changes to operations the traffic used, and one to an
    operation it did not use."""
    doc = yaml.safe_load(SPEC_PATH.read_text())
    doc = copy.deepcopy(doc)
    paths = doc["paths"]
    paths["/tickets"]["get"]["parameters"].append(
        {"name": "region", "in": "query", "required": True, "schema": {"type": "string"}}
    )
    del paths["/tickets/{id}"]["delete"]
    ticket = doc["components"]["schemas"]["Ticket"]
    own = next(part for part in ticket["allOf"] if "properties" in part)
    del own["properties"]["id"]  # a field only this part declares, and no rule reads
    del paths["/invoices"]["get"]  # not used by the traffic: not listed
    out = tmp_path / "opsmerge-next.yaml"
    out.write_text(yaml.safe_dump(doc, sort_keys=False))
    return out


def test_against_a_changed_spec_lists_the_breaking_changes_for_the_operations_used(
    recordings: dict[str, Path], tmp_path: Path
) -> None:
    newer = _changed_spec(tmp_path)
    code, report = _drift(tmp_path, str(recordings["clean"]), "--against", str(newer))
    assert code == 1
    changes = {(c["operation"], c["change"]) for c in report["changes"] if c["level"] == "breaking"}
    assert ("listTickets", "new required query parameter `region`") in changes
    assert ("deleteTicket", "DELETE /tickets/{id} is gone") in changes
    assert ("getTicket", "200 response `data` `id` removed") in changes
    assert not any(op == "listInvoices" for op, _ in changes)
    same, unchanged = _drift(tmp_path, str(recordings["clean"]), "--against", str(SPEC_PATH))
    assert same == 0 and unchanged["changes"] == []


def test_enum_values_headers_and_type_mismatches_are_named_where_they_are() -> None:
    from opsmerge_contracts.drift import analyse
    from opsmerge_sandbox.har import HarExchange

    record = {"id": "tkt_1", "status": "Escalated", "number": "1042", "subject": "x"}
    seen = HarExchange(
        index=0, method="GET", url="http://api.example/api/v1/tickets/tkt_1",
        request_headers={}, request_body=b"", status=200,
        response_headers={"content-type": "application/json", "x-legacy-trace": "abc",
                          "x-ratelimit-limit": "300"},
        response_body=json.dumps({"data": record}).encode(),
    )  # fmt: skip
    report = analyse([seen], load_spec(), "hand-made")
    found = {(f.kind, f.subject): f.example for f in report.findings.values()}
    assert found[("enum_value", "response 200 /data/status")]["value"] == "Escalated"
    assert found[("header", "x-legacy-trace")]["value"] == "abc"
    mismatch = found[("schema_mismatch", "response 200 /data/number")]
    assert mismatch["detail"] == "string, expected integer"
    assert ("header", "x-ratelimit-limit") not in found  # the spec declares it there

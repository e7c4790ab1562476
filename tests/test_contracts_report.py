"""Reports: JSON and self-contained HTML with every failing exchange and a curl line that reads
the key from the environment; the key itself never appears."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

from opsmerge_contracts.checks import CheckContext, run_checks
from opsmerge_contracts.cleanup import Leftover
from opsmerge_contracts.exchange import (
    Exchange,
    RecordedRequest,
    RecordedResponse,
    curl_line,
    mask_key,
)
from opsmerge_contracts.report import RunReport
from opsmerge_sandbox.spec import load_spec

SECRET = "om_abcdEFGHIJKLMNOPQRSTUVWXYZ"


def failing_exchange() -> Exchange:
    return Exchange(
        request=RecordedRequest(
            "POST",
            "http://sandbox.local/api/v1/tickets",
            {
                "authorization": f"Bearer {mask_key(SECRET)}",
                "content-type": "application/json",
                "user-agent": "x",
            },
            b'{"subject": "it\'s <b>broken</b>"}',
        ),
        response=RecordedResponse(
            500,
            {"content-type": "application/json"},
            b'{"error": {"code": "INTERNAL_ERROR", "message": "<script>x</script>"}}',
        ),
        operation_id="createTicket",
        role="valid-body",
        key_label="primary",
    )


def test_mask_key_keeps_the_prefix_and_four_characters() -> None:
    assert mask_key(SECRET) == "om_abcd…"
    assert mask_key("sk_live_123456") == "sk_l…"
    assert mask_key(None) == "(none)"


def test_a_curl_line_reproduces_the_request_with_the_key_from_the_environment() -> None:
    line = curl_line(failing_exchange(), "http://sandbox.local", "http://127.0.0.1:4010")
    assert SECRET not in line and "om_abcd" not in line
    words = shlex.split(line)
    assert words[:5] == ["curl", "-sS", "-i", "-X", "POST"]
    assert words[5] == "http://127.0.0.1:4010/api/v1/tickets"
    assert "Authorization: Bearer $OPSMERGE_API_KEY" in words
    assert "Content-Type: application/json" in words
    assert words[-1] == '{"subject": "it\'s <b>broken</b>"}'
    assert (
        '"Authorization: Bearer $OPSMERGE_API_KEY"' in line
    )  # double quotes: the shell expands it


def test_the_limited_key_is_named_by_its_own_variable() -> None:
    exchange = failing_exchange()
    exchange.key_label = "limited"
    assert "$OPSMERGE_LIMITED_KEY" in curl_line(exchange)


def test_json_and_html_reports_hold_every_failure(tmp_path: Path) -> None:
    report = RunReport(meta={"target": "sandbox (in-process)", "key": mask_key(SECRET)})
    results = run_checks(CheckContext(load_spec()), [failing_exchange()])
    report.add_results("suite_test.py::test_bodies[createTicket]", results, curl_line)
    report.leftovers.append(Leftover("invoices", "inv_1", "t", "the API has no delete operation"))
    json_path, html_path = report.write(tmp_path / "out" / "contracts.html")
    assert json_path.name == "contracts.json" and html_path.name == "contracts.html"
    data = json.loads(json_path.read_text())
    assert "no_server_error" in data["summary"]["failed_checks"]
    failure = next(f for f in data["failures"] if f["check"] == "no_server_error")
    assert failure["operation"] == "createTicket"
    assert failure["exchange"]["response"]["status"] == 500
    assert failure["curl"].startswith("curl ")
    assert data["operations"]["createTicket"]["no_server_error"] == "fail"
    assert data["leftovers"] == [
        {
            "collection": "invoices",
            "id": "inv_1",
            "by": "t",
            "reason": "the API has no delete operation",
        }
    ]
    page = html_path.read_text()
    assert "<script>x</script>" not in page and "&lt;script&gt;" in page
    assert not re.search(r"<(script|link)\b|@import|url\(|src=", page)
    assert "$OPSMERGE_API_KEY" in page and "no_server_error" in page
    for text in (page, json_path.read_text()):
        assert SECRET not in text


def test_the_summary_names_failing_checks_and_leftovers() -> None:
    report = RunReport()
    report.add_results("t", run_checks(CheckContext(load_spec()), [failing_exchange()]), curl_line)
    report.leftovers.append(Leftover("invoices", "inv_1", "t", "no delete operation"))
    text = report.render_summary(width=120)
    assert "no_server_error" in text and "createTicket" in text and "✗" in text
    assert "leftovers: 1 invoices (no delete operation)" in text

"""openapi-typescript types from the served spec accept the bodies integrators really send.

The README's own request bodies (read from its curl lines, a POST without `-d` being `{}`), a
one-field update and invoice lines without a tax code type-check with tsc under `strict`, with the
tools' default options; a body missing a required field does not, so the check has teeth.
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.client_tooling import NPM_BIN, ROOT, download_spec, run, sandbox, tool

CURL = re.compile(r"^curl .*$", re.MULTILINE)
TSCONFIG = {
    "compilerOptions": {
        "strict": True,
        "noEmit": True,
        "target": "es2020",
        "module": "esnext",
        "moduleResolution": "bundler",
    },
    "files": ["bodies.ts"],
}


def readme_bodies(spec: dict[str, Any]) -> list[tuple[str, str, str, Any]]:
    """(method, spec path, concrete URL, body) of each README curl that sends a body."""
    base = "/api/v1"
    templates = [
        (re.compile("^" + re.sub(r"\{[^}]+\}", "[^/]+", p) + "$"), p) for p in spec["paths"]
    ]
    found = []
    for line in CURL.findall((ROOT / "README.md").read_text()):
        words = shlex.split(line)
        method = words[words.index("-X") + 1] if "-X" in words else "GET"
        if method not in ("POST", "PATCH", "PUT"):
            continue
        url = next(w for w in words if w.startswith("http"))
        if base not in url:
            continue  # the control API, which the spec does not describe
        path = url.split(base, 1)[1].split("?")[0]
        template = next(t for pattern, t in templates if pattern.match(path))
        body = json.loads(words[words.index("-d") + 1]) if "-d" in words else {}
        found.append((method, template, url, body))
    return found


def _body_type(method: str, path: str) -> str:
    op = f'paths["{path}"]["{method.lower()}"]'
    return f'NonNullable<{op}["requestBody"]>["content"]["application/json"]'


@pytest.fixture(scope="module")
def typed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    generator = tool(NPM_BIN / "openapi-typescript")
    work = tmp_path_factory.mktemp("typescript")
    with sandbox() as server:
        spec = download_spec(server.url, work / "openapi.json")
    out = run([generator, "openapi.json", "-o", "api.d.ts"], cwd=work)
    assert out.returncode == 0, out.stdout + out.stderr
    (work / "tsconfig.json").write_text(json.dumps(TSCONFIG))
    yield {"work": work, "spec": spec}


def _check(work: Path, lines: list[str]) -> tuple[int, str]:
    source = ['import type { paths, components } from "./api";', *lines, "export {};"]
    (work / "bodies.ts").write_text("\n".join(source) + "\n")
    out = run([tool(NPM_BIN / "tsc"), "-p", "tsconfig.json"], cwd=work)
    return out.returncode, out.stdout + out.stderr


def test_the_readme_bodies_type_check(typed: dict[str, Any]) -> None:
    bodies = readme_bodies(typed["spec"])
    # the quickstart creates a ticket and reboots an agent with no body at all
    assert {(m, p) for m, p, _, _ in bodies} >= {
        ("POST", "/tickets"),
        ("POST", "/agents/{id}/reboot"),
    }, bodies
    lines = [
        f"const body{i}: {_body_type(m, p)} = {json.dumps(b)};"
        for i, (m, p, _, b) in enumerate(bodies)
    ]
    code, text = _check(typed["work"], lines)
    assert code == 0, text


def test_updates_and_invoice_lines_take_only_what_they_change(typed: dict[str, Any]) -> None:
    lines = [
        'const rename: components["schemas"]["TicketUpdate"] = {subject: "Printer offline"};',
        'const reboot: components["schemas"]["AgentRebootCreate"] = {};',
        'const invoice: components["schemas"]["InvoiceCreate"] = {client_id: "cli_acme", '
        'lines: [{description: "Onsite visit", quantity: 1, unit_price: 95}]};',
        'const client: components["schemas"]["ClientUpdate"] = {industry: null};',
    ]
    code, text = _check(typed["work"], lines)
    assert code == 0, text


def test_a_body_missing_a_required_field_does_not_type_check(typed: dict[str, Any]) -> None:
    code, text = _check(
        typed["work"],
        ['const ticket: components["schemas"]["TicketCreate"] = {subject: "Printer offline"};'],
    )
    assert code != 0 and "client_id" in text, text

"""A Postman collection converted from the served spec runs with newman, first Send and all.

openapi-to-postmanv2 converts the spec downloaded from a sandbox on a free port, generating the
requests from the spec's examples (Postman's "Parameter generation: Example"); newman runs every
request once, in the collection's order, against that sandbox. Each request gets an answer its
operation documents, none is refused for what the examples say (400, 404, 422), and lists return
items.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import pytest

from opsmerge_sandbox.spec import load_spec
from tests.client_tooling import NPM_BIN, OWNER_KEY, download_spec, run, sandbox, tool

SPEC = load_spec()
REFUSED_FOR_THE_EXAMPLES = {400, 404, 422}


@pytest.fixture(scope="module")
def newman_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    converter = tool(NPM_BIN / "openapi2postmanv2")
    newman = tool(NPM_BIN / "newman")
    work = tmp_path_factory.mktemp("postman")
    with sandbox() as server:
        spec = download_spec(server.url, work / "openapi.json")
        options = ("-O", "parametersResolution=Example")
        converted = run([converter, "-s", "openapi.json", "-o", "collection.json", *options], work)
        assert converted.returncode == 0, converted.stdout + converted.stderr
        report = ("--reporters", "json", "--reporter-json-export", "run.json")
        key = ("--env-var", f"bearerToken={OWNER_KEY}")
        ran = run([newman, "run", "collection.json", *key, *report], work)
        assert (work / "run.json").exists(), ran.stdout + ran.stderr
        yield {
            "url": server.url,
            "spec": spec,
            "collection": json.loads((work / "collection.json").read_text()),
            "report": json.loads((work / "run.json").read_text()),
        }


def _operation(method: str, path: list[str]) -> Any:
    """The spec operation a request of the collection calls."""
    concrete = "/" + "/".join(path)
    concrete = concrete.removeprefix(SPEC.base_path)
    for op in SPEC.operations:
        pattern = "^" + re.sub(r"\{[^}]+\}", "[^/]+", op.path) + "$"
        if op.method == method and re.match(pattern, concrete):
            return op
    raise AssertionError(f"no operation for {method} {concrete}")


def _answers(report: dict[str, Any]) -> list[tuple[Any, int, Any]]:
    out = []
    for execution in report["run"]["executions"]:
        request = execution["request"]
        response = execution.get("response")
        assert response is not None, f"{request['method']} {request['url']} got no answer"
        text = bytes(response["stream"]["data"]).decode()
        out.append((_operation(request["method"], request["url"]["path"]), response["code"], text))
    return out


def test_the_collection_points_at_the_sandbox_it_was_downloaded_from(
    newman_run: dict[str, Any],
) -> None:
    variables = {v["key"]: v["value"] for v in newman_run["collection"]["variable"]}
    assert variables["baseUrl"] == newman_run["url"] + SPEC.base_path


def test_every_operation_is_sent_once_and_answers_as_it_documents(
    newman_run: dict[str, Any],
) -> None:
    answers = _answers(newman_run["report"])
    assert sorted(op.operation_id for op, _, _ in answers) == sorted(
        op.operation_id for op in SPEC.operations
    )
    wrong = [
        (op.operation_id, code, text[:200])
        for op, code, text in answers
        if code not in op.documented_statuses or code in REFUSED_FOR_THE_EXAMPLES
    ]
    assert not wrong, wrong


def test_requests_succeed_except_where_the_spec_says_they_cannot(
    newman_run: dict[str, Any],
) -> None:
    """Session-only operations get 401 (no session in a collection); a delete whose example is
    still referenced, or an action its example's state holds back (a contract that has billed
    is not voided), says so in its description and gets its 409."""
    for op, code, text in _answers(newman_run["report"]):
        if op.session_only:
            assert (code, json.loads(text)["error"]["code"]) == (401, "AUTH_REQUIRED")
        elif code == 409:
            assert op.kind in ("delete", "action"), text
            assert "answers 409" in op.raw.get("description", ""), text
        else:
            assert 200 <= code < 300, (op.operation_id, code, text[:200])


def test_every_list_returns_items(newman_run: dict[str, Any]) -> None:
    empty = [
        op.operation_id
        for op, code, text in _answers(newman_run["report"])
        if op.kind == "list" and code == 200 and not json.loads(text)["data"]["items"]
    ]
    assert not empty, empty

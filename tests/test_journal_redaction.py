"""The journal never keeps a key a client put in its URL.

Clients that cannot set headers put keys in query strings (`?api_key=om_...`) or paste them into
paths; the journal is read over HTTP and pasted into bug reports, so it redacts them itself.
"""

from __future__ import annotations

import pytest
from litestar.testing import TestClient

from opsmerge_sandbox.journal import REDACTED, redact_query
from opsmerge_sandbox.pipeline.resources import Resources
from tests.conftest import ADMIN, bearer, key_named, make_app


def _journal_text(client: TestClient) -> tuple[list[dict[str, object]], str]:
    items = client.get("/_sandbox/requests?limit=1000", headers=ADMIN).json()["data"]["items"]
    return items, repr(items)


def test_keys_in_query_strings_and_paths_never_reach_the_journal() -> None:
    app = make_app()
    secret = key_named(app, "Owner - full")
    with TestClient(app) as client:
        auth = bearer(secret)
        tail = secret[len("om_") :]
        queries = [
            f"api_key={secret}&page=2",
            f"x={secret}",
            f"access_token=anything-at-all&per_page=5&apiKey={tail}",
            f"Authorization=Bearer%20{secret}",
            f"note=%6Fm_{tail}",  # percent-encoded om_
            secret,  # a bare key as the whole query
        ]
        for query in queries:
            assert client.get(f"/api/v1/agents?{query}", headers=auth).status_code < 500
        assert client.get(f"/api/v1/agents/{secret}", headers=auth).status_code == 404
        items, text = _journal_text(client)
        assert len(items) == len(queries) + 1
        assert tail not in text and "anything-at-all" not in text
        assert text.count(REDACTED) >= len(queries) + 1
        by_query = [str(item["query"]) for item in items]
        assert "page=2" in by_query[0] and "per_page=5" in by_query[2]  # the rest stays readable
        assert items[-1]["path"] == f"/api/v1/agents/{REDACTED}"


def test_ordinary_parameters_that_merely_contain_om_are_kept() -> None:
    kept = "room=room_1&status=Open&sort=-created_at&zoom_level=2"
    assert redact_query(kept) == kept
    assert redact_query("sort_key=om_x") == f"sort_key={REDACTED}"


@pytest.mark.interpreted
def test_the_crash_log_never_holds_a_key_sent_in_the_path(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = make_app()
    secret = key_named(app, "Owner - full")

    def fail(*_: object) -> None:
        raise RuntimeError("a handler bug")

    monkeypatch.setattr(Resources, "handle", fail)
    url = f"/api/v1/agents/{secret}?api_key={secret}"
    client = TestClient(app, raise_server_exceptions=False)
    with caplog.at_level("ERROR", logger="sandbox"), client:  # another test may quieten it
        answer = client.get(url, headers=bearer(secret))
    assert answer.status_code == 500
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "unhandled error" in logged and f"/api/v1/agents/{REDACTED}" in logged
    assert secret[len("om_") :] not in logged

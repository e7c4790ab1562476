"""Schema types and rate-limit header names are defined once, and every reader agrees."""

from __future__ import annotations

from typing import Any

import pytest

from opsmerge_contracts.bodies import invalid_bodies
from opsmerge_sandbox.errors import ApiError
from opsmerge_sandbox.jsontypes import JSON_TYPES, allows_null, json_types
from opsmerge_sandbox.pipeline.ratelimit import RATE_LIMIT_HEADERS, RateState, rate_limit_headers
from opsmerge_sandbox.pipeline.strict import StrictChecker
from opsmerge_sandbox.spec import load_spec
from opsmerge_sandbox.world.hints import nullable, types_of
from tests.conftest import bearer, key_named


@pytest.mark.parametrize(
    ("schema", "types", "null"),
    [
        ({}, (), False),
        ({"type": "string"}, ("string",), False),
        ({"type": ["integer", "null"]}, ("integer", "null"), True),
        ({"type": "null"}, ("null",), True),
        ({"type": "string", "enum": ["a", None]}, ("string",), True),
    ],
)
def test_schema_types_read_the_same_whether_given_as_a_name_a_list_or_not_at_all(
    schema: dict[str, Any], types: tuple[str, ...], null: bool
) -> None:
    assert json_types(schema) == types
    assert types_of(schema) == set(types)  # the world generator reads the same types
    assert allows_null(schema) is null


def test_the_generator_treats_a_schema_without_a_type_as_nullable() -> None:
    """Its own rule, kept: any value (null included) validates a schema that names no type."""
    assert nullable({}) and not allows_null({})


def test_a_wrong_type_mutation_is_never_acceptable_under_another_allowed_type() -> None:
    schema = {
        "type": "object",
        "properties": {"count": {"type": ["integer", "string"]}, "flag": {"type": "boolean"}},
    }
    wrong = [m for m in invalid_bodies(schema, {"count": 1, "flag": True}, seed="x")
             if "wrong type" in m.name]
    assert wrong
    for mutation in wrong:
        field = next(f for f in schema["properties"] if repr(f) in mutation.name)
        allowed = json_types(schema["properties"][field])
        assert not any(isinstance(mutation.body[field], JSON_TYPES[t]) for t in allowed), mutation


def test_the_bucket_headers_a_server_sends_are_the_ones_strict_mode_checks(
    client: Any, app: Any
) -> None:
    r = client.get("/api/v1/auth/me", headers=bearer(key_named(app, "Owner - full")))
    assert r.status_code == 200, r.text
    assert all(name in r.headers for name in RATE_LIMIT_HEADERS)
    assert RateState(10, 3, 42).headers() == rate_limit_headers(10, 3, 42)
    assert list(rate_limit_headers(10, 3, 42).values()) == ["10", "3", "42"]
    op = next(o for o in load_spec().operations if o.kind == "identity")
    status = str(op.success_status)
    payload = r.json()
    sent = {k.lower(): v for k, v in r.headers.items()}
    StrictChecker().check(op, int(status), payload, sent, forced=False)  # passes as sent
    for name in RATE_LIMIT_HEADERS:
        with pytest.raises(ApiError, match=name):
            StrictChecker().check(
                op, int(status), payload, {k: v for k, v in sent.items() if k != name},
                forced=False,
            )

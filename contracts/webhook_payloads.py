"""Webhook bodies judged against the spec's OpenAPI 3.1 `webhooks` map.

Each event name is a `webhooks` entry whose POST request body is the payload's schema; a body
is checked with the same validators as the API's own bodies. The receiver fixture records the
problems of every delivery, and the `webhook_payload` contract check reports them.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from functools import cache
from typing import Any

from opsmerge_sandbox.pipeline.validate import compile_schema, schema_details
from opsmerge_sandbox.spec import flatten, load_spec

SIGNATURE_HEADER = "x-opsmerge-signature"
EVENT_HEADER = "x-opsmerge-event"
DELIVERY_HEADER = "x-opsmerge-delivery"
ATTEMPT_HEADER = "x-opsmerge-attempt"
SIGNED = re.compile(r"^t=[0-9]+,v1=[0-9a-f]{64}$")


@cache
def _validators(spec_path: str | None) -> dict[str, Any]:
    spec = load_spec(spec_path) if spec_path else load_spec()
    out = {}
    for name, item in (spec.resolved.get("webhooks") or {}).items():
        body = (item.get("post") or {}).get("requestBody") or {}
        schema = ((body.get("content") or {}).get("application/json") or {}).get("schema")
        if isinstance(schema, dict):
            out[name] = compile_schema(flatten(schema))
    return out


def webhook_events(spec_path: str | None = None) -> list[str]:
    """The event names the spec documents a payload for."""
    return sorted(_validators(spec_path))


def payload_problems(
    event_type: str | None, payload: Any, spec_path: str | None = None
) -> Iterator[str]:
    """What is wrong with a delivered body, as `field: message` lines (nothing when valid)."""
    validators = _validators(spec_path)
    validator = validators.get(event_type or "")
    if validator is None:
        yield f"the spec's webhooks document no event {event_type!r}"
        return
    if isinstance(payload, dict) and payload.get("type") != event_type:
        yield f"type: the body says {payload.get('type')!r}, the event header {event_type!r}"
    for detail in schema_details(validator, payload, "body"):
        yield f"{detail.field or '(body)'}: {detail.message}"

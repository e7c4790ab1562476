"""The document rules for `x-sandbox-auth`: where users and roles live, and which collection
lists the recipe's API keys.

The world generator mirrors every recipe key into that collection through the mapping, so a typo
(a collection no schema declares, a field the schema lacks, an unknown source) would otherwise
surface only when the sandbox starts; this rule says it first, with the generator's own words.
"""

from __future__ import annotations

from collections.abc import Iterator

from opsmerge_sandbox.pipeline.authorize import AUTH_FIELDS
from opsmerge_sandbox.spec import flatten
from opsmerge_sandbox.speccheck.document import BrokenRef, Document, component_section
from opsmerge_sandbox.speccheck.document_rules import document_rule
from opsmerge_sandbox.speccheck.problems import Problem
from opsmerge_sandbox.world.key_records import key_mapping_problems


@document_rule
def _auth_model(doc: Document) -> Iterator[Problem]:
    """`x-sandbox-auth` names where users and roles live: every part the sandbox reads."""
    ext = doc.raw.get("x-sandbox-auth")
    if not isinstance(ext, dict):
        yield Problem("x-sandbox-auth", "is missing: where users, roles and statuses live", "auth")
        return
    for key in AUTH_FIELDS:
        if not ext.get(key):
            yield Problem("x-sandbox-auth", f"lacks {key}", "auth")
    for key in ("users", "roles"):
        if ext.get(key) and ext[key] not in doc.collections:
            yield Problem("x-sandbox-auth", f"{key} {ext[key]!r} names no collection", "auth")
    yield from _statuses(doc, ext)


def _statuses(doc: Document, ext: dict) -> Iterator[Problem]:
    """The statuses that disable keys or hold none are lists of the users' status values."""
    offered = None
    users, field = ext.get("users"), ext.get("status-field")
    if users in doc.collections and isinstance(field, str):
        try:
            named = component_section(doc.raw, "schemas")[doc.collections[users]]
            schema = flatten(doc.resolve(named))
        except (BrokenRef, KeyError):
            schema = {}
        offered = ((schema.get("properties") or {}).get(field) or {}).get("enum")
    for key in ("inactive-statuses", "keyless-statuses"):
        value = ext.get(key)
        if value is None:
            continue
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            yield Problem("x-sandbox-auth", f"{key} must be a list of status values", "auth")
            continue
        for status in value:
            if offered is not None and status not in offered:
                yield Problem(
                    "x-sandbox-auth",
                    f"{key} names {status!r}, which {users}.{field} does not offer",
                    "auth",
                )


@document_rule
def _auth_keys(doc: Document) -> Iterator[Problem]:
    """`x-sandbox-auth.keys` names a collection and maps only its fields to known sources."""
    ext = doc.raw.get("x-sandbox-auth")
    if not isinstance(ext, dict) or "keys" not in ext:
        return
    schemas = component_section(doc.raw, "schemas")
    properties: dict[str, list[str]] = {}
    for collection, schema_name in doc.collections.items():
        try:
            flat = flatten(doc.resolve(schemas[schema_name]))
        except BrokenRef:
            continue  # reported once by the refs rule
        properties[collection] = list(flat.get("properties") or {})
    for message in key_mapping_problems(ext["keys"], properties):
        yield Problem("x-sandbox-auth", message, "auth-keys")

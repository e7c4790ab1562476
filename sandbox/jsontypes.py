"""JSON Schema `type` in one place: a schema may give one name, a list of names, or none.

The server, the world generator and the contracts all ask "which types does this schema allow?"
and "which Python values are of that type?"; reading `type` by hand in each gave each its own
answer for a missing type or a single name, so they read it here.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

JSON_TYPES: dict[str, tuple[type, ...]] = {  # JSON Schema type -> Python types
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "array": (list,),
    "object": (dict,),
    "null": (type(None),),
}


def json_types(schema: Mapping[str, Any]) -> tuple[str, ...]:
    """The schema's types in the order given; () when it names none (any type validates)."""
    kind = schema.get("type")
    if isinstance(kind, list):
        return tuple(str(k) for k in kind)
    return (str(kind),) if kind else ()


def allows_null(schema: Mapping[str, Any]) -> bool:
    """Whether the schema names null among its types or lists null among its enum values."""
    return "null" in json_types(schema) or None in (schema.get("enum") or ())

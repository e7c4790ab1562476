"""What an `x-ref` declares: the collection it names with what it copies and where it looks,
and, for the generator, how it covers its targets (`cover-with` rounds, the `rest-where` of the
records past them). One reading for the spec, its check and the world; it imports nothing of
the project, so each of them can."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["cover_rounds", "ref_of", "rest_where"]

Schema = dict[str, Any]


def ref_of(schema: Schema) -> tuple[str, dict[str, str], dict[str, str]] | None:
    """(collection, copy, where) of a property's `x-ref`, or None: how records point at others."""
    ref = schema.get("x-ref")
    if ref is None:
        return None
    if isinstance(ref, str):
        return ref, {}, {}
    return ref["collection"], dict(ref.get("copy") or {}), dict(ref.get("where") or {})


def cover_rounds(ref: Mapping[str, Any]) -> tuple[str, list[Any]] | None:
    """An `x-ref`'s `cover-with: {field, values}` as (field, values), None without one; a
    ValueError says what is wrong with one that cannot be followed (it needs `cover: true`)."""
    rounds = ref.get("cover-with")
    if rounds is None:
        return None
    if not (
        ref.get("cover") is True
        and isinstance(rounds, Mapping)
        and isinstance(rounds.get("field"), str)
        and isinstance(rounds.get("values"), list)
        and rounds["values"]
    ):
        raise ValueError(
            "x-ref.cover-with is {field, values} (values a non-empty list) beside `cover: true`"
        )
    return rounds["field"], list(rounds["values"])


def rest_where(ref: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """An `x-ref`'s `rest-where` (what the records past the covered ones name), None without
    one; a ValueError when it is no mapping or stands without `cover: true`."""
    rest = ref.get("rest-where")
    if rest is None:
        return None
    if ref.get("cover") is not True or not isinstance(rest, Mapping):
        raise ValueError("x-ref.rest-where is a mapping beside `cover: true`")
    return rest

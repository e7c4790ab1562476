"""Whether each seeded record is one its own schema accepts: a generator hint that leaves a
required field null (a time read through a path the record cannot follow, say) is a broken
world however well it keeps the `x-invariants`, and strict mode would refuse to serve it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jsonschema_rs

from opsmerge_sandbox.spec import strip_extensions
from opsmerge_sandbox.world.invariants import Violation

RULE = "matches-its-schema"
KLASS = "shape"


def shape_violations(
    world: Mapping[str, list[dict[str, Any]]], schemas: Mapping[str, Any]
) -> list[Violation]:
    """One violation per record its collection's schema refuses, naming the first problem."""
    out: list[Violation] = []
    for collection, records in world.items():
        schema = schemas.get(collection)
        if schema is None:
            continue
        validator = jsonschema_rs.validator_for(strip_extensions(schema), validate_formats=True)
        for record in records:
            if validator.is_valid(record):
                continue
            first = next(iter(validator.iter_errors(record)))
            where = "/".join(str(p) for p in first.instance_path) or "(record)"
            out.append(
                Violation(
                    collection, str(record.get("id")), RULE, KLASS, f"{where}: {first.message}"
                )
            )
    return out

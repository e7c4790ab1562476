"""What the checks report: a `Problem` for the reader, a `Finding` from one operation rule.

Kept apart from the document model and the rules so that the validator step, the rules and the
command can all speak the same result type without importing one another.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with the document: where it is, what is wrong, and which check said so."""

    where: str
    message: str
    rule: str = "openapi"


@dataclass(frozen=True, slots=True)
class Finding:
    """What a rule yields: a message, and the shared component it belongs to, if any."""

    message: str
    component: str | None = None

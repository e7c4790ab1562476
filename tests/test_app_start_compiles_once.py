"""What an app prepares from the spec alone is prepared once at start.

The API's handlers and the rule engine each hold handlers of the spec's resources; the write
invariants and the schemas' field rules they run are compiled from the spec alone, so the
second set shares the first one's instead of compiling them again (~0.1 s of a ~1 s start).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from opsmerge_sandbox.pipeline import record_invariants, resources
from tests.conftest import make_app


@pytest.mark.interpreted
def test_an_app_compiles_its_write_invariants_and_field_rules_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    made: Counter[str] = Counter()
    real_invariants = record_invariants.WriteInvariants.__init__
    real_rules = resources.collection_rules

    def invariants(self: Any, *args: Any, **kwargs: Any) -> None:
        made["write invariants"] += 1
        real_invariants(self, *args, **kwargs)

    def rules(*args: Any, **kwargs: Any) -> Any:
        made["field rules"] += 1
        return real_rules(*args, **kwargs)

    monkeypatch.setattr(record_invariants.WriteInvariants, "__init__", invariants)
    monkeypatch.setattr(resources, "collection_rules", rules)
    app = make_app()
    assert app.state.sandbox.events is not None  # the spec declares rules: two sets of handlers
    assert made == {"write invariants": 1, "field rules": 1}

"""The request budget: the most requests a run may send to its target.

Counted where requests are sent, so nothing (a probe, a scenario, an integrator's own call through
`opsmerge_client`) can go around it. Running out is not a contract failure: the test that needed
the request is skipped and says why.
"""

from __future__ import annotations

import threading


class BudgetExhausted(Exception):
    """The run has sent as many requests as its budget allows."""


class Budget:
    def __init__(self, limit: int | None) -> None:
        if limit is not None and limit < 0:
            raise ValueError("the request budget cannot be negative")
        self.limit = limit
        self.spent = 0
        self._lock = threading.Lock()

    @property
    def remaining(self) -> int | None:
        return None if self.limit is None else max(0, self.limit - self.spent)

    def allows(self, n: int) -> bool:
        """Whether `n` more requests fit, for probes that must not start what they cannot finish."""
        return self.limit is None or self.spent + n <= self.limit

    def spend(self) -> None:
        with self._lock:
            if self.limit is not None and self.spent >= self.limit:
                raise BudgetExhausted(f"the request budget of {self.limit} is spent")
            self.spent += 1

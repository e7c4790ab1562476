"""What the proxy found: a bounded journal of violating exchanges, counts, and the run report.

The journal is what `GET /_proxy/violations` lists (newest last, bounded like the sandbox's
own journal, paths and queries redacted the same way); the counts and the operations-by-checks
matrix live in the harness's `RunReport`, so the summary printed on exit and the JSON and HTML
written by `--report` are the reports a contract run writes. A long-running proxy keeps at most
`failures_kept` failing exchanges in full for the report; the counts keep counting.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass
from typing import Any

from opsmerge_contracts.checks import FAIL, Result
from opsmerge_contracts.exchange import Exchange, curl_line
from opsmerge_contracts.report import RunReport
from opsmerge_sandbox.journal import redact_path, redact_query


@dataclass(frozen=True, slots=True)
class Observed:
    """One violating exchange as the admin endpoint shows it (no key, no body)."""

    at: float
    method: str
    path: str
    query: str
    operation_id: str | None
    status: int
    served_by: str
    violations: tuple[tuple[str, str], ...]  # (check id, message)

    def to_dict(self) -> dict[str, Any]:
        return {
            "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.at)),
            "method": self.method,
            "path": redact_path(self.path),
            "query": redact_query(self.query),
            "operation_id": self.operation_id,
            "status": self.status,
            "served_by": self.served_by,
            "violations": [{"check": c, "message": m} for c, m in self.violations],
        }


class Findings:
    def __init__(self, size: int = 1000, failures_kept: int = 200) -> None:
        self.journal: deque[Observed] = deque(maxlen=size)
        self.report = RunReport(meta={"mode": "proxy"})
        self.failures_kept = failures_kept
        self.requests = 0
        self.violating = 0
        self.unreachable = 0
        self.by_sandbox = 0

    def add(self, exchange: Exchange, results: list[Result], served_by: str) -> list[Result]:
        """Count one exchange's results; the failed ones (its violations), in registry order."""
        self.requests += 1
        if served_by != "upstream":
            self.by_sandbox += 1
        self.report.add_results("proxy", results, curl_line)
        del self.report.failures[self.failures_kept :]
        failed = [r for r in results if r.status == FAIL]
        if failed:
            self.violating += 1
            self.journal.append(
                Observed(
                    at=time.time(),
                    method=exchange.request.method,
                    path=exchange.request.path,
                    query=exchange.request.url.partition("?")[2],
                    operation_id=exchange.operation_id,
                    status=exchange.response.status,
                    served_by=served_by,
                    violations=tuple((r.check, r.message) for r in failed),
                )
            )
        return failed

    def recent(self, limit: int = 100) -> list[dict[str, Any]]:
        items = list(self.journal)[-limit:]
        return [o.to_dict() for o in items]

    def summary(self) -> dict[str, Any]:
        counts = self.report.counts
        return {
            "requests": self.requests,
            "violating": self.violating,
            "unreachable": self.unreachable,
            "served_by_sandbox": self.by_sandbox,
            "violations": {
                check: tally[FAIL] for check, tally in sorted(counts.items()) if tally[FAIL]
            },
            "operations": {
                op: sorted(c for c, s in row.items() if s == FAIL)
                for op, row in sorted(self.report.matrix.items())
                if any(s == FAIL for s in row.values())
            },
        }

    def render(self, width: int = 100) -> str:
        """The summary printed when the proxy stops: one line, then the harness's tables."""
        self.report.stats["requests"] = self.requests
        self.report.finished = time.time()
        head = (
            f"proxy: {self.requests} request(s), {self.violating} violating the spec"
            + (f", {self.by_sandbox} served by the sandbox" if self.by_sandbox else "")
            + (f", {self.unreachable} upstream failure(s)" if self.unreachable else "")
            + "\n"
        )
        if not self.report.counts:
            return head
        tables = self.report.render_summary(width=width)
        # the harness's closing line counts contract tests, which a proxy has none of
        kept = [line for line in tables.splitlines() if not line.startswith("contracts: ")]
        return head + "\n".join(kept) + "\n"

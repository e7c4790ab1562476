"""Invoice creates as the workspace's invoices grow: the cost of numbering them.

An invoice number continues the highest of its year, so the next one depends on every invoice
the workspace holds. This runs `--creates` invoice creates into one in-process sandbox (no server,
no sockets: the cost measured is the sandbox's own) and prints the microseconds per create in each
quarter of the run: flat when a create reads only what changed since the last, rising when it
reads them all.

    .venv/bin/python benchmarks/invoice_numbers.py [--creates 4000] [--root DIR]
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OWNER = "Bearer om_sbx_owner_full_pG5aQxpYERgXwi9iPGPE2lWARD"  # the default recipe's owner
BODY = {
    "client_id": "cli_acme",
    "issue_date": "2030-03-01",
    "lines": [{"description": "Managed service", "quantity": 1, "unit_price": 5}],
}


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--creates", type=int, default=4000, help="invoices to create (>= 4)")
    p.add_argument("--root", type=Path, default=ROOT, help="the checkout to measure")
    opts = p.parse_args(argv)
    if opts.creates < 4:
        p.error("--creates must be at least 4")
    sys.path.insert(0, str(opts.root))
    from litestar.testing import TestClient

    from opsmerge_sandbox.app import create_app
    from opsmerge_sandbox.settings import Settings

    quarter = opts.creates // 4
    per_create: list[float] = []
    with TestClient(create_app(Settings(rate_limit=10**9))) as client:
        started = time.perf_counter()
        for i in range(1, quarter * 4 + 1):
            r = client.post("/api/v1/invoices", headers={"Authorization": OWNER}, json=BODY)
            if r.status_code != 201:
                raise SystemExit(f"create {i} answered {r.status_code}: {r.text[:300]}")
            if i % quarter == 0:
                now = time.perf_counter()
                per_create.append((now - started) / quarter * 1e6)
                started = now
    shown = " / ".join(f"{us:,.0f}" for us in per_create)
    print(f"invoice create, us each, by quarter of {quarter * 4}: {shown}")
    print(f"last quarter / first quarter: {per_create[-1] / per_create[0]:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())

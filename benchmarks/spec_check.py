"""How long `opsmerge-sandbox spec check` takes on the bundled spec, by its parts: the OpenAPI
validation and the house lints. An editor or a pre-commit hook runs it on every save, so it
should stay well under a second; this prints the times rather than a test asserting them.

    .venv/bin/python benchmarks/spec_check.py [--rounds 7]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

from opsmerge_sandbox.catalogue import load_catalogue
from opsmerge_sandbox.spec import load_spec
from opsmerge_sandbox.speccheck import check_spec, lint_document

TARGET_S = 0.5  # the lints alone, best round


def _best(rounds: int, work: Callable[[], object]) -> float:
    """The fastest of `rounds` runs, in seconds (other work on the machine only slows a run)."""
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        work()
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    spec = load_spec()
    catalogue = load_catalogue()
    lints = _best(args.rounds, lambda: lint_document(spec.raw, catalogue))
    whole = _best(args.rounds, lambda: check_spec(spec.raw, catalogue))
    verdict = "met" if lints < TARGET_S else "missed"
    target = f"target < {TARGET_S * 1000:.0f} ms: {verdict}"
    print(f"house lints        {lints * 1000:8.1f} ms  ({target})")
    print(f"validation + lints {whole * 1000:8.1f} ms")


if __name__ == "__main__":
    main()

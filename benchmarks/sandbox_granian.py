"""The sandbox's own app served by granian: what `serve` would answer on granian instead of
uvicorn, so `make bench` chooses the server by measurement.

granian calls the app through ASGI, so the API lane (`sandbox/api_lane.py`, which answers the
API's operations from uvicorn's protocol itself) is not in this path: the comparison is
uvicorn with the lane against granian with Litestar's ASGI cycle, each as it would serve.
Run it as the benchmark does: ``python -m granian --interface asgi --factory --working-dir
benchmarks sandbox_granian:app_from_env`` (`BENCH_RATE_LIMIT` sets the per-key limit).
"""

from __future__ import annotations

import gc
import os
from typing import Any

from opsmerge_sandbox.app import create_app
from opsmerge_sandbox.settings import Settings


def app_from_env() -> Any:
    """The app with `serve`'s defaults and the benchmark's rate limit (the limiter runs)."""
    app = create_app(Settings(rate_limit=int(os.environ.get("BENCH_RATE_LIMIT", "100000000"))))
    gc.collect()
    gc.freeze()  # as `serve` does: the seeded world is never garbage
    return app

"""Under abuse, shortened: many keys and workspaces at once against a hosted sandbox on loopback.

The same traffic as benchmarks/abuse.py (valid visitors, bad keys, bad headers, malformed and
oversized bodies, admin probes, preflights), a few hundred requests: every answer must be
well-formed and the number of workspaces must never pass the cap.
"""

from __future__ import annotations

import asyncio
import importlib.util
import logging
import sys
from pathlib import Path
from types import ModuleType

from sandbox.app import create_app
from sandbox.settings import Settings
from sandbox.state import build_state

CAP = 20
BENCH = Path(__file__).resolve().parent.parent / "benchmarks" / "abuse.py"


def _abuse() -> ModuleType:
    spec = importlib.util.spec_from_file_location("abuse_bench", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up while defined
    spec.loader.exec_module(module)
    return module


def test_abuse_gets_well_formed_answers_and_workspaces_stay_within_the_cap() -> None:
    abuse = _abuse()
    logging.getLogger("sandbox").setLevel(logging.CRITICAL)  # the abuse is meant to fail
    settings = Settings(hosted=True, cors_origins=("*",), hosted_max_workspaces=CAP)
    state = build_state(settings)
    app = create_app(settings, state)
    mix = abuse.Mix([k.key for k in state.recipe.keys], pool=6 * CAP, seed=11)
    alive: list[int] = []

    def probe(_done: int) -> None:
        alive.append(len(state.workspaces))

    with abuse.serve_in_thread(app) as base:
        result = asyncio.run(abuse.run_load(base, mix, 400, concurrency=8, on_progress=probe,
                                            every=10))
    alive.append(len(state.workspaces))

    assert result.requests == 400
    assert result.failures == [], "\n".join(result.failures)
    assert result.well_formed == result.requests
    assert max(alive) <= CAP, alive
    assert max(alive) == CAP  # the pool of names is larger than the cap: eviction happened
    assert "default" not in state.workspaces.names()
    # The mix really exercised visitors and abuse alike.
    assert {200, 201, 204, 400, 401, 404, 405} <= set(result.statuses)
    assert {"create", "bad_workspace", "unknown_key", "admin", "preflight"} <= set(result.kinds)

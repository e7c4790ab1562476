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

from opsmerge_sandbox.app import create_app
from opsmerge_sandbox.settings import Settings
from opsmerge_sandbox.state import build_state

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


def _hosted(abuse: ModuleType, **settings: object) -> tuple[object, object]:
    logging.getLogger("sandbox").setLevel(logging.CRITICAL)
    state = build_state(abuse.hosted_settings(**settings))
    return state, create_app(state.settings, state)


def _changed_records(state: object) -> int:
    from opsmerge_sandbox.hosted import changes_in

    workspaces = state.workspaces  # type: ignore[attr-defined]
    ignore = state.hosted.unbudgeted  # type: ignore[attr-defined]
    return sum(changes_in(workspaces.get(n), ignore) for n in workspaces.names())


def test_two_authorization_or_two_workspace_headers_are_refused_and_write_nothing() -> None:
    """Whichever header a stage would pick, the request is refused before anything is touched."""
    abuse = _abuse()
    state, app = _hosted(abuse, hosted_max_workspaces=CAP)
    mix = abuse.Mix([k.key for k in state.recipe.keys], pool=6 * CAP, seed=5, only=abuse.TRICKS)
    with abuse.serve_in_thread(app) as base:
        result = asyncio.run(abuse.run_load(base, mix, 120, concurrency=4))

    assert result.failures == [], "\n".join(result.failures)
    assert set(result.kinds) == set(abuse.TRICKS)
    assert set(result.statuses) == {400}, result.statuses
    assert _changed_records(state) == 0
    assert not any(n.startswith("trick-") for n in state.workspaces.names())


def test_one_key_rotating_workspaces_is_capped_by_the_per_address_limit() -> None:
    """Per-key buckets live per workspace: only the client address's budget bounds a rotation."""
    abuse = _abuse()
    limit = 15
    state, app = _hosted(abuse, hosted_max_workspaces=CAP, hosted_address_rate_limit=limit)
    assert state.settings.hosted_address_rate_limit == limit  # the sandbox knows the setting
    mix = abuse.Mix([k.key for k in state.recipe.keys], pool=CAP, only=["rotate"])
    with abuse.serve_in_thread(app) as base:
        result = asyncio.run(abuse.run_load(base, mix, 4 * limit, concurrency=4))

    assert result.failures == [], "\n".join(result.failures)
    through = sum(v for k, v in result.statuses.items() if 200 <= k < 300)
    assert through == limit, result.statuses
    assert result.statuses[429] == 3 * limit
    assert _changed_records(state) <= limit
    assert len(state.workspaces) <= CAP

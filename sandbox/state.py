"""Everything one sandbox instance holds, built once at start from (spec, recipe, settings)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from opsmerge_sandbox.clock import Clock
from opsmerge_sandbox.faults.rules import FaultRegistry
from opsmerge_sandbox.journal import Journal
from opsmerge_sandbox.pipeline.authenticate import ApiKey, KeyRing
from opsmerge_sandbox.pipeline.authorize import AuthModel
from opsmerge_sandbox.pipeline.ratelimit import RateLimiter
from opsmerge_sandbox.progress import progress
from opsmerge_sandbox.settings import Settings
from opsmerge_sandbox.spec import Spec, load_spec
from opsmerge_sandbox.startcache import cached, code_bytes
from opsmerge_sandbox.store.base import BaseCollection
from opsmerge_sandbox.store.persistence import DeltaStore
from opsmerge_sandbox.store.workspace import Workspaces
from opsmerge_sandbox.stores import (
    ClockStore,
    FaultRules,
    JournalStore,
    KeyStore,
    RateBuckets,
    RecordStore,
)
from opsmerge_sandbox.world.generator import build_world, key_mapping
from opsmerge_sandbox.world.recipe import Recipe, api_key, load_recipe

if TYPE_CHECKING:
    from opsmerge_sandbox.events.engine import RuleEngine
    from opsmerge_sandbox.hosted import HostedPolicy
    from opsmerge_sandbox.shared.build import Shared

CACHED_WORLD_MAX_RECORDS = 50_000  # larger worlds would write hundreds of MB to the cache


@dataclass(slots=True)
class SandboxState:
    settings: Settings
    spec: Spec
    recipe: Recipe
    bases: dict[str, BaseCollection]
    workspaces: RecordStore
    keys: KeyStore
    clock: ClockStore
    limiter: RateBuckets
    auth: AuthModel
    journal: JournalStore
    default_rate_limit: int
    faults: FaultRules
    hosted: HostedPolicy | None = None  # hosted mode's visitor policy, set up by create_app
    faults_file_loaded: bool = False
    started_at: float = field(default_factory=time.time)
    delta: DeltaStore | None = None  # where the workspaces' changes are stored
    events: RuleEngine | None = None  # rules that fire, and their webhooks (set by create_app)
    # set by create_app when the changing state lives in Redis (`--state`, `shared/build.py`)
    shared: Shared | None = None

    async def close(self) -> None:
        """At shutdown: queued writes reach the disk and the change log is compacted."""
        if self.delta is not None:
            await self.delta.close()
        if self.shared is not None:
            await self.shared.close(self)

    def rate_limit_of(self, key: ApiKey) -> int:
        return key.rate_limit or self.default_rate_limit

    def fresh_keys(self) -> KeyStore:
        """The recipe's keys as they were at start: minted keys dropped, revocations undone.

        A key was made when the world's record of it says (what its audit entry and the key
        list show), the world's epoch for a key the world keeps no record of."""
        epoch = self.recipe.epoch.strftime("%Y-%m-%dT%H:%M:%SZ")
        mapping = key_mapping(self.spec)
        records = self.bases.get(mapping.collection) if mapping is not None else None

        def made(key_id: str) -> str:
            record = records.get(key_id) if records is not None else None
            created = record.get("created_at") if record is not None else None
            return created if isinstance(created, str) else epoch

        return KeyRing([api_key(k, made(k.id)) for k in self.recipe.keys])


def prepare_bases(spec: Spec, world: dict[str, list[dict]]) -> dict[str, BaseCollection]:
    """Index the seeded world, and warm each list operation's default order and filters."""
    bases = {name: BaseCollection(name, world.get(name, [])) for name in spec.collections}
    for op in spec.operations:
        hints = op.hints
        if op.kind != "list" or hints.collection is None:
            continue
        base = bases[hints.collection]
        for p in op.params:
            if p.location != "query" or p.name in ("page", "per_page", "sort", "q"):
                continue
            if p.name not in hints.filter_ranges:  # a range is checked on the matches
                base.index(hints.filter_fields.get(p.name, p.name))
        sort = next((p.schema.get("default") for p in op.params if p.name == "sort"), None)
        if sort and hints.parent is None:
            base.query([], None, str(sort).lstrip("-"), str(sort).startswith("-"))
        if hints.parent is not None:
            base.index(hints.parent.field)
    return bases


def _world(spec: Spec, recipe: Recipe) -> dict[str, list[dict]]:
    """The seeded world; small worlds come from the start cache (a pure function of the inputs)."""
    total = sum(recipe.counts.values())
    if total > CACHED_WORLD_MAX_RECORDS:
        # a large world takes a while: progress on standard error (a bar on a terminal)
        with progress(f"Building world {recipe.name} (seed {recipe.seed})", total) as report:
            return build_world(spec, recipe, progress=report)
    code = code_bytes(
        "world", "spec.py", "extensions.py", "ref_options.py", "jsontypes.py",
        "pipeline/audit.py",
    )
    parts = [*code, spec.path.read_bytes(), repr(recipe).encode()]
    return cached("world", parts, lambda: build_world(spec, recipe))


def build_state(settings: Settings) -> SandboxState:
    spec = load_spec(settings.spec_path)
    recipe = load_recipe(settings.recipe, settings.seed)
    world = _world(spec, recipe)
    bases = prepare_bases(spec, world)
    delta = DeltaStore(settings.data_dir)
    clock = Clock()
    state = SandboxState(
        settings=settings,
        spec=spec,
        recipe=recipe,
        bases=bases,
        workspaces=Workspaces(bases, delta),
        keys=KeyRing([]),
        clock=clock,
        limiter=RateLimiter(clock),
        auth=AuthModel.from_spec(spec.resolved),
        journal=Journal(settings.journal_size),
        default_rate_limit=settings.rate_limit or recipe.rate_limit,
        faults=FaultRegistry(clock, revoke=lambda key_id: state.keys.revoke(key_id)),
        delta=delta,
    )
    state.keys = state.fresh_keys()
    return state

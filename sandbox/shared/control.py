"""The control state every worker must agree on: keys, the clock, fault rules.

These change only through the control API, so they travel as one snapshot under a version
number: a control request takes the control lock, catches up, makes its change on this worker
and publishes the new snapshot; every other worker sees the version move in its next request's
first round trip, which carries the new snapshot, and loads it before serving. Fault-rule
counters change on every request and so are not in the snapshot: they are Redis hashes that one
script moves atomically (`faults.SharedFaultRules`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict
from fnmatch import translate
from re import compile as compile_re
from typing import TYPE_CHECKING, Any, cast

import msgspec

from opsmerge_sandbox.clock import Clock
from opsmerge_sandbox.errors import ApiError
from opsmerge_sandbox.faults.rules import Effect, Match, Rule
from opsmerge_sandbox.pipeline.authenticate import ApiKey, KeyRing
from opsmerge_sandbox.shared.link import UNREACHABLE, Link, unavailable

if TYPE_CHECKING:
    from opsmerge_sandbox.shared.faults import SharedFaultRules
    from opsmerge_sandbox.shared.records import SharedWorkspaces, Version
    from opsmerge_sandbox.state import SandboxState

LOCK_MS = 10_000
log = logging.getLogger("sandbox.shared")
_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.decode

# The store's boot mark (set by the first worker to find none: a store that lost its data, a
# Redis restarted without persistence, has none), the control version and, when this worker's
# is behind, the snapshot, in the locals boot, v and snap (a part of the admission's script too)
CONTROL_CHECK = """
local boot = redis.call('GET', KEYS[3])
if not boot then
  redis.call('SET', KEYS[3], ARGV[2])
  boot = ARGV[2]
end
local v = tonumber(redis.call('GET', KEYS[1]) or '0')
local snap = ''
if v ~= tonumber(ARGV[1]) then snap = redis.call('GET', KEYS[2]) or '' end
"""
# ... alone: {boot, v, snapshot or ''}
CONTROL = CONTROL_CHECK + "return {boot, v, snap}\n"
PUBLISH = """
if redis.call('GET', KEYS[3]) ~= ARGV[1] then return -1 end
redis.call('SET', KEYS[2], ARGV[2])
return redis.call('INCR', KEYS[1])
"""
UNLOCK = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


def _key_dict(key: ApiKey) -> dict[str, Any]:
    out = asdict(key)
    out["scopes"] = sorted(key.scopes)
    out.pop("expires_ts", None)
    return out


def _rule_dict(rule: Rule) -> dict[str, Any]:
    return {
        "id": rule.id,
        "name": rule.name,
        "match": rule.match.as_dict(),
        "effect": asdict(rule.effect) if rule.effect is not None else None,
        "created_at": rule.created_at,
        "times": rule.times,
        "every": rule.every,
        "probability": rule.probability,
        "seed": rule.seed,
        "expires_at": rule.expires_at,
        "scenario": rule.scenario,
        "key": rule.key.id if rule.key is not None else None,
    }


def _rule_of(raw: dict[str, Any], keys: KeyRing) -> Rule:
    m = raw["match"]
    path = m.get("path")
    match = Match(
        m.get("method"), path, m.get("operation_id"), m.get("key"), m.get("workspace"),
        compile_re(translate(path)) if path is not None else None,
    )
    effect = Effect(**raw["effect"]) if raw["effect"] is not None else None
    key = keys.by_id(raw["key"]) if raw["key"] is not None else None
    return Rule(
        id=raw["id"], name=raw["name"], match=match, effect=effect,
        created_at=raw["created_at"], times=raw["times"], every=raw["every"],
        probability=raw["probability"], seed=raw["seed"], expires_at=raw["expires_at"],
        scenario=raw["scenario"], key=key,
    )


class Control:
    """This worker's copy of the control state, and the lock every control change takes."""

    def __init__(self, state: SandboxState, link: Link, faults: SharedFaultRules) -> None:
        self.state = state
        self.link = link
        self.faults = faults
        self.clock = cast(Clock, state.clock)  # the one embedded clock, moved by snapshots
        self.version = 0
        self.loaded = b""  # the snapshot this worker holds, as published
        self.version_keys = [link.key("ctl", "v"), link.key("ctl", "snap")]
        self.control_keys = [*self.version_keys, link.key("boot")]
        self.boot: bytes | None = None  # the store's boot mark this worker's copy belongs to
        self.mark = secrets.token_hex(8)  # the mark this worker sets on a store without one
        self._control = link.script(CONTROL)
        self._publish = link.script(PUBLISH)
        self._unlock = link.script(UNLOCK)
        self._lock_key = link.key("ctl", "lock")

    # ------------------------------------------------------------------ the snapshot
    def snapshot(self) -> bytes:
        clock = self.clock
        faults = self.faults
        return _encode({
            "keys": [_key_dict(k) for k in self.state.keys],
            "clock": {"offset": clock.offset, "ahead": dict(clock.ahead)},
            "faults": {"next": faults.next_number, "rules": [_rule_dict(r) for r in faults.rules]},
        })

    def queue(self, pipe: Any) -> None:
        """Add the control check to a pipeline; pass its answer to `take`."""
        self.link.queue(pipe, self._control, self.control_keys, [self.version, self.mark])

    def take(self, answer: Sequence[Any]) -> bool:
        """Load what a control check found; False when the store lost its data since this
        worker last looked (its copy is then forgotten: ask again)."""
        boot, version, snap = answer
        if boot != self.boot:
            lost = self.boot is not None
            if lost:
                self.forget()
            self.boot = boot
            if boot.decode() == self.mark:  # ours: the next empty store must get another
                self.mark = secrets.token_hex(8)
            if lost:
                return False
        if version != self.version:
            self.load(int(version), snap)
        return True

    def forget(self) -> None:
        """The store was emptied (a restart without persistence): back to the sandbox as
        started, as every other worker's copy goes, rather than serve what nobody holds."""
        state = self.state
        records: SharedWorkspaces = state.workspaces  # type: ignore[assignment]
        records.forget()
        state.keys = state.fresh_keys()
        self.clock.reset()
        self.faults.replace([], 0)
        self.version, self.loaded = 0, b""
        log.warning("the shared state store lost its data: this worker starts again from the seed")

    def load(self, version: int, raw: bytes) -> None:
        """Take the snapshot published as `version` (an empty one: nothing published yet)."""
        if raw and raw != self.loaded:
            data = _decode(raw)
            keys = KeyRing([
                ApiKey(**{**k, "scopes": frozenset(k["scopes"])}) for k in data["keys"]
            ])
            self.state.keys = keys
            clock = self.clock
            clock.offset = float(data["clock"]["offset"])
            clock.ahead.clear()
            clock.ahead.update(data["clock"]["ahead"])
            self.faults.replace([_rule_of(r, keys) for r in data["faults"]["rules"]],
                                int(data["faults"]["next"]))
            self.loaded = raw
        self.version = version

    # ------------------------------------------------------------------ control requests
    async def around(
        self, mutating: bool, workspaces: list[str], call: Callable[[], Awaitable[Any]]
    ) -> Any:
        """Run one control request on the latest state; a change is published to every worker."""
        token = None
        try:
            if mutating:
                token = await self._take_lock()
            await self.refresh(workspaces)
            clock = self.clock
            before = (clock.offset, dict(clock.ahead))
            result = await call()
            if mutating:
                await self._moved_clock(*before)
                await self._publish_if_changed(token)
            return result
        except UNREACHABLE as exc:
            raise unavailable(exc) from exc
        finally:
            if token is not None:
                with contextlib.suppress(*UNREACHABLE):  # else it expires on its own
                    await self._unlock([self._lock_key], [token])

    async def refresh(self, workspaces: list[str]) -> None:
        """Catch up the control state, the fault counters and these workspaces: one round trip."""
        records: SharedWorkspaces = self.state.workspaces  # type: ignore[assignment]
        def build(pipe: Any) -> list[Version]:
            self.queue(pipe)
            sent = [records.queue_catch_up(pipe, name) for name in workspaces]
            self.faults.queue_counters(pipe)
            return sent

        for _ in range(2):
            found, sent = await self.link.run(build)
            if self.take(found[0]):
                break
        for name, at, (epoch, n, entries) in zip(workspaces, sent, found[1:], strict=False):
            records.catch_up(name, at, int(epoch), int(n), entries)
        self.faults.take_counters(found[1 + len(workspaces):])

    async def _take_lock(self) -> str:
        token = secrets.token_hex(8)
        for _ in range(500):
            if await self.link.client.set(self._lock_key, token, nx=True, px=LOCK_MS):
                return token
            await asyncio.sleep(0.01)
        raise ApiError(
            "STATE_UNAVAILABLE", "Another control request held the sandbox for 5 s; retry.",
            headers={"retry-after": "1"},
        )

    async def _publish_if_changed(self, token: str | None) -> None:
        snap = self.snapshot()
        if snap == self.loaded:
            return
        keys = [*self.version_keys, self._lock_key]
        version = int(await self._publish(keys, [token, snap]))
        if version < 0:
            raise ApiError(
                "STATE_UNAVAILABLE",
                "The control change took too long to publish (its lock expired); retry.",
                headers={"retry-after": "1"},
            )
        self.loaded, self.version = snap, version

    async def _moved_clock(self, offset: float, ahead: dict[str, float]) -> None:
        """Rate windows count on the sandbox clock: moving it forward shortens them, on every
        worker at once, as waiting would."""
        clock = self.clock
        moved = clock.offset - offset
        buckets = self.state.limiter
        if moved > 0:
            await buckets.shorten(moved, None)  # type: ignore[attr-defined]
        for name, value in clock.ahead.items():
            step = value - ahead.get(name, 0.0)
            if step > 0:
                await buckets.shorten(step, name)  # type: ignore[attr-defined]

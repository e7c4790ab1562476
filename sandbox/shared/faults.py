"""Fault rules on shared state: the rules travel with the control snapshot, their counters live
in Redis, where one script decides whether a matching request counts and fires.

A rule with `times: 3` fires exactly three times across every worker: the check of `fired` and
its increment happen in one script. `every: N` counts matches the same way. A rule with a
probability draws the n-th number of its seeded generator for the n-th matching request overall,
so the same requests give the same faults however they are spread over workers.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

from opsmerge_sandbox.faults.rules import FaultRegistry, Rule
from opsmerge_sandbox.pipeline.authenticate import ApiKey
from opsmerge_sandbox.shared.link import UNREACHABLE, Link, unavailable
from opsmerge_sandbox.stores import ClockStore

# {-1}: exhausted (not counted, as a spent rule is skipped in one process); {0, matched}: counted,
# not fired; {1, matched}: fired; {2, matched}: counted, the draw decides (then FIRE)
DRAW = """
local times = tonumber(ARGV[1])
if times >= 0 and tonumber(redis.call('HGET', KEYS[1], 'fired') or '0') >= times then
  return {-1, 0}
end
local matched = redis.call('HINCRBY', KEYS[1], 'matched', 1)
local every = tonumber(ARGV[2])
if every > 0 and matched % every ~= 0 then return {0, matched} end
if ARGV[3] == '1' then return {2, matched} end
redis.call('HINCRBY', KEYS[1], 'fired', 1)
return {1, matched}
"""
FIRE = """
local times = tonumber(ARGV[1])
if times >= 0 and tonumber(redis.call('HGET', KEYS[1], 'fired') or '0') >= times then
  return 0
end
redis.call('HINCRBY', KEYS[1], 'fired', 1)
return 1
"""


class SharedFaultRules(FaultRegistry):
    def __init__(
        self, clock: ClockStore, link: Link, revoke: Callable[[str], object] | None = None
    ) -> None:
        super().__init__(clock, revoke)
        self.link = link
        self._draw = link.script(DRAW)
        self._fire = link.script(FIRE)
        self._draws: dict[str, tuple[int, random.Random]] = {}  # rule id -> (draws made, rng)

    @property
    def next_number(self) -> int:
        return self._next

    def replace(self, rules: list[Rule], next_number: int) -> None:
        """Take the rules of a control snapshot (their counters stay in Redis)."""
        self.rules = rules
        self._next = next_number

    def _key(self, rule: Rule) -> str:
        return self.link.key("fault", rule.id)

    def queue_counters(self, pipe: Any) -> None:
        for rule in self.rules:
            pipe.hmget(self._key(rule), "matched", "fired")

    def take_counters(self, found: list[Any]) -> None:
        for rule, (matched, fired) in zip(self.rules, found, strict=False):
            rule.matched, rule.fired = int(matched or 0), int(fired or 0)

    def pick(
        self, method: str, path: str, relative: str, operation_id: str, key: ApiKey, workspace: str
    ) -> Rule | None:
        raise RuntimeError("on shared state the faults stage calls pick_async")

    async def pick_async(
        self, method: str, path: str, relative: str, operation_id: str, key: ApiKey, workspace: str
    ) -> Rule | None:
        """The first live rule that matches this request and fires on it, counted in Redis."""
        now = self.clock.now()
        for rule in self.rules:
            if rule.effect is None or (rule.expires_at is not None and now >= rule.expires_at):
                continue
            if not rule.match.hits(method, path, relative, operation_id, key, workspace):
                continue
            times = -1 if rule.times is None else rule.times
            args = [times, rule.every or 0, "1" if rule.probability is not None else "0"]
            try:
                verdict, matched = await self._draw([self._key(rule)], args)
                draw = int(matched) // rule.every if rule.every else int(matched)
                if verdict == 2 and self._drawn(rule, draw):
                    verdict = await self._fire([self._key(rule)], [times])
            except UNREACHABLE as exc:
                raise unavailable(exc) from exc
            if verdict == 1:
                return rule
        return None

    def _drawn(self, rule: Rule, matched: int) -> bool:
        """The `matched`-th draw of the rule's seeded generator (counting the matches that
        reached the draw), against its probability."""
        made, rng = self._draws.get(rule.id, (0, random.Random(rule.seed)))
        if matched <= made:  # an earlier draw (this worker ran ahead): replay from the start
            made, rng = 0, random.Random(rule.seed)
        value = 0.0
        while made < matched:
            value = rng.random()
            made += 1
        self._draws[rule.id] = (made, rng)
        return value < (rule.probability or 0.0)

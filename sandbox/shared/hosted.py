"""Hosted mode on shared state: visitor leases, budgets and the per-address limit across replicas.

The leases live in Redis: a sorted set of visitor workspaces by last use, the request-body bytes
each has written and their total. A request's visit (and any eviction past the workspace cap) is
part of the request's one script (`stages.admit_script`), run after the address's hit and
skipped when that hit spent the address's budget, as in one process. A write's bytes are
charged by one script that evicts the least recently used workspaces past the total, and the
byte budget is checked under the workspace's write lock, so neither budget can be overrun by
writes spread over replicas.
Idle workspaces are expired by whichever replica's sweeper finds them first (one script takes
them off the set, so each is reset once); every replica drops its idle local copies.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from opsmerge_sandbox.hosted import HostedPolicy, SweepReport, _full
from opsmerge_sandbox.shared.link import UNREACHABLE, Link, unavailable
from opsmerge_sandbox.store.workspace import Workspace

if TYPE_CHECKING:
    from opsmerge_sandbox.shared.records import SharedWorkspaces
    from opsmerge_sandbox.state import SandboxState

_REMOVE = """
local function remove(name)
  redis.call('ZREM', KEYS[1], name)
  local spent = tonumber(redis.call('HGET', KEYS[2], name) or '0')
  redis.call('HDEL', KEYS[2], name)
  return redis.call('DECRBY', KEYS[3], spent)
end
"""
# visit ARGV[1] at ARGV[2] with at most ARGV[3] workspaces, unless the address's window
# (KEYS[4]) is past its limit ARGV[4]: the names evicted to make room
VISIT = _REMOVE + """
if tonumber(redis.call('GET', KEYS[4]) or '0') > tonumber(ARGV[4]) then return {} end
local evicted = {}
if not redis.call('ZSCORE', KEYS[1], ARGV[1]) then
  while redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[3]) do
    local oldest = redis.call('ZRANGE', KEYS[1], 0, 0)[1]
    remove(oldest)
    table.insert(evicted, oldest)
  end
end
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
return evicted
"""
# charge ARGV[2] bytes to ARGV[1]; past the total ARGV[3], evict the least recently used others
CHARGE = _REMOVE + """
if not redis.call('ZSCORE', KEYS[1], ARGV[1]) then return {} end
redis.call('HINCRBY', KEYS[2], ARGV[1], ARGV[2])
local total = redis.call('INCRBY', KEYS[3], ARGV[2])
local evicted = {}
while total > tonumber(ARGV[3]) and redis.call('ZCARD', KEYS[1]) > 1 do
  local two = redis.call('ZRANGE', KEYS[1], 0, 1)
  local oldest = two[1]
  if oldest == ARGV[1] then oldest = two[2] end
  total = remove(oldest)
  table.insert(evicted, oldest)
end
return evicted
"""
# the workspaces idle since ARGV[1], taken off the set
EXPIRE = _REMOVE + """
local idle = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
for _, name in ipairs(idle) do remove(name) end
return idle
"""


class SharedLeases:
    """The LeaseStore of a shared hosted sandbox (its scripts do the request path's work)."""

    def __init__(self, link: Link) -> None:
        self.link = link
        self.keys = [link.key("lease", n) for n in ("last", "bytes", "total")]
        self.charge_script = link.script(CHARGE)
        self.expire = link.script(EXPIRE)

    def _read(self, fn: Any) -> Any:
        try:
            return fn(self.link.sync)
        except UNREACHABLE as exc:
            raise unavailable(exc) from exc

    def touch(self, name: str) -> bool:
        return bool(self._read(lambda r: r.zadd(self.keys[0], {name: time.time()})))

    def oldest(self, besides: str | None = None) -> str | None:
        two = self._read(lambda r: r.zrange(self.keys[0], 0, 1))
        names = [n.decode() for n in two if n.decode() != besides]
        return names[0] if names else None

    def drop(self, name: str) -> None:
        self._read(lambda r: r.zrem(self.keys[0], name))

    def charge(self, name: str, size: int) -> None:
        self._read(lambda r: r.hincrby(self.keys[1], name, size))

    def spent(self, name: str) -> int:
        return int(self._read(lambda r: r.hget(self.keys[1], name)) or 0)

    def total(self) -> int:
        return int(self._read(lambda r: r.get(self.keys[2])) or 0)

    def names(self) -> list[str]:
        return [n.decode() for n in self._read(lambda r: r.zrange(self.keys[0], 0, -1))]

    def __contains__(self, name: object) -> bool:
        return self._read(lambda r: r.zscore(self.keys[0], name)) is not None

    def __len__(self) -> int:
        return int(self._read(lambda r: r.zcard(self.keys[0])))


class SharedHostedPolicy(HostedPolicy):
    def __init__(self, state: SandboxState) -> None:
        super().__init__(state)
        assert state.shared is not None
        self.shared_leases = SharedLeases(state.shared.link)
        self.leases = self.shared_leases
        self.records: SharedWorkspaces = state.workspaces  # type: ignore[assignment]

    # ------------------------------------------------------------------ per request
    def open(self, name: str) -> Workspace:
        """The visit itself is counted in the request's one script (`stages.admit_script`)."""
        return self.workspaces.get(name)

    async def evict(self, names: list[bytes]) -> None:
        """Reset what a visit or a charge evicted (on every replica)."""
        if names:
            await self.records.drop_shared([n.decode() for n in names])

    def admit_write(self, ws: Workspace, declared: int | None) -> None:
        """Before the body is read: the change budget on this copy (the byte budget is checked
        under the write lock, `admit_locked`)."""
        from opsmerge_sandbox.hosted import changes_in

        if changes_in(ws, self.unbudgeted) >= self.max_changes:
            raise _full(f"already holds {self.max_changes} changed records")

    async def admit_locked(self, ws: Workspace, size: int) -> None:
        """Under the write lock, on the latest state: both budgets, exactly."""
        from opsmerge_sandbox.hosted import changes_in

        if changes_in(ws, self.unbudgeted) >= self.max_changes:
            raise _full(f"already holds {self.max_changes} changed records")
        try:
            leases = self.shared_leases
            spent = int(await leases.link.wire.call("HGET", leases.keys[1], ws.name) or 0)
        except UNREACHABLE as exc:
            raise unavailable(exc) from exc
        if spent + size > self.max_workspace_bytes or spent >= self.max_workspace_bytes:
            raise _full(f"has taken {self.max_workspace_bytes} bytes of request bodies")

    def charge(self, ws: Workspace, size: int) -> None:
        """Counted by `charge_async` once the write is committed."""

    async def charge_async(self, ws: Workspace, size: int) -> None:
        leases = self.shared_leases
        try:
            evicted = await leases.charge_script(
                leases.keys, [ws.name, size, self.max_total_bytes]
            )
            await self.evict(evicted)
        except UNREACHABLE as exc:
            raise unavailable(exc) from exc

    # ------------------------------------------------------------------ upkeep
    def sweep(self) -> SweepReport:
        """Drop this replica's idle copies (nothing shared: the async sweep expires those)."""
        now = time.monotonic()
        records = self.records
        idle = [n for n, ws in list(records._items.items())
                if n != records.DEFAULT and now - ws.last_used > self.ttl]
        records.forget_copies(idle)
        return SweepReport(0, len(records._items), 0, 0)

    async def sweep_shared(self) -> int:
        leases = self.shared_leases
        expired = await leases.expire(leases.keys, [time.time() - self.ttl])
        await self.evict(expired)
        return len(expired)

    async def run_sweeper(self) -> None:
        import asyncio

        from opsmerge_sandbox.hosted import log

        while True:
            await asyncio.sleep(self.interval)
            try:
                self.sweep()
                await self.sweep_shared()
            except Exception:
                log.exception("hosted sweep failed")

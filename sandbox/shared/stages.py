"""The pipeline stages that differ on shared state.

- `SharedAdmission` stands for authenticate, resolve-workspace and rate-limit: it resolves the
  caller on this worker's copy, then one script in Redis (`admit_script`) counts the rate hit(s)
  and returns the control version and the workspace's news. When either had moved, the copy
  catches up from that same answer and the caller is resolved again; only if that changes the
  bucket are the hits taken back and made again. A 401 on this worker's copy is checked against
  the latest control state before it is answered (a key minted on another worker works here at
  once).
- `SharedHandle` takes the workspace's write lock before a write's handler runs (catching up in
  the same round trip), so every rule is checked against the latest state; so does a read that
  logs its key's use (`pipeline/key_use.py`), so the period's entry is written once.
- `SharedCommit` commits (the append also lets go of the lock) or lets go of the lock.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from opsmerge_sandbox.errors import ApiError
from opsmerge_sandbox.pipeline.address import client_address, parse_networks
from opsmerge_sandbox.pipeline.ratelimit import WINDOW_SECONDS
from opsmerge_sandbox.pipeline.read_request import READS
from opsmerge_sandbox.pipeline.stages import direct
from opsmerge_sandbox.pipeline.workspace_name import WORKSPACE_HEADER, workspace_name
from opsmerge_sandbox.shared.control import CONTROL_CHECK
from opsmerge_sandbox.shared.hosted import VISIT
from opsmerge_sandbox.shared.link import UNREACHABLE, unavailable
from opsmerge_sandbox.shared.records import CARRIED, MISSING_FROM
from opsmerge_sandbox.shared.wire import lua_function, rebased
from opsmerge_sandbox.store.workspace import Workspaces

if TYPE_CHECKING:
    from opsmerge_sandbox.pipeline.context import RequestContext
    from opsmerge_sandbox.shared.buckets import SharedRateBuckets
    from opsmerge_sandbox.shared.control import Control
    from opsmerge_sandbox.shared.hosted import SharedHostedPolicy
    from opsmerge_sandbox.shared.records import SharedWorkspaces, Version
    from opsmerge_sandbox.state import SandboxState

_Stage = Callable[["RequestContext"], Any]
_PACKED_MAX = 4096  # admission commands kept packed; past it they start over


def admit_script(incr_expire: str, visit: bool) -> str:
    """One script for a request's admission, from parts the other modules also run alone: the
    control check (`control.CONTROL_CHECK`) and what the workspace's copy lacks
    (`records.MISSING_FROM`), inline with their keys and arguments moved to this script's
    (`wire.rebased`); each rate hit with `limits`' own `incr_expire` script (a function of its
    own keys and arguments, its text as `limits` ships it) and the window's time left; and
    (hosted) the visit (`hosted.VISIT`). Hits are counted in order and the first past its limit
    ends the count (a hosted request refused by its address's budget spends nothing of its
    key's, as in one process).

    The answer is one flat array (`BOOT` ... `COUNTS` say where each part is): building and
    sending a table of tables cost the store more than all the commands the script runs."""
    parts = [
        lua_function("incr_expire", incr_expire),
        *([lua_function("visit", VISIT)] if visit else []),
        rebased(CONTROL_CHECK, keys=0, args=0),
        rebased(MISSING_FROM, keys=3, args=2),
        """
local out = {boot, v, snap, e, n, 1, 0}
local entries = {}
if from >= 0 then
  if n - from > CARRIED then out[6] = 0  -- too far behind for one answer: fetched apart
  else entries = redis.call('LRANGE', KEYS[5], from, -1) end
end
local hits = tonumber(ARGV[5])
local at = 8
for i = 1, hits do
  local key = KEYS[5 + i]
  local used = incr_expire({key}, {ARGV[3 + 3 * i], ARGV[4 + 3 * i]})
  out[at] = used
  out[at + 1] = redis.call('PTTL', key)
  at = at + 2
  if used > tonumber(ARGV[5 + 3 * i]) then break end  -- refused here: the next is not spent
end
out[7] = (at - 8) / 2
out[at] = #entries
for i = 1, #entries do out[at + i] = entries[i] end
at = at + #entries + 1
""",
    ]
    if visit:
        parts.append("""
if hits > 0 then
  local k, a = 6 + hits, 6 + 3 * hits
  local evicted = visit({KEYS[k], KEYS[k + 1], KEYS[k + 2], KEYS[k + 3]},
                        {ARGV[a], ARGV[a + 1], ARGV[a + 2], ARGV[a + 3]})
  for i = 1, #evicted do out[at + i - 1] = evicted[i] end
end
""")
    parts.append("return out")
    return "\n".join(parts).replace("CARRIED", str(CARRIED))


# Where each part of an admission's flat answer is (see `admit_script`): from COUNTS on, per hit
# counted, the window's count and then its ms left; then the number of log entries carried, the
# entries, and (hosted) the names the visit evicted (`carried_and_evicted`).
BOOT, VERSION, SNAPSHOT, EPOCH, LENGTH, WHOLE, COUNTED, COUNTS = range(8)


def carried_and_evicted(found: list[Any]) -> tuple[list[bytes], list[bytes]]:
    """The log entries an admission's answer carried, and the workspaces its visit evicted."""
    at = COUNTS + 2 * found[COUNTED]
    carried = found[at]
    return found[at + 1 : at + 1 + carried], found[at + 1 + carried :]


class SharedAdmission:
    def __init__(
        self, state: SandboxState, control: Control, authenticate: _Stage, resolve: _Stage
    ) -> None:
        self.state = state
        self.control = control
        self.records: SharedWorkspaces = state.workspaces  # type: ignore[assignment]
        self.buckets: SharedRateBuckets = state.limiter  # type: ignore[assignment]
        self.authenticate = direct(authenticate)
        self.resolve = direct(resolve)
        self.counting = state.settings.auth
        self.trusted = parse_networks(state.settings.trusted_proxies)
        self.hosted: SharedHostedPolicy | None = state.hosted  # type: ignore[assignment]
        source = admit_script(self.buckets.incr_source, visit=self.hosted is not None)
        self._admit = control.link.script(source)
        # the script's run, packed, by what its keys and arguments depend on: a worker's
        # requests mostly repeat a few (same workspace, version and key), so most are a lookup
        self._packed: dict[tuple[Any, ...], bytes] = {}

    def _resolve(self, ctx: RequestContext) -> None:
        self.authenticate(ctx)
        self.resolve(ctx)

    def _hits(self, ctx: RequestContext) -> list[tuple[str, int]]:
        """The buckets this request spends: its key's, and (hosted) its address's first."""
        if not self.counting:
            return []
        hits = []
        hosted = self.state.hosted
        if hosted is not None:
            assert ctx.headers is not None
            address = client_address(ctx.request.scope, ctx.headers, self.trusted)
            hits.append((hosted.address_bucket(address), hosted.address_limit))
        hits.append((ctx.bucket, ctx.limit))
        return hits

    async def __call__(self, ctx: RequestContext) -> None:
        try:
            self._resolve(ctx)
        except ApiError as err:
            if err.status != 401:
                raise
            await self._refresh(ctx)  # a key or an owner another worker changed?
            self._resolve(ctx)
        for _ in range(3):
            assert ctx.workspace is not None
            name = ctx.workspace.name
            hits = self._hits(ctx)
            sent = self.records.claimed(name)
            command = self._command(name, sent, hits)
            try:
                found = await self._admit.answer_packed(self._admit.send_packed(command), command)
            except UNREACHABLE as exc:
                raise unavailable(exc) from exc
            control = self.control
            if (
                found[VERSION] == control.version
                and (found[EPOCH], found[LENGTH]) <= self.records.have(name)
                and found[BOOT] == control.boot
            ):
                break  # this worker's copy was current: the common case, one round trip
            # the buckets it counted: a bucket past its limit stops the count of those after it
            keys = [self.buckets.key(b, limit) for b, limit in hits[: found[COUNTED]]]
            if not control.take(found[BOOT:EPOCH]):  # the store lost its data: from the seed
                await self._undo(keys)
                self._resolve(ctx)
                continue
            # from the answer; fetched when it is too far behind for one answer to carry, or
            # short of what the admission claimed (a commit of this worker's did not land)
            try:
                await self.records.take_news(
                    name, sent, found[EPOCH], found[LENGTH], carried_and_evicted(found)[0],
                    whole=bool(found[WHOLE]),
                )
            except UNREACHABLE as exc:
                raise unavailable(exc) from exc
            try:
                self._resolve(ctx)  # on the state as it is now
            except ApiError:
                await self._undo(keys)
                raise
            if self._hits(ctx) == hits:
                break
            await self._undo(keys)  # counted for a caller the new state resolves otherwise
        else:
            raise unavailable()
        if self.hosted is not None:
            _, evicted = carried_and_evicted(found)
            if evicted:
                await self._evict(evicted)
        for i in range(found[COUNTED]):
            limit = hits[i][1]
            used = found[COUNTS + 2 * i]
            ctx.rate = self.buckets.state(limit, used, found[COUNTS + 2 * i + 1])
            if used > limit:
                raise self.buckets.refusal(ctx.rate)

    def _command(self, name: str, sent: Version, hits: list[tuple[str, int]]) -> bytes:
        """The request's one script run, packed (see `_args`); made once per combination of
        what it depends on, except when hosted (a visit's arguments carry the time)."""
        if self.hosted is not None:
            return self._admit.pack(*self._args(name, sent, hits))
        control = self.control
        key = (name, sent, control.version, control.mark, *hits)
        command = self._packed.get(key)
        if command is None:
            if len(self._packed) >= _PACKED_MAX:
                self._packed.clear()
            command = self._packed[key] = self._admit.pack(*self._args(name, sent, hits))
        return command

    def _args(
        self, name: str, sent: Version, hits: list[tuple[str, int]]
    ) -> tuple[list[str], list[Any]]:
        """Keys and arguments of the request's one script (see `admit_script`)."""
        control, named = self.control, self.records.keys(name)
        keys = [*control.control_keys, named.ws, named.log]
        args: list[Any] = [control.version, control.mark, sent[0], sent[1], len(hits)]
        for bucket, limit in hits:
            keys.append(self.buckets.key(bucket, limit))
            args += [WINDOW_SECONDS, 1, limit]
        hosted = self.hosted
        if hosted is not None and hits:  # the visit, unless the address's budget is spent
            keys += [*hosted.shared_leases.keys, keys[5]]
            args += [name, time.time(), hosted.cap, hosted.address_limit]
        return keys, args

    async def _evict(self, names: list[bytes]) -> None:
        assert self.hosted is not None
        try:
            await self.hosted.evict(names)
        except UNREACHABLE as exc:
            raise unavailable(exc) from exc

    async def _undo(self, keys: list[str]) -> None:
        try:
            await self.buckets.undo(keys)
        except UNREACHABLE as exc:
            raise unavailable(exc) from exc

    async def _refresh(self, ctx: RequestContext) -> None:
        assert ctx.headers is not None
        names = []
        if self.state.hosted is None:
            try:
                names = [workspace_name(ctx.headers.get(WORKSPACE_HEADER)) or Workspaces.DEFAULT]
            except ApiError:
                names = []
        try:
            await self.control.refresh(names)
        except UNREACHABLE as exc:
            raise unavailable(exc) from exc


class SharedHandle:
    """A write takes its workspace's lock (and catches up) before its handler runs."""

    def __init__(self, state: SandboxState, handle: _Stage) -> None:
        self.records: SharedWorkspaces = state.workspaces  # type: ignore[assignment]
        self.handle = direct(handle)
        self.hosted: SharedHostedPolicy | None = state.hosted  # type: ignore[assignment]
        key_use = getattr(handle, "key_use", None)
        self.use_due: Callable[[RequestContext], str | None] = (
            key_use.due if key_use is not None else lambda ctx: None
        )

    def __call__(self, ctx: RequestContext) -> Any:
        if ctx.op.method in READS and self.use_due(ctx) is None:
            return self.handle(ctx)
        return self._write(ctx)  # a write, or a read that logs its key's use

    async def _write(self, ctx: RequestContext) -> None:
        assert ctx.workspace is not None
        name = ctx.workspace.name
        ctx.lock_token = await self.records.lock(name)
        try:
            ctx.workspace = self.records.get(name)  # a reset elsewhere may have replaced it
            if self.hosted is not None and ctx.op.method not in READS:
                await self.hosted.admit_locked(ctx.workspace, len(ctx.raw_body))
            self.handle(ctx)
        except ApiError:
            raise
        except BaseException:
            await self.records.unlock(name, ctx.lock_token)
            raise


class SharedCommit:
    def __init__(self, state: SandboxState, commit: _Stage) -> None:
        self.records: SharedWorkspaces = state.workspaces  # type: ignore[assignment]
        self.commit = direct(commit)
        self.hosted: SharedHostedPolicy | None = state.hosted  # type: ignore[assignment]

    def __call__(self, ctx: RequestContext) -> Any:
        if ctx.lock_token is None and self.hosted is None:
            return self.commit(ctx)  # a read (or a write that never took the lock): as is
        return self._commit(ctx)

    async def _commit(self, ctx: RequestContext) -> None:
        ws = ctx.workspace
        if self.hosted is not None and ws is not None and ws.owns(ctx.transaction) \
                and ctx.status < 400:
            # charged while the lock is held, just before the commit lets go of it, so the next
            # writer's budget check sees these bytes; a commit that fails after it leaves them
            # counted (the budget errs on the safe side), and a charge that fails is skipped
            # (the commit then answers whether the store takes writes)
            with contextlib.suppress(ApiError):
                await self.hosted.charge_async(ws, len(ctx.raw_body))
        try:
            waiting = self.commit(ctx)
            if waiting is not None:
                await waiting
        finally:
            if ctx.lock_token is not None and ws is not None:
                await self.records.unlock(ws.name, ctx.lock_token)

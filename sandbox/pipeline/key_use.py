"""A key's use in the audit log: the help pages say the log records a key being created, used and
revoked.

An entry per request would bury every other entry, so a use is logged once per key and period
in each workspace (`x-sandbox-audit.key-use: {verb, every-seconds}`), on the workspace's clock,
by the key's owner under the key's name. The period's first request to reach the handler writes
it: a read commits it before it runs (so a read of the log shows it, and the log's pages do not
shift under a client paging through it), a write stages it with its own changes (a refused
write logs nothing; the next request does). A read while a write is on its way leaves it to a
later request, so it never waits for, or opens a transaction beside, another's write.

The key's record (in the collection `x-sandbox-auth.keys` names) shows the same use: the fields
it maps to `used` take the entry's time with it, in the same transaction, so the key list and the
log never disagree on when a key was last used; that is no change anyone made to the key, so it
moves neither `updated_at` nor the log (`AuditTrail` leaves those fields out of diffs).

The entry's id is made of the period and the key, so the workspace itself says whether the
period's use is logged: a worker that has not seen another's entry finds it once it has caught
up (on shared state, under the workspace's write lock) and never writes a second. The
workspace's memo spares that lookup on the period's other requests (a dictionary lookup each);
a reset workspace is a new object, so its first use is logged again.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

from opsmerge_sandbox.pipeline.read_request import READS
from opsmerge_sandbox.world.key_records import keys_collection, last_use

if TYPE_CHECKING:
    from opsmerge_sandbox.pipeline.audit import AuditTrail
    from opsmerge_sandbox.pipeline.context import RequestContext
    from opsmerge_sandbox.spec import Spec
    from opsmerge_sandbox.store.workspace import Workspace
    from opsmerge_sandbox.stores import ClockStore


_MEMO = "key-use"


class KeyUse:
    def __init__(
        self,
        trail: AuditTrail,
        object_type: str,
        verb: str,
        every: int,
        clock: ClockStore,
        keys: str,
        shown: tuple[str, ...] = (),
    ) -> None:
        self.trail = trail
        self.keys = keys  # the collection listing the keys
        self.shown = shown  # its fields that show the key's last use
        self.collection = trail.model.collection
        self.prefix = trail.entries.id_prefix
        self.action = f"{object_type}.{verb}"
        self.object_type = object_type
        self.every = every
        self.clock = clock

    @classmethod
    def from_spec(cls, spec: Spec, trail: AuditTrail | None, clock: ClockStore) -> KeyUse | None:
        """None unless the spec logs key use and names the collection listing the keys."""
        if trail is None or trail.model.key_use is None:
            return None
        auth = spec.resolved.get("x-sandbox-auth")
        collection = keys_collection(auth)
        if collection not in trail.types:
            return None
        verb, every = trail.model.key_use
        shown = (last_use(auth) or (collection, ()))[1]
        return cls(trail, trail.types[collection], verb, every, clock, collection, shown)

    def due(self, ctx: RequestContext) -> str | None:
        """The id of the entry the caller's key is owed in this period, None if it has it (or
        the request has no key or workspace). On the period's other requests: a clock read and
        a dictionary lookup."""
        caller, ws = ctx.caller, ctx.workspace
        if caller is None or ws is None:
            return None
        now = self.clock.now()
        noted = (_MEMO, caller.key.id)  # -> the end of the period whose use the log holds
        memo = ws.memo
        if now < memo.get(noted, 0.0):
            return None
        if ctx.op.method in READS and (ws.in_transaction or ws.unsettled):
            return None  # a write is on its way: this read stays a read, a later request logs
        period = int(now) // self.every
        entry_id = self._entry_id(period, caller.key.id)
        if ws.get(self.collection, entry_id) is not None:
            memo[noted] = (period + 1) * self.every
            return None
        return entry_id

    def stage(self, ctx: RequestContext, ws: Workspace, entry_id: str) -> None:
        """Stage the period's entry in the request's open transaction, unless it is there."""
        caller = ctx.caller
        if caller is None or ws.get(self.collection, entry_id) is not None:
            return
        key = caller.key
        address, agent = self.trail.origin(ctx)
        entry = self.trail.entry(
            {}, entry_id, key.user_id, key.name, self.action, self.object_type, key.id, address,
            agent,
        )  # fmt: skip
        ws.write(self.collection, entry)
        record = ws.get(self.keys, key.id) if self.shown else None
        if record is not None:  # a key the sandbox minted for a session is in no list
            at = entry["created_at"]
            moved = {f: at for f in self.shown if (record.get(f) or "") < at}
            if moved:
                ws.write(self.keys, {**record, **moved})

    def _entry_id(self, period: int, key_id: str) -> str:
        """`<prefix>_<the period's start in microseconds, as entry ids count>u<the key>`: ids
        still grow with time, and no other entry's id has a letter in it."""
        start = period * self.every * 1_000_000
        digest = hashlib.blake2b(key_id.encode(), digest_size=4).hexdigest()
        return f"{self.prefix}_{start:013x}u{digest}"

"""The rule engine: events from committed writes and from the clock, rules that fire on them.

An API write that commits is turned into events by the spec's `x-sandbox-events` (a create or
update of the subject collection; a create in a child collection, about its parent), in the
caller's workspace; a write that fails or is rolled back makes none. Each enabled rule of the
event's trigger whose conditions hold on the subject before and after the change fires: its
actions run in order. A field-setting action is an update of the subject through the same
handler and audit trail as an API update (so it is checked the same way and leaves an audit
entry naming the rule); a webhook is handed to `Deliveries`; an email goes to the outbox. What
the actions did is written to the rule's firing audit. Changes made by actions fire no further
rules, so two rules can never feed each other.

Clock events come from a pass over the subject records (`run_due`: each second, and whenever the
control API moves a clock): an event fires once per rule, record and due time, when the
workspace's clock passes the due time after the rule was enabled.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import random
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import msgspec

from opsmerge_sandbox.background import while_serving
from opsmerge_sandbox.clock import format_iso, parse_iso, use_workspace
from opsmerge_sandbox.errors import ApiError, Detail
from opsmerge_sandbox.events.allowlist import LOOPBACK, WebhookAllow
from opsmerge_sandbox.events.conditions import matches
from opsmerge_sandbox.events.declarations import ACTION_TYPE, ActionKind, EventModel, EventType
from opsmerge_sandbox.events.delivery import Attempt, Deliveries, Delivery
from opsmerge_sandbox.events.outbox import Outbox, render
from opsmerge_sandbox.pipeline.audit import AuditTrail
from opsmerge_sandbox.pipeline.resources import HandlerCall, Resources
from opsmerge_sandbox.spec import Operation

if TYPE_CHECKING:
    from litestar import Litestar

    from opsmerge_sandbox.state import SandboxState
    from opsmerge_sandbox.store.workspace import Workspace

Record = dict[str, Any]
Change = tuple[str, str, Record | None, Record]  # collection, id, before, after
log = logging.getLogger("sandbox.events")
_ids = random.Random()  # ids need to be unique, not secret
TICK_SECONDS = 1.0

# on shared state: hold a workspace's write lock (caught up) while writing outside a request
Exclusive = Callable[[str], AbstractAsyncContextManager["Workspace"]]


def _new_id(prefix: str) -> str:
    return f"{prefix}_{_ids.getrandbits(48):012x}"


@dataclass(slots=True)
class Event:
    id: str
    type: EventType
    subject_id: str
    before: Record | None  # the subject before the write (None: a create or a clock event)
    after: Record
    child: Record | None  # the written child record (a comment), when the event names one
    at: str
    due_at: str | None = None


def _operation(spec_ops: list[Operation], kind: str, collection: str) -> Operation:
    for op in spec_ops:
        if op.kind == kind and op.hints.collection == collection and not op.hints.fixed_id:
            return op
    raise ValueError(f"x-sandbox-events: no {kind} operation serves {collection}")


class RuleEngine:
    def __init__(
        self, state: SandboxState, model: EventModel, resources: Resources, allow: WebhookAllow
    ) -> None:
        spec = state.spec
        self.state = state
        self.model = model
        self.resources = resources
        self.audit = AuditTrail.from_spec(
            spec, self._now_iso, resources.fill, rules=resources.rules, watched=model.watched
        )
        self.update_op = _operation(spec.operations, "update", model.subject)
        self.rules_update_op = _operation(spec.operations, "update", model.rules)
        self.collections = spec.collections
        self.outbox = Outbox()
        self.deliveries = Deliveries(
            state, model, allow, self._log_attempt, self._disable, self._rule_exists
        )
        self.allow = allow
        self.watched = model.watched
        # workspace -> (rules view version, trigger -> enabled rules in creation order)
        self._rules: dict[str, tuple[int, dict[str, list[Record]]]] = {}
        # (workspace, rule id) -> (subject id, due time) already judged by a clock pass
        self._judged: dict[tuple[str, str], set[tuple[str, str]]] = {}
        # set on shared state (several workers): background writes take the write lock first
        self.exclusive: Exclusive | None = None
        self._background: set[asyncio.Task[None]] = set()

    # ---------------------------------------------------------------- lifecycle
    @contextlib.asynccontextmanager
    async def running(self, _app: Litestar) -> AsyncIterator[None]:
        """The app's lifespan: the clock tick runs while the app does; deliveries stop with it."""
        try:
            async with while_serving(self._tick, "rule-engine-tick"):
                yield
        finally:
            await self.deliveries.stop()

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(TICK_SECONDS)
            try:
                self.run_due()
                if self.exclusive is not None:
                    await self._shared_clock_passes(self.exclusive)
            except Exception:  # a bad record must not stop every later pass
                log.exception("the rule engine's clock pass failed")

    def forget(self, workspace: str | None) -> None:
        """A reset: the workspace's queued deliveries, caches and outbox go with its records."""
        self.deliveries.forget(workspace)
        self.outbox.clear(workspace)
        for name in [n for n in self._rules if workspace in (None, n)]:
            del self._rules[name]
        for key in [k for k in self._judged if workspace in (None, k[0])]:
            del self._judged[key]

    def _now_iso(self) -> str:
        return self.state.clock.iso()

    # ---------------------------------------------------------------- rules
    def _by_trigger(self, ws: Workspace) -> dict[str, list[Record]]:
        view = ws.view(self.model.rules)
        if view.pristine and not len(view.base):
            return {}
        cached = self._rules.get(ws.name)
        if cached is not None and cached[0] == view.version:
            return cached[1]
        out: dict[str, list[Record]] = {}
        for rule in view.query([], None, "created_at", False):
            if rule.get("enabled"):
                out.setdefault(str(rule.get("trigger")), []).append(rule)
        self._rules[ws.name] = (view.version, out)
        return out

    def check_rule(self, ws: Workspace, record: Record) -> None:
        """A rule's actions, checked as it is written: each parameter its type reads is given
        and fits the subject field it sets; a webhook URL is one the sandbox may post to."""
        subject_fields = self.collections[self.model.subject].schema.get("properties", {})
        refs = {rf.field: rf.target for rf in self.resources.refs[self.model.subject]}
        for i, action in enumerate(record.get("actions") or []):
            kind = self.model.actions.get(str(action.get(ACTION_TYPE)))
            if kind is None:
                continue
            where = f"actions.{i}"
            for param in self._params(kind):
                if action.get(param) in (None, ""):
                    _refuse(f"{where}.{param}", f"is required for a {kind.name} action")
            for field, param in kind.sets.items():
                value = action[param]
                allowed = subject_fields.get(field, {}).get("enum")
                if allowed is not None and value not in allowed:
                    listed = ", ".join(str(a) for a in allowed if a is not None)
                    _refuse(f"{where}.{param}", f"must be one of {listed}")
                target = refs.get(field)
                if target is not None and ws.get(target, value) is None:
                    raise ApiError(
                        "REFERENCE_NOT_FOUND",
                        f"The body refers to a record that does not exist: {where}.{param} "
                        f"(no {target} record with id {value!r}).",
                        [Detail("body", f"{where}.{param}", f"no {target} record {value!r}")],
                    )
            if kind.webhook is not None:
                refusal = self.allow.refusal(
                    str(action[kind.webhook]), self.model.delivery.max_url_length
                )
                if refusal is not None:
                    _refuse(f"{where}.{kind.webhook}", refusal)

    @staticmethod
    def _params(kind: ActionKind) -> list[str]:
        return [
            *kind.sets.values(),
            *([kind.webhook] if kind.webhook else []),
            *kind.email.values(),
        ]

    # ---------------------------------------------------------------- events from writes
    def capture(self, ws: Workspace, own: str | None) -> list[Change] | None:
        """Before a commit: the staged changes that may be events, with what they replace.
        None (nothing to do, and nothing copied) when the workspace has no enabled rule.

        `own` is the collection the request writes: a record of another collection whose write
        moved only its `updated_at` saw activity (`x-touches`: a comment on its ticket), not an
        update of its own."""
        if not self._by_trigger(ws):
            return None
        found = []
        for coll, rid, after in ws.staged_changes():
            if coll not in self.watched or after is None:
                continue
            before = ws.get(coll, rid)
            if coll != own and before is not None and _only_touched(before, after):
                continue
            found.append((coll, rid, before, after))
        return found or None

    async def after_commit(self, ws: Workspace, changes: list[Change]) -> None:
        """After the write is durable: its events, the rules they fire, and their actions
        (durable before the answer goes, so the caller's next read shows them)."""
        if self.exclusive is not None:
            # shared state: the request's commit let go of the write lock; the rules' own
            # writes take it again, on the copy caught up with every other worker's writes
            try:
                async with self.exclusive(ws.name) as held:
                    self._react(held, changes)
            except ApiError:
                log.warning("a rule action's change could not be saved in workspace %s", ws.name)
            return
        self._react(ws, changes)
        try:
            await ws.settled()
        except ApiError:
            log.warning("a rule action's change could not be saved in workspace %s", ws.name)

    def _react(self, ws: Workspace, changes: list[Change]) -> None:
        at = self.state.clock.iso()
        beside = ws.transaction  # another writer's, open between its handler and its commit
        try:
            for event in self._events(ws, changes, at):
                self.emit(ws, event)
        except Exception:  # the write itself is committed: its answer must not become a 500
            log.exception("the rules of workspace %s failed on a committed write", ws.name)
            left = ws.transaction
            if left is not beside:
                ws.rollback(left)  # what an action left staged, and only that

    def _in_workspace(self, name: str, work: Callable[[Workspace], None]) -> None:
        """A write outside any request (a delivery's log entry, a disabled action): at once
        on embedded state; on shared state in a task that holds the workspace's write lock."""
        if self.exclusive is None:
            ws = self.state.workspaces.existing(name)
            if ws is not None:
                work(ws)
            return
        task = asyncio.get_running_loop().create_task(self._exclusively(self.exclusive, name, work))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    @staticmethod
    async def _exclusively(
        exclusive: Exclusive, name: str, work: Callable[[Workspace], None]
    ) -> None:
        try:
            async with exclusive(name) as ws:
                work(ws)
        except ApiError:
            log.warning("a rule's background change could not be saved in workspace %s", name)
        except Exception:
            log.exception("a rule's background change failed in workspace %s", name)

    def _events(self, ws: Workspace, changes: list[Change], at: str) -> list[Event]:
        out = []
        for coll, rid, before, after in changes:
            for et in self.model.events.values():
                if et.collection != coll or (et.on == "created") != (before is None):
                    continue
                if et.subject_field is None:
                    out.append(Event(_new_id("evt"), et, rid, before, after, None, at))
                    continue
                subject_id = after.get(et.subject_field)
                subject = ws.get(self.model.subject, str(subject_id))
                if subject is not None:
                    out.append(Event(_new_id("evt"), et, subject["id"], None, subject, after, at))
        return out

    def emit(self, ws: Workspace, event: Event) -> None:
        for rule in list(self._by_trigger(ws).get(event.type.name, ())):
            if matches(rule.get("conditions"), event.before, event.after):
                self._fire(ws, rule, event)

    # ---------------------------------------------------------------- firing
    def _fire(self, ws: Workspace, rule: Record, event: Event) -> None:
        subject = event.after
        outcomes: list[Record] = []
        for i, action in enumerate(rule.get("actions") or []):
            kind = self.model.actions.get(str(action.get(ACTION_TYPE)))
            outcome: Record = {
                "type": action.get(ACTION_TYPE),
                "outcome": "applied",
                "detail": None,
            }
            if kind is None:
                outcome.update(outcome="skipped", detail="unknown action type")
            elif action.get("enabled") is False:
                outcome.update(
                    outcome="skipped", detail=action.get("disabled_reason") or "disabled"
                )
            elif kind.sets:
                subject = self._set(ws, rule, kind, action, subject, outcome)
            elif kind.webhook is not None:
                self._webhook(ws, rule, i, action, event, subject, outcome)
            else:
                self._email(ws, rule, kind, action, event, subject, outcome)
            outcomes.append(outcome)
        firing = {
            "id": _new_id(self.collections[self.model.firings].id_prefix),
            "rule_id": rule["id"],
            "event_id": event.id,
            "event_type": event.type.name,
            "subject_id": event.subject_id,
            "due_at": event.due_at,
            "fired_at": event.at,
            "actions": outcomes,
            "created_at": event.at,
            "updated_at": event.at,
        }
        # in a transaction of its own: never staged into a write another request has open
        ws.save(
            self.model.firings, self.resources.fill(self.collections[self.model.firings], firing)
        )

    def _set(
        self,
        ws: Workspace,
        rule: Record,
        kind: ActionKind,
        action: Record,
        subject: Record,
        outcome: Record,
    ) -> Record:
        """A field-setting action: the subject updated as an API update would update it."""
        changes = {field: action.get(param) for field, param in kind.sets.items()}
        current = ws.get(self.model.subject, subject["id"])
        if current is None:
            outcome.update(outcome="failed", detail="the record no longer exists")
            return subject
        if all(current.get(f) == v for f, v in changes.items()):
            outcome.update(outcome="unchanged")
            return current
        call = HandlerCall(self.update_op, ws, None, {"id": subject["id"]}, frozenset(), changes)
        transaction = ws.begin()
        try:
            self.resources.update(call)
            if self.audit is not None:
                maker = self.audit.maker(self.model.rules, rule["id"])
                self.audit.stage(ws, self.update_op, None, maker)
        except ApiError as err:
            ws.rollback(transaction)
            outcome.update(outcome="failed", detail=err.message[:500])
            return current
        ws.commit()  # durable before the answer: after_commit awaits the workspace
        return ws.get(self.model.subject, subject["id"]) or current

    def _webhook(
        self,
        ws: Workspace,
        rule: Record,
        index: int,
        action: Record,
        event: Event,
        subject: Record,
        outcome: Record,
    ) -> None:
        delivery_id = _new_id("dlv")
        before, after = event.before or {}, event.after
        previous = {k: v for k, v in before.items() if after.get(k) != v and k != "updated_at"}
        data: Record = {"object": subject, "previous": previous}
        if event.type.include_as and event.child is not None:
            data[event.type.include_as] = event.child
        payload = {
            "id": event.id,
            "type": event.type.name,
            "created_at": event.at,
            "delivery_id": delivery_id,
            "rule_id": rule["id"],
            "data": data,
        }
        body = msgspec.json.encode(payload)
        limit = self.model.delivery.max_payload_bytes
        outcome["delivery_id"] = delivery_id
        if len(body) > limit:
            outcome.update(outcome="failed", detail=f"the payload is over {limit} bytes")
            return
        delivery = Delivery(
            workspace=ws.name,
            rule_id=rule["id"],
            action_index=index,
            url=str(action.get(self.model.actions[str(action[ACTION_TYPE])].webhook or "")),
            secret=str(rule.get("signing_secret") or ""),
            event_type=event.type.name,
            event_id=event.id,
            delivery_id=delivery_id,
            body=body,
        )
        if self.deliveries.submit(delivery):
            outcome.update(outcome="queued")
        else:
            outcome.update(outcome="failed", detail="the webhook queue is full")

    def _email(
        self,
        ws: Workspace,
        rule: Record,
        kind: ActionKind,
        action: Record,
        event: Event,
        subject: Record,
        outcome: Record,
    ) -> None:
        context = {**subject, "event": {"id": event.id, "type": event.type.name, "at": event.at}}
        parts = {part: action.get(param) for part, param in kind.email.items()}
        recipients = [render(str(t), context) for t in parts.get("to") or []]
        message = {
            "rule_id": rule["id"],
            "event_id": event.id,
            "event_type": event.type.name,
            "subject_id": event.subject_id,
            "to": [r for r in recipients if r.strip()],
            "subject": render(str(parts.get("subject") or ""), context),
            "body": render(str(parts.get("body") or ""), context),
            "created_at": event.at,
        }
        outcome["detail"] = self.outbox.add(ws.name, message)

    # ---------------------------------------------------------------- delivery bookkeeping
    def _clock_iso(self, workspace: str) -> str:
        return format_iso(time.time() + self.state.clock.offset_of(workspace))

    def _rule_exists(self, d: Delivery) -> bool:
        ws = self.state.workspaces.existing(d.workspace)
        return ws is not None and ws.get(self.model.rules, d.rule_id) is not None

    def _log_attempt(self, d: Delivery, attempt: Attempt, next_at: str | None) -> None:
        self._in_workspace(d.workspace, lambda ws: self._write_attempt(ws, d, attempt, next_at))

    def _write_attempt(
        self, ws: Workspace, d: Delivery, attempt: Attempt, next_at: str | None
    ) -> None:
        if ws.in_transaction or ws.get(self.model.rules, d.rule_id) is None:
            return  # the rule was deleted (its log with it) or a write is being staged
        now = self._clock_iso(d.workspace)
        coll = self.collections[self.model.deliveries]
        record = {
            "id": _new_id(coll.id_prefix),
            "rule_id": d.rule_id,
            "action_index": d.action_index,
            "delivery_id": d.delivery_id,
            "event_id": d.event_id,
            "event_type": d.event_type,
            "attempt": d.attempt,
            "url": d.url,
            "outcome": attempt.outcome,
            "response_status": attempt.status,
            "duration_ms": attempt.duration_ms,
            "error": attempt.error,
            "attempted_at": now,
            "next_attempt_at": next_at,
            "created_at": now,
            "updated_at": now,
        }
        ws.save(self.model.deliveries, self.resources.fill(coll, record))

    def _disable(self, d: Delivery, why: str) -> None:
        """Too many failed attempts: the action is disabled, as an audited change of the rule
        (dated on the workspace's own clock)."""
        self._in_workspace(
            d.workspace, lambda ws: contextvars.Context().run(self._disable_now, ws, d, why)
        )

    def _disable_now(self, ws: Workspace, d: Delivery, why: str) -> None:
        use_workspace(d.workspace)
        rule = ws.get(self.model.rules, d.rule_id)
        if rule is None or ws.in_transaction:
            return
        actions = [dict(a) for a in rule.get("actions") or []]
        if d.action_index >= len(actions):
            return
        actions[d.action_index].update(enabled=False, disabled_reason=why)
        updated = {**rule, "actions": actions, "updated_at": self._clock_iso(d.workspace)}
        ws.begin()
        ws.write(self.model.rules, updated)
        if self.audit is not None:
            maker = self.audit.maker(self.model.rules, d.rule_id)
            self.audit.stage(ws, self.rules_update_op, None, maker)
        ws.commit()

    # ---------------------------------------------------------------- the clock
    async def run_due_now(self) -> None:
        """After the clock moved: what became due runs before the move is answered."""
        self.run_due()
        if self.exclusive is not None:
            await self._shared_clock_passes(self.exclusive)

    def run_due(self) -> None:
        """Due retries to their lanes, then the clock events each workspace's clock has passed."""
        self.deliveries.run_due()
        if not self.model.clock_events or self.exclusive is not None:
            return  # on shared state the tick runs each pass under the write lock
        spaces = self.state.workspaces
        for name in spaces.names():
            ws = spaces.existing(name)
            if ws is not None:
                contextvars.Context().run(self._clock_pass, ws)

    async def _shared_clock_passes(self, exclusive: Exclusive) -> None:
        """On shared state: each workspace with a clock rule is judged under its write lock, on
        the copy caught up with every worker, and what was already judged is read again from
        the firings Redis holds, so two workers never fire the same due time twice."""
        if not self.model.clock_events:
            return
        spaces = self.state.workspaces
        for name in await spaces.fetch_names():  # not blocking the loop on a slow store
            ws = spaces.existing(name)
            if ws is None or not self._clock_rules(ws):
                continue
            try:
                async with exclusive(name) as held:
                    for key in [k for k in self._judged if k[0] == name]:
                        del self._judged[key]
                    contextvars.Context().run(self._clock_pass, held)
            except ApiError:
                log.warning("the clock pass of workspace %s could not run", name)

    def _clock_rules(self, ws: Workspace) -> bool:
        by_trigger = self._by_trigger(ws)
        return any(by_trigger.get(et.name) for et in self.model.clock_events)

    def _clock_pass(self, ws: Workspace) -> None:
        by_trigger = self._by_trigger(ws)
        due_rules = [
            (rule, et) for et in self.model.clock_events for rule in by_trigger.get(et.name, ())
        ]
        if not due_rules:
            return
        use_workspace(ws.name)  # this context only: the workspace's own clock
        clock = self.state.clock
        now = clock.now()
        subjects = ws.view(self.model.subject).query([], None, "id", False)
        for rule, et in due_rules:
            trigger = et.clock
            assert trigger is not None
            since = parse_iso(str(rule.get("enabled_at") or rule["created_at"]))
            judged = self._judged_for(ws, rule["id"])
            for record in subjects:
                anchor = record.get(trigger.anchor)
                offset = trigger.after.of(record, rule)
                if not isinstance(anchor, str) or offset is None:
                    continue
                due = parse_iso(anchor) + offset
                if not since < due <= now or not trigger.holds(record):
                    continue
                key = (record["id"], format_iso(due))
                if key in judged:
                    continue
                judged.add(key)
                if matches(rule.get("conditions"), None, record):
                    event = Event(
                        _new_id("evt"), et, record["id"], None, record, None, clock.iso(), key[1]
                    )
                    self._fire(ws, rule, event)

    def _judged_for(self, ws: Workspace, rule_id: str) -> set[tuple[str, str]]:
        key = (ws.name, rule_id)
        found = self._judged.get(key)
        if found is None:
            firings = ws.view(self.model.firings).query([("rule_id", rule_id)], None, "id", False)
            found = self._judged[key] = {
                (str(f.get("subject_id")), str(f.get("due_at"))) for f in firings if f.get("due_at")
            }
        return found


def _refuse(field: str, message: str) -> None:
    raise ApiError(
        "VALIDATION_ERROR",
        f"Invalid request: {field}: {message}.",
        [Detail("body", field, message)],
    )


def rule_engine_for(state: SandboxState) -> RuleEngine | None:
    """The engine for the spec's `x-sandbox-events` (None without it), with the operator's
    webhook allow list: loopback unless given; nothing at all in hosted mode unless given."""
    model = state.spec.events
    if model is None:
        return None
    settings = state.settings
    allowed = settings.webhook_allow
    if allowed is None:
        allowed = () if settings.hosted else LOOPBACK
    resources = Resources(
        state.spec,
        state.clock,
        lambda ex: {},
        raw=False,
        world_epoch=state.recipe.epoch.timestamp(),
    )
    return RuleEngine(state, model, resources, WebhookAllow.parse(allowed))


def _only_touched(before: Record, after: Record) -> bool:
    """Whether a write changed nothing but the record's `updated_at`."""
    return before == {**after, "updated_at": before.get("updated_at")}

"""The state of one contract run, and the per-test object probes and integrators work through.

`ContractRun` lives for the pytest session: the options, the spec, the target (opened on first
use, so a run that never asks for it never builds a sandbox), the report and the id pool.
`Contract` lives for one test: the exchanges it recorded, the records it created (deleted when it
ends, newest first), and `verify()`, which runs every check over what the test sent.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterable
from typing import Any

import httpx

from opsmerge_contracts.checks import FAIL, WARN, CheckContext, Result, run_checks
from opsmerge_contracts.cleanup import Cleanup, Leftover
from opsmerge_contracts.exchange import Exchange, curl_line
from opsmerge_contracts.idpool import IdPool
from opsmerge_contracts.options import Options
from opsmerge_contracts.report import RunReport
from opsmerge_contracts.rolekeys import RoleKey
from opsmerge_contracts.routes import Router
from opsmerge_contracts.target import Target, api_base, new_workspace, open_target
from opsmerge_sandbox.spec import Operation, Spec, load_spec

PRIMARY = "primary"
LIMITED = "limited"


class OpsMergeStabilityWarning(UserWarning):
    """A contract exercised a beta or internal operation."""


class ContractFailure(AssertionError):
    """One or more checks failed; `check_ids` names them."""

    def __init__(self, results: list[Result]) -> None:
        self.results = results
        self.check_ids = sorted({r.check for r in results})
        lines = [f"{len(results)} contract check(s) failed: {', '.join(self.check_ids)}"]
        for r in results[:12]:
            lines.append(f"  [{r.check}] {r.operation_id or '-'}: {r.message}")
            lines.append(f"      {r.exchange.summary()}")
        if len(results) > 12:
            lines.append(f"  ... and {len(results) - 12} more (see the report)")
        super().__init__("\n".join(lines))


class ContractRun:
    def __init__(self, options: Options) -> None:
        self.options = options
        self.spec: Spec = load_spec(options.spec) if options.spec else load_spec()
        self.router = Router(self.spec)
        self.check_context = CheckContext(self.spec)
        self.report = RunReport()
        self._target: Target | None = None
        self._pool: IdPool | None = None
        self._identities: dict[str, dict[str, Any] | None] = {}
        # a served sandbox (URL and admin token): the run's own workspace, named before the
        # target opens so the preflight's one keyed request lands in it too
        served = not options.in_process and options.admin_token is not None
        self.workspace: str | None = (options.workspace or new_workspace()) if served else None
        self.preflight_sent = _checked_already()
        self._preflight_passed = self.preflight_sent > 0

    def _preflight_or_exit(self) -> None:
        """The first test to use a URL target checks it; a bad target ends the session there."""
        import pytest

        from opsmerge_contracts.preflight import TargetProblem

        try:
            self.preflight()
        except TargetProblem as problem:
            pytest.exit(f"opsmerge: {problem.line}", returncode=problem.code)

    def preflight(self) -> None:
        """Raise TargetProblem when a URL target is down, is not this API or refuses the key
        (once per run: the command may have checked it before starting pytest)."""
        if self.options.in_process or self._preflight_passed:
            return
        from opsmerge_contracts.preflight import check_target

        root, base = api_base(self.options.target, self.spec)
        self.preflight_sent = check_target(
            root,
            base,
            self.spec,
            self.options.key,
            admin_token=self.options.admin_token,
            workspace=self.workspace,
            role_keys=self.options.role_keys,
        )
        self._preflight_passed = True

    # --- the target, opened on first use ---------------------------------------------------------

    @property
    def target(self) -> Target:
        if self._target is None:
            if not self.options.in_process and not self._preflight_passed:
                self._preflight_or_exit()
            self._target = open_target(self.options, self.spec, self.workspace)
            self._target.guard.charge(self.preflight_sent)  # the check's requests count too
            self.report.meta.update(self._target.describe())
        return self._target

    @property
    def target_open(self) -> bool:
        return self._target is not None

    @property
    def pool(self) -> IdPool:
        if self._pool is None:
            self._pool = IdPool(self.spec, lambda: self.target.client())
            me = self.identity(self.target.key)
            if me:
                self._pool.protected |= {
                    str(me["user"]["id"]),
                    *(str(r["id"]) for r in me.get("roles", [])),
                }
        return self._pool

    def identity(self, key: str | None) -> dict[str, Any] | None:
        """`/auth/me` for a key (its user, roles and effective scopes), read once per run."""
        if not key:
            return None
        if key not in self._identities:
            op = next((o for o in self.spec.operations if o.kind == "identity"), None)
            data = None
            if op is not None:
                with self.target.client(key=key) as client:
                    response = client.get(op.path, extensions={"opsmerge": {"record": False}})
                body = response.json() if response.status_code == 200 else None
                data = body.get("data") if isinstance(body, dict) else None
            self._identities[key] = data
        return self._identities[key]

    def role_keys(self) -> list[RoleKey]:
        """The role matrix's keys, learned once per run: those given per role, else (a sandbox
        the run administers) one minted for a user of each role. A given key the target refuses
        fails the test that first asks, naming its label."""
        target = self.target
        if target.role_keys is None:
            from opsmerge_contracts.rolekeys import RoleKeyProblem, learn, mint_per_role

            try:
                if self.options.role_keys:
                    keys = learn(target, self.spec, self.options.role_keys)
                elif target.admin is not None:
                    keys = mint_per_role(target, self.spec, self._users())
                else:
                    keys = []
            except RoleKeyProblem as problem:
                import pytest

                pytest.fail(f"role matrix: {problem}", pytrace=False)
            target.role_keys = keys
            # no contract may change these users or their roles while the matrix relies on them
            for k in keys:
                self.pool.protected |= {k.user_id, *k.role_ids}
            self.report.meta["role_keys"] = ", ".join(k.label for k in keys) or "none"
        return list(target.role_keys)

    def _users(self) -> list[dict[str, Any]]:
        """The users the spec's auth model names (x-sandbox-auth), read with the run's key."""
        users = (self.spec.resolved.get("x-sandbox-auth") or {}).get("users")
        return self.pool.records(str(users)) if users else []

    def scopes_of(self, key: str | None) -> set[str] | None:
        me = self.identity(key)
        return set(me.get("scopes") or []) if me else None

    def curl(self, exchange: Exchange) -> str:
        target = self._target
        if target is None:
            return curl_line(exchange)
        return curl_line(exchange, target.root_url, target.curl_root)

    def close(self) -> None:
        if self._target is not None:
            self.report.stats.update(
                {
                    "requests": self._target.guard.sent,
                    "budget": self._target.guard.budget.limit,
                    "refused_by_profile": len(self._target.guard.refused),
                    "paced_seconds": round(self._target.guard.pacer.waited, 2)
                    if self._target.guard.pacer
                    else 0,
                    "throttled": self._target.guard.pacer.throttled
                    if self._target.guard.pacer
                    else 0,
                }
            )
            self._target.close()
            self._target = None
        elif self.workspace and self._preflight_passed and self.options.admin_token:
            reset_workspace(self.options, self.spec, self.workspace)


def _checked_already() -> int:
    """Requests the command sent checking the target before it started this pytest (0: none)."""
    import os

    from opsmerge_contracts.cli import CHECKED_ENV

    value = os.environ.get(CHECKED_ENV, "")
    return int(value) if value.isdigit() else 0


def reset_workspace(options: Options, spec: Spec, workspace: str) -> None:
    """The preflight's keyed request made the run's workspace: a run that then never opened its
    target (or never started) still leaves nothing behind. Errors are ignored: it is tidying."""
    from opsmerge_contracts.sandbox_control import AdminError, SandboxAdmin

    root, _ = api_base(options.target, spec)
    with httpx.Client(base_url=root, timeout=30) as client, contextlib.suppress(
        AdminError, httpx.HTTPError
    ):
        SandboxAdmin(client, str(options.admin_token), workspace).reset(workspace=workspace)


class Contract:
    """One test's view of the run: send, record, verify, clean up."""

    def __init__(self, run: ContractRun, nodeid: str) -> None:
        self.run = run
        self.nodeid = nodeid
        self.exchanges: list[Exchange] = []
        self.cleanup = Cleanup(self._delete)
        self.leftovers: list[Leftover] = []
        self.results: list[Result] = []
        self.touched_world = False
        self._clients: dict[str | None, httpx.Client] = {}

    @property
    def target(self) -> Target:
        return self.run.target

    @property
    def spec(self) -> Spec:
        return self.run.spec

    @property
    def profile(self) -> str:
        return self.run.options.profile

    def client(self, key: str | None = PRIMARY) -> httpx.Client:
        """A guarded, recording client with the given key (PRIMARY, LIMITED, None or a literal)."""
        secret = self._secret(key)
        if secret not in self._clients:
            client = self.target.client(key="", sink=self.exchanges.append)
            if secret:
                client.headers["Authorization"] = f"Bearer {secret}"
            self._clients[secret] = client
        return self._clients[secret]

    def _secret(self, key: str | None) -> str | None:
        if key == PRIMARY:
            return self.target.key
        if key == LIMITED:
            return self.target.limited_key
        return key

    def _label(self, key: str | None) -> str:
        if key in (PRIMARY, LIMITED):
            return str(key)
        if key is None:
            return "none"
        if key == self.target.key:
            return PRIMARY
        if key == self.target.limited_key:
            return LIMITED
        for k in self.target.role_keys or ():
            if key == k.key and not k.minted:
                return f"for:{k.label}"  # a curl line reads it from OPSMERGE_KEY_FOR_<LABEL>
        return "minted"

    def call(
        self,
        method: str,
        path: str,
        *,
        key: str | None = PRIMARY,
        role: str = "call",
        meta: dict[str, Any] | None = None,
        operation: Operation | None = None,
        authorization: str | None = None,
        pace: bool = True,
        retry_429: bool = True,
        **kwargs: Any,
    ) -> httpx.Response:
        """Send one request; its exchange is recorded with `role` and `meta` for the checks.

        `authorization` sends that header verbatim (for malformed keys) instead of `key`.
        """
        wishes: dict[str, Any] = {
            "role": role,
            "meta": meta or {},
            "pace": pace,
            "retry_429": retry_429,
            "key_label": "malformed" if authorization is not None else self._label(key),
        }
        if operation is not None:
            wishes["operation_id"] = operation.operation_id
        headers = dict(kwargs.pop("headers", {}) or {})
        if authorization is not None:
            headers["Authorization"] = authorization
            client = self.client(None)
        else:
            client = self.client(key)
        return client.request(
            method, path, headers=headers, extensions={"opsmerge": wishes}, **kwargs
        )

    def track(self, collection: str, record_id: str) -> None:
        """Delete this record when the test ends (or report it as a leftover)."""
        delete = next(
            (
                op
                for op in self.spec.operations
                if op.kind == "delete"
                and op.hints.collection == collection
                and not op.session_only
                and "{" in op.path
            ),
            None,
        )
        path = None
        if delete is not None:
            params = [seg for seg in delete.path.split("/") if seg.startswith("{")]
            if len(params) == 1:
                path = delete.path.replace(params[0], record_id)
        self.cleanup.track(collection, record_id, path, self.nodeid)

    def _delete(self, path: str) -> int:
        with self.target.client() as client:
            response = client.delete(path, extensions={"opsmerge": {"record": False}})
        return response.status_code

    def verify(
        self, only: Iterable[str] | None = None, exchanges: list[Exchange] | None = None
    ) -> list[Result]:
        """Run the checks over what this test sent; raise ContractFailure naming what failed."""
        exchanges = self.exchanges if exchanges is None else exchanges
        results = run_checks(self.run.check_context, exchanges, only)
        self.results += results
        self.run.report.add_results(self.nodeid, results, self.run.curl)
        warned: set[str | None] = set()
        for r in results:
            if r.status == WARN and r.operation_id not in warned:
                warned.add(r.operation_id)
                warnings.warn(OpsMergeStabilityWarning(r.message), stacklevel=2)
        failed = [r for r in results if r.status == FAIL]
        if failed:
            raise ContractFailure(failed)
        return results

    def finish(self) -> list[Leftover]:
        """Delete what the test created; close its clients."""
        try:
            self.leftovers = self.cleanup.run()
        finally:
            for client in self._clients.values():
                client.close()
            self._clients.clear()
        self.run.report.leftovers += self.leftovers
        if self.touched_world and self.run._pool is not None:
            self.run._pool.invalidate()
        return self.leftovers

"""Before a run against a URL: is the target there, does it speak this API, does it take the key?

Without this, a target that is down or is something else answers every contract the same way,
and a run prints a failure and a traceback per test (179 of them, for a closed port). Two
requests to the spec's identity operation (or its first list without path parameters), without
and with the key, tell the cases apart; an admin token is tried once on the control API. Each
case stops the run with one line and its own exit code (contracts.exit_codes). The lines never
quote a key or the token, in full or in part.
"""

from __future__ import annotations

from typing import Any

import httpx

from opsmerge_contracts.exit_codes import ADMIN_REJECTED as EXIT_ADMIN_REJECTED
from opsmerge_contracts.exit_codes import KEY_REJECTED as EXIT_KEY_REJECTED
from opsmerge_contracts.exit_codes import NOT_THIS_API as EXIT_NOT_THIS_API
from opsmerge_contracts.exit_codes import UNREACHABLE as EXIT_UNREACHABLE
from opsmerge_contracts.sandbox_control import ADMIN_HEADER
from opsmerge_sandbox.spec import Operation, Spec

TIMEOUT = 10.0


class TargetProblem(Exception):
    """Why the run cannot start: one line for the user and the exit code that goes with it."""

    def __init__(self, code: int, line: str) -> None:
        super().__init__(line)
        self.code = code
        self.line = line


def probe_operation(spec: Spec) -> Operation | None:
    """What the check sends: the identity operation, else a list needing no path parameter."""
    ops = [o for o in spec.operations if o.method == "GET" and not o.session_only]
    for wanted in ("identity", "list"):
        for op in ops:
            if op.kind == wanted and "{" not in op.path:
                return op
    return next((o for o in ops if "{" not in o.path), None)


def _error_code(response: httpx.Response) -> str | None:
    """The code of an error envelope, or None when the body is not one."""
    try:
        body: Any = response.json()
    except ValueError:
        return None
    error = body.get("error") if isinstance(body, dict) else None
    code = error.get("code") if isinstance(error, dict) else None
    return code if isinstance(code, str) else None


def _is_data(response: httpx.Response) -> bool:
    try:
        body: Any = response.json()
    except ValueError:
        return False
    return isinstance(body, dict) and "data" in body


def check_target(
    root_url: str,
    base_url: str,
    spec: Spec,
    key: str | None,
    admin_token: str | None = None,
    workspace: str | None = None,
    transport: httpx.BaseTransport | None = None,
    role_keys: tuple[tuple[str, str], ...] = (),
) -> int:
    """Raise TargetProblem unless the target answers as the spec says and takes the key; else
    return how many API requests it sent (they count against the run's budget).

    The first request carries no key, so a target that is not the API learns nothing and no
    one's rate bucket is spent; the key is tried last, in the run's own workspace when it has one.
    """
    op = probe_operation(spec)
    if op is None:
        return 0  # nothing safe to ask: the contracts will say what they find
    url = base_url + op.path
    with httpx.Client(transport=transport, timeout=TIMEOUT) as client:
        response = _get(client, url, {}, root_url)
        if not (_error_code(response) or (response.is_success and _is_data(response))):
            kind = response.headers.get("content-type", "no content type").split(";")[0]
            raise TargetProblem(
                EXIT_NOT_THIS_API,
                f"{root_url} does not answer as this API: GET {url} gave "
                f"{response.status_code} ({kind}), not a data or error envelope "
                f"(is the URL right? the API is expected under {spec.base_path or '/'})",
            )
        if admin_token:
            _check_admin(client, root_url, admin_token)
        sent = 1
        given = ([("", key)] if key else []) + list(role_keys)
        for label, secret in given:
            headers = {"Authorization": f"Bearer {secret}"}
            if workspace:
                headers["X-Sandbox-Workspace"] = workspace
            response = _get(client, url, headers, root_url)
            sent += 1
            code = _error_code(response)
            if response.status_code == 401:
                which = f"the key given for {label!r}" if label else "the key"
                hint = "--key-for or OPSMERGE_KEYS_FOR" if label else "--key or OPSMERGE_API_KEY"
                raise TargetProblem(
                    EXIT_KEY_REJECTED,
                    f"{root_url} refused {which}: GET {op.path} answered 401 {code or ''}".rstrip()
                    + f" (check {hint})",
                )
    return sent


def _get(client: httpx.Client, url: str, headers: dict[str, str], root_url: str) -> httpx.Response:
    try:
        return client.get(url, headers=headers)
    except httpx.TimeoutException:
        raise TargetProblem(
            EXIT_UNREACHABLE, f"{root_url} did not answer within {TIMEOUT:g} s"
        ) from None
    except httpx.TransportError as exc:
        reason = str(exc).strip() or type(exc).__name__
        raise TargetProblem(EXIT_UNREACHABLE, f"cannot reach {root_url}: {reason}") from None


def _check_admin(client: httpx.Client, root_url: str, token: str) -> None:
    response = _get(client, root_url + "/_sandbox/clock", {ADMIN_HEADER: token}, root_url)
    if response.status_code == 401:
        raise TargetProblem(
            EXIT_ADMIN_REJECTED,
            f"{root_url} refused the admin token (check --admin-token or "
            "OPSMERGE_SANDBOX_ADMIN_TOKEN)",
        )
    if response.status_code != 200 or not _is_data(response):
        raise TargetProblem(
            EXIT_ADMIN_REJECTED,
            f"{root_url} has no sandbox control API (GET /_sandbox/clock answered "
            f"{response.status_code}): drop the admin token for a deployment or a hosted sandbox",
        )

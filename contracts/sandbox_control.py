"""Control of a sandbox the run can reach as admin: reset, keys, clock, rate limits, faults.

These endpoints are not part of the OpsMerge API and bypass the guarded transport: they are not
contract traffic, do not spend the budget and are never recorded.
"""

from __future__ import annotations

from typing import Any

import httpx

ADMIN_HEADER = "X-Sandbox-Admin-Token"


class AdminError(RuntimeError):
    """An admin call failed; the sandbox may be hosted (admin off) or the token wrong."""


class SandboxAdmin:
    def __init__(self, client: httpx.Client, token: str, workspace: str | None = None) -> None:
        self._client = client
        self.workspace = workspace
        self._headers = {ADMIN_HEADER: token}
        if workspace:
            self._headers["X-Sandbox-Workspace"] = workspace

    def _call(self, method: str, path: str, json: Any = None, params: Any = None) -> Any:
        response = self._client.request(
            method, "/_sandbox" + path, json=json, params=params, headers=self._headers
        )
        if response.status_code >= 400:
            raise AdminError(
                f"{method} /_sandbox{path} answered {response.status_code}: {response.text[:300]}"
            )
        if not response.content:
            return None
        body = response.json()
        return body.get("data", body) if isinstance(body, dict) else body

    def reset(self, keys: bool = False, workspace: str | None = None) -> Any:
        """Restore the seeded world and empty the rate-limit buckets.

        `keys=True` also drops minted keys and undoes revocations; `workspace` limits the reset
        to one workspace.
        """
        body: dict[str, Any] = {"keys": keys}
        if workspace:
            body["workspace"] = workspace
        return self._call("POST", "/reset", json=body)

    def mint_key(
        self,
        name: str,
        scopes: list[str] | None = None,
        user_id: str | None = None,
        expires_in: int | None = None,
        rate_limit: int | None = None,
    ) -> dict[str, Any]:
        """A new key: full access when `scopes` is None, else exactly those scopes."""
        body: dict[str, Any] = {"name": name}
        if scopes is not None:
            body["scopes"] = list(scopes)
        if user_id is not None:
            body["user_id"] = user_id
        if expires_in is not None:
            body["expires_in"] = expires_in
        if rate_limit is not None:
            body["rate_limit"] = rate_limit
        return dict(self._call("POST", "/keys", json=body))

    def list_keys(self) -> list[dict[str, Any]]:
        """The sandbox's keys as the control API lists them (prefix, owner, scopes; no secret)."""
        data = self._call("GET", "/keys")
        return list(data.get("items", [])) if isinstance(data, dict) else list(data or [])

    def revoke_key(self, key_id: str) -> Any:
        return self._call("DELETE", f"/keys/{key_id}")

    def reset_rate_limits(self) -> Any:
        return self._call("POST", "/rate-limits/reset")

    def clock(self) -> Any:
        """The clock as the run sees it (its workspace's, on a sandbox that keeps one each)."""
        return self._call("GET", "/clock")

    def advance_clock(self, seconds: float) -> Any:
        """Move the sandbox clock forward: rate windows and key expiry cross as if time passed."""
        return self._call("POST", "/clock", json={"advance_seconds": seconds})

    def add_fault(self, rule: dict[str, Any]) -> Any:
        return self._call("POST", "/faults", json=rule)

    def faults(self) -> Any:
        return self._call("GET", "/faults")

    def clear_faults(self) -> Any:
        return self._call("DELETE", "/faults")

    def requests(self, limit: int | None = None) -> list[dict[str, Any]]:
        """The sandbox's journal of recent requests, oldest first (keys by name and prefix only)."""
        data = self._call("GET", "/requests", params={"limit": limit} if limit else None)
        return list(data.get("items", [])) if isinstance(data, dict) else list(data or [])

    def clear_requests(self) -> Any:
        return self._call("DELETE", "/requests")

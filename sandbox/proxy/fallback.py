"""`proxy --fallback sandbox`: the sandbox answers for the operations the upstream lacks.

The sandbox runs in the proxy's process and is called over ASGI, no socket between. The
upstream's keys mean nothing to it, so a request that carries a key is sent with the sandbox
owner's full-access key instead (the client's key never reaches the sandbox, and is not kept);
a request without one stays without, and gets the sandbox's 401 like any other.
"""

from __future__ import annotations

from typing import Any

from opsmerge_contracts.sandboxes import SandboxKeys
from opsmerge_sandbox.settings import Settings

Answer = tuple[int, list[tuple[bytes, bytes]], bytes]


class Fallback:
    def __init__(self, settings: Settings) -> None:
        from opsmerge_sandbox.app import create_app
        from opsmerge_sandbox.state import build_state

        self.state = build_state(settings)
        self.app: Any = create_app(settings, self.state)
        self.key = SandboxKeys(self.state.recipe.keys).owner.key

    async def serve(self, scope: Any, body: bytes) -> Answer:
        headers = [
            (k, f"Bearer {self.key}".encode()) if k.lower() == b"authorization" else (k, v)
            for k, v in scope["headers"]
        ]
        sent = False

        async def receive() -> dict[str, Any]:
            nonlocal sent
            if sent:
                return {"type": "http.disconnect"}
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        status = 500
        out_headers: list[tuple[bytes, bytes]] = []
        chunks: list[bytes] = []

        async def send(message: dict[str, Any]) -> None:
            nonlocal status, out_headers
            if message["type"] == "http.response.start":
                status = message["status"]
                out_headers = list(message.get("headers") or [])
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))

        inner = {**scope, "headers": headers}
        inner.pop("raw_path", None)
        await self.app(inner, receive, send)
        return status, out_headers, b"".join(chunks)

    async def aclose(self) -> None:
        await self.state.close()  # queued writes saved, as the sandbox's own shutdown does

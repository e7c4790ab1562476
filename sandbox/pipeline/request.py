"""The request as the stages see it: the ASGI scope and channels, and nothing parsed ahead.

Litestar's `Request` builds its connection state (a scope-state object, extension lookups, a
dozen lazy caches) on creation, which costs more than several of the stages' own work, and the
stages read none of it: the headers are parsed once by their own stage, the body is read from
`receive` under the size limit, the path parameters come from the route match. So the API's
operations carry this instead, whichever way they arrived (the fast path or Litestar's router).
"""

from __future__ import annotations

from typing import Any

from litestar.types import Receive, Scope, Send


class ApiRequest:
    """One API request: its ASGI scope, `receive` and `send`."""

    __slots__ = ("receive", "scope", "send")

    def __init__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.scope = scope
        self.receive = receive
        self.send = send

    @property
    def path_params(self) -> dict[str, Any]:
        """The route's parameters by alias (`p_id`), as the router matched them."""
        return self.scope.get("path_params") or {}

"""The request as the stages see it: the ASGI scope and channels, and nothing parsed ahead.

Litestar's `Request` builds its connection state (a scope-state object, extension lookups, a
dozen lazy caches) on creation, which costs more than several of the stages' own work, and the
stages read none of it: the headers are parsed once by their own stage, the body is read from
`receive` under the size limit, the path parameters come from the route match. So the API's
operations carry this instead, whichever way they arrived (the fast path or Litestar's router).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from litestar.types import Receive, Scope, Send


class ApiRequest:
    """One API request: its ASGI scope, `receive` and `send`, and `take_body` where the server
    may already hold the whole body (the API lane): it hands it over at once, or None when the
    body is read through `receive`."""

    __slots__ = ("receive", "scope", "send", "take_body")

    def __init__(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        take_body: Callable[[], bytes | None] | None = None,
    ) -> None:
        self.scope = scope
        self.receive = receive
        self.send = send
        self.take_body = take_body

    @property
    def path_params(self) -> dict[str, Any]:
        """The route's parameters by alias (`p_id`), as the router matched them."""
        return self.scope.get("path_params") or {}

"""The request's headers, parsed once per request: every stage reads this one parse.

Two stages that each read the raw header list can disagree about which of two `Authorization`
headers counts (one picks the workspace, the other authenticates). So headers that must have one
value are refused when repeated, before anything else runs, and every stage asks this object.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from opsmerge_sandbox.clock import use_workspace
from opsmerge_sandbox.errors import ApiError, Detail
from opsmerge_sandbox.pipeline.workspace_name import WORKSPACE_HEADER
from opsmerge_sandbox.store.workspace import Workspaces

if TYPE_CHECKING:
    from opsmerge_sandbox.pipeline.context import RequestContext

# Headers with one meaning per request: a second copy is refused rather than guessed at.
SINGLE_VALUED = {
    "authorization": "Authorization",
    "x-sandbox-workspace": "X-Sandbox-Workspace",
    "content-type": "Content-Type",
    "content-length": "Content-Length",
}


class RequestHeaders:
    """Header values by lower-case name; repeated list-valued headers keep every value."""

    __slots__ = ("_first", "_repeated")

    def __init__(self, first: dict[str, str], repeated: dict[str, list[str]]) -> None:
        self._first = first
        self._repeated = repeated

    @classmethod
    def parse(cls, raw: Iterable[tuple[bytes, bytes]]) -> RequestHeaders:
        """Read the ASGI header list; a repeated single-valued header is a 400."""
        first: dict[str, str] = {}
        repeated: dict[str, list[str]] = {}
        for k, v in raw:
            name = k.decode("latin-1").lower()
            value = v.decode("latin-1")
            if name not in first:
                first[name] = value
                continue
            shown = SINGLE_VALUED.get(name)
            if shown is not None:
                raise ApiError(
                    "HEADER_INVALID",
                    f"The {shown} header appears more than once: send it exactly once.",
                    [Detail("header", shown, "repeated")],
                )
            repeated.setdefault(name, [first[name]]).append(value)
        return cls(first, repeated)

    def get(self, name: str, default: str | None = None) -> str | None:
        """The value of a header (the first one, for a list-valued header sent twice)."""
        return self._first.get(name, default)

    def getall(self, name: str) -> list[str]:
        """Every value of a list-valued header (Prefer, X-Forwarded-For), in order."""
        many = self._repeated.get(name)
        if many is not None:
            return list(many)
        one = self._first.get(name)
        return [] if one is None else [one]

    def __contains__(self, name: str) -> bool:
        return name in self._first


def repeated_single_valued(raw: Iterable[tuple[bytes, bytes]]) -> str | None:
    """The display name of the first single-valued header sent twice, for non-API routes."""
    seen: set[bytes] = set()
    for k, _ in raw:
        name = k.lower()
        if name in seen:
            shown = SINGLE_VALUED.get(name.decode("latin-1"))
            if shown is not None:
                return shown
        seen.add(name)
    return None


def parse_headers(ctx: RequestContext) -> None:
    """Stage: the one parse of the request's headers that every later stage reads."""
    ctx.headers = RequestHeaders.parse(ctx.request.scope["headers"])
    # the clock of the workspace the request names, for every later stage (key expiry is judged
    # on it). A hosted workspace is named otherwise, but no control API moves a hosted clock.
    use_workspace(ctx.headers.get(WORKSPACE_HEADER) or Workspaces.DEFAULT)

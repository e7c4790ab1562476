"""Which spec operation a recorded request exercised, from its method and path.

Scenario steps and integrators' own calls name no operation, yet the checks need one (which
statuses are documented, which schema applies), so the path is matched against the spec's
templates. Literal segments win over parameters (`/users/invite` before `/users/{id}`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from opsmerge_sandbox.spec import Operation, Spec


@dataclass(frozen=True, slots=True)
class _Route:
    pattern: re.Pattern[str]
    literal_segments: int
    operation: Operation


class Router:
    def __init__(self, spec: Spec) -> None:
        self.base_path = spec.base_path
        routes: list[_Route] = []
        for op in spec.operations:
            parts = op.path.strip("/").split("/")
            regex = "".join(
                "/[^/]+" if part.startswith("{") and part.endswith("}") else "/" + re.escape(part)
                for part in parts
            )
            literal = sum(1 for p in parts if not p.startswith("{"))
            routes.append(_Route(re.compile(f"^{regex}/?$"), literal, op))
        routes.sort(key=lambda r: -r.literal_segments)
        self._routes = routes

    def match(self, method: str, path: str) -> Operation | None:
        """The operation for an absolute request path (with or without the API base path)."""
        if self.base_path and path.startswith(self.base_path):
            path = path[len(self.base_path) :] or "/"
        method = method.upper()
        if method == "HEAD":
            method = "GET"
        for route in self._routes:
            if route.operation.method == method and route.pattern.match(path):
                return route.operation
        return None

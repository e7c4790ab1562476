"""The emails rules' `send_email` actions write: kept per workspace, read by the control API.

No mail leaves the sandbox. Templates use the documented `{{.path}}` variables, read from the
event's subject record (`{{.reference}}`, `{{.subject}}`) and the event (`{{.event.type}}`); a
variable that names nothing renders empty, and a recipient that renders empty is left out.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Mapping
from typing import Any

OUTBOX_SIZE = 500  # per workspace; the oldest go first
_VARIABLE = re.compile(r"\{\{\s*\.([A-Za-z0-9_.]+)\s*\}\}")


def render(template: str, context: Mapping[str, Any]) -> str:
    def value(match: re.Match[str]) -> str:
        node: Any = context
        for part in match.group(1).split("."):
            node = node.get(part) if isinstance(node, Mapping) else None
        return "" if node is None else str(node)

    return _VARIABLE.sub(value, template)


class Outbox:
    def __init__(self) -> None:
        self._mail: dict[str, deque[dict[str, Any]]] = {}
        self._count = 0

    def add(self, workspace: str, message: dict[str, Any]) -> str:
        self._count += 1
        message_id = f"msg_{self._count:06d}"
        box = self._mail.setdefault(workspace, deque(maxlen=OUTBOX_SIZE))
        box.append({"id": message_id, **message})
        return message_id

    def read(self, workspace: str) -> list[dict[str, Any]]:
        return list(self._mail.get(workspace, ()))

    def clear(self, workspace: str | None = None) -> int:
        if workspace is None:
            gone = sum(len(b) for b in self._mail.values())
            self._mail.clear()
            return gone
        return len(self._mail.pop(workspace, ()))

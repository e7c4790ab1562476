"""Turning a JSON path inside the document into words a spec author can act on.

Both the validator step and the `refs` rule find problems by path; the reader thinks in
operations and components, so `locate` names the operation or component a path falls in and
`format_path` prints the rest the way the reader would write it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from opsmerge_sandbox.spec import HTTP_METHODS


def locate(raw: dict[str, Any], parts: tuple[Any, ...]) -> tuple[str, tuple[Any, ...]]:
    """A readable place for a JSON path: its operation or component, and the rest of the path."""
    if len(parts) >= 3 and parts[0] == "paths" and str(parts[2]).lower() in HTTP_METHODS:
        paths = raw.get("paths")
        item = paths.get(parts[1]) if isinstance(paths, dict) else None
        op = item.get(parts[2]) if isinstance(item, dict) else None
        op_id = op.get("operationId") if isinstance(op, dict) else None
        label = f"{str(parts[2]).upper()} {parts[1]}"
        return (f"{label} ({op_id})" if isinstance(op_id, str) else label), parts[3:]
    if len(parts) >= 2 and parts[0] == "paths":
        return f"paths.{parts[1]}", parts[2:]
    if len(parts) >= 3 and parts[0] == "components":
        return f"components.{parts[1]}.{parts[2]}", parts[3:]
    if parts:
        return str(parts[0]), parts[1:]
    return "document", ()


def format_path(parts: Iterable[Any]) -> str:
    """A JSON path such as `$.paths['/clients'].get.responses['200']`."""
    out = "$"
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        elif re.fullmatch(r"[A-Za-z_][A-Za-z0-9_-]*", str(part)):
            out += f".{part}"
        else:
            out += f"[{str(part)!r}]"
    return out

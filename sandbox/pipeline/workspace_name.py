"""The workspace-name rule, in one place: what X-Sandbox-Workspace (and the admin API) accept."""

from __future__ import annotations

import re

from opsmerge_sandbox.errors import ApiError, Detail

WORKSPACE_HEADER = "x-sandbox-workspace"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
RULE = "1-64 letters, digits, '.', '_' or '-', starting with a letter or digit"


def is_workspace_name(value: str) -> bool:
    return bool(_NAME.match(value))


def workspace_name(
    value: str | None, location: str = "header", field: str = "X-Sandbox-Workspace"
) -> str | None:
    """A valid workspace name, None when absent, or a 400 naming where the bad name came from."""
    if value is None:
        return None
    if not _NAME.match(value):
        raise ApiError(
            "HEADER_INVALID" if location == "header" else "VALIDATION_ERROR",
            f"{field} must be {RULE}.",
            [Detail(location, field, f"must be {RULE}")],
        )
    return value

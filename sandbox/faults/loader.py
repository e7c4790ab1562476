"""`serve --faults faults.yaml`: the same rules as `POST /_sandbox/faults`, loaded at start.

The file holds a list of rule requests, or a mapping with that list under `rules`. Each entry is
checked exactly as the control API checks a body, and a bad one stops the start with a message
naming the file, the entry and the field, so a typo never leaves a CI run without its faults.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from opsmerge_sandbox.errors import ApiError
from opsmerge_sandbox.faults.control_endpoints import add_rule
from opsmerge_sandbox.faults.rules import Rule
from opsmerge_sandbox.state import SandboxState
from opsmerge_sandbox.stores import FaultRules
from opsmerge_sandbox.yamlio import load_yaml


class FaultsFileError(ValueError):
    """The faults file cannot be read, or one of its rules is invalid."""


def _entries(data: Any, path: Path) -> list[Any]:
    if data is None:
        return []
    if isinstance(data, dict) and set(data) <= {"rules"}:
        data = data.get("rules") or []
    if not isinstance(data, list):
        raise FaultsFileError(f"{path}: expected a list of rules, or a mapping with a `rules` list")
    return data


def load_faults(path: Path, state: SandboxState, registry: FaultRules) -> list[Rule]:
    """Register every rule of a YAML file; raises FaultsFileError on the first bad one."""
    try:
        entries = _entries(load_yaml(Path(path)), path)
    except (OSError, yaml.YAMLError) as exc:
        raise FaultsFileError(f"{path}: cannot read the faults file: {exc}") from None
    rules = []
    for index, entry in enumerate(entries, start=1):
        if not isinstance(entry, dict):
            raise FaultsFileError(f"{path}: rule {index}: expected a mapping")
        if isinstance(entry.get("expires_at"), datetime):  # YAML reads unquoted timestamps itself
            stamp = entry["expires_at"]
            entry = {
                **entry,
                "expires_at": (stamp if stamp.tzinfo else stamp.replace(tzinfo=UTC)).isoformat(),
            }
        try:
            rules.append(add_rule(state, registry, entry, None))
        except ApiError as err:
            raise FaultsFileError(f"{path}: rule {index}: {err.message}") from None
    return rules


def load_faults_file(state: SandboxState) -> None:
    """The rules of `serve --faults FILE`, loaded once per sandbox (a second app shares them)."""
    if state.settings.faults_file is not None and not state.faults_file_loaded:
        load_faults(state.settings.faults_file, state, state.faults)
        state.faults_file_loaded = True

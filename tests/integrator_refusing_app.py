"""An app factory for `--opsmerge-app`: the sandbox refusing unknown query parameters, strict,
and remembering every exchange that carried one (the journal may be emptied by the suite)."""

from __future__ import annotations

from typing import Any

from opsmerge_sandbox.app import create_app
from opsmerge_sandbox.journal import Entry
from opsmerge_sandbox.settings import Settings

SEEN: list[tuple[str, str, tuple[str, ...]]] = []  # (method, path, unknown names)
BUILT: list[Any] = []  # the apps made, so a test knows the suite used this factory


def create_refusing_app(settings: Settings) -> Any:
    settings.reject_unknown_params = True
    settings.strict = True
    app = create_app(settings)
    journal = app.state.sandbox.journal
    add = journal.add

    def recording(entry: Entry) -> None:
        if entry.unknown_params:
            SEEN.append((entry.method, entry.path, entry.unknown_params))
        add(entry)

    journal.add = recording
    BUILT.append(app)
    return app

"""A startup cache for the prepared spec: parsing and flattening it once per spec version.

Reading the YAML, resolving its references and flattening its schemas takes a few hundred
milliseconds; the result depends only on the spec and catalogue bytes and the code that parses
them. It is pickled under the user's cache directory, keyed by a hash of all of those, so an
edited spec (or parser) is always re-read. Any cache problem falls back to parsing: the cache
can only make start faster, never wrong.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import sandbox

T = TypeVar("T")


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "opsmerge-sandbox"


def cached(sources: list[Path], build: Callable[[], T]) -> T:
    """`build()`, or its pickled result from an earlier run over the same source bytes."""
    if os.environ.get("OPSMERGE_SANDBOX_NO_CACHE"):
        return build()
    digest = hashlib.sha256(f"{sandbox.__version__}:{sys.version}".encode())
    code = [Path(sandbox.__file__).parent / name for name in ("spec.py", "catalogue.py")]
    try:
        for src in [*code, *sources]:  # the code that builds the value is part of its key
            digest.update(src.read_bytes())
    except OSError:
        return build()
    path = cache_dir() / f"spec-{digest.hexdigest()[:32]}.pickle"
    try:
        with path.open("rb") as fh:
            return pickle.load(fh)  # our own cache file, written below
    except (OSError, pickle.PickleError, EOFError, AttributeError, ImportError):
        pass
    value = build()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".spec-")
        with os.fdopen(fd, "wb") as fh:
            pickle.dump(value, fh, protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(tmp, path)
    except OSError:
        pass
    return value

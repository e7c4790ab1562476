"""A startup cache for what depends only on inputs that rarely change: the spec and the world.

Parsing and flattening the spec takes a few hundred milliseconds, and so does generating the
default world; both are pure functions of their input bytes and the code that builds them. The
results are pickled under the user's cache directory, keyed by a hash of all of those, so an
edited spec, recipe or generator is always rebuilt. Any cache problem falls back to building:
the cache can only make start faster, never wrong.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import sys
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TypeVar

import opsmerge_sandbox as sandbox

T = TypeVar("T")
PACKAGE = Path(sandbox.__file__).parent
KEEP = 6  # cached entries kept per kind


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "opsmerge-sandbox"


def code_bytes(*relative: str) -> list[bytes]:
    """The source of the modules that build a cached value: part of its key."""
    out = []
    for rel in relative:
        path = PACKAGE / rel
        files = sorted(path.glob("*.py")) if path.is_dir() else [path]
        out += [f.read_bytes() for f in files]
    return out


def cached(name: str, parts: Iterable[bytes], build: Callable[[], T]) -> T:
    """`build()`, or its pickled result from an earlier run over the same key parts."""
    if os.environ.get("OPSMERGE_SANDBOX_NO_CACHE"):
        return build()
    digest = hashlib.sha256(f"{sandbox.__version__}:{sys.version}".encode())
    try:
        for part in parts:
            digest.update(hashlib.sha256(part).digest())
    except OSError:
        return build()
    path = cache_dir() / f"{name}-{digest.hexdigest()[:32]}.pickle"
    try:
        with path.open("rb") as fh:
            return pickle.load(fh)  # our own cache file, written below
    except (OSError, pickle.PickleError, EOFError, AttributeError, ImportError):
        pass
    value = build()
    tmp: str | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{name}-")
        with os.fdopen(fd, "wb") as fh:
            pickle.dump(value, fh, protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(tmp, path)
        tmp = None
        _prune(name)
    except (OSError, pickle.PicklingError, TypeError, AttributeError):
        pass  # a full disk or a value pickle cannot take: served as built, just not saved
    finally:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
    return value


def _prune(name: str, keep: int = KEEP) -> None:
    """Keep only the newest few entries of a kind, so edits do not fill the disk."""
    entries = sorted(cache_dir().glob(f"{name}-*.pickle"), key=lambda p: p.stat().st_mtime)
    for old in entries[:-keep]:
        old.unlink(missing_ok=True)

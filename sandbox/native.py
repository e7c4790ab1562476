"""The request path's own modules compiled by mypyc, used only when built from these sources.

Why: most of what a request costs past the server is the interpreter's own work (frames,
attribute and global lookups, calls), not the dictionaries and encoders it drives. The same
modules compiled by mypyc run the same code with less of it: a create in process costs ~27%
less time, a get ~20% (benchmarks/README.md, "Compiled modules").

How a stale build is never run:

- `make native` (`main(["build"])`) compiles `COMPILED` into `_native/` beside this file, with
  a manifest holding the digest of every source file of the package;
- at import, the package serves those extension modules (a finder ahead of the others) only
  when the digest is the sources' own and the interpreter's ABI is the build's. A source edited
  since runs as written, interpreted, until the next build;
- `OPSMERGE_SANDBOX_NATIVE=0` runs everything interpreted. Tests that replace a module's
  functions to count calls run that way (compiled modules call each other directly).
"""

from __future__ import annotations

import hashlib
import importlib.abc
import importlib.machinery
import importlib.util
import json
import os
import sys
from collections.abc import Sequence
from importlib.machinery import ModuleSpec
from pathlib import Path
from types import ModuleType

PACKAGE = "opsmerge_sandbox"
PACKAGE_DIR = Path(__file__).resolve().parent
BUILT = "_native"
MANIFEST = "manifest.json"
SWITCH = "OPSMERGE_SANDBOX_NATIVE"

# What a request runs, by module (relative to the package). Left interpreted: the API lane (a
# mixin of uvicorn's protocol class), the rule engine (an async generator), the shared-state
# stages (their cross-worker tests fail compiled) and whatever defines Litestar handlers.
COMPILED: tuple[str, ...] = (
    "clock",
    "pipeline.address",
    "pipeline.audit",
    "pipeline.authenticate",
    "pipeline.authorize",
    "pipeline.commit",
    "pipeline.dependents",
    "pipeline.dispatch",
    "pipeline.envelope",
    "pipeline.faults",
    "pipeline.handle",
    "pipeline.headers",
    "pipeline.key_use",
    "pipeline.live_times",
    "pipeline.ratelimit",
    "pipeline.read_request",
    "pipeline.record_exchange",
    "pipeline.record_invariants",
    "pipeline.record_rules",
    "pipeline.resolve_workspace",
    "pipeline.resources",
    "pipeline.respond",
    "pipeline.runner",
    "pipeline.sequences",
    "pipeline.state_guards",
    "pipeline.sunset",
    "pipeline.validate",
    "store.base",
    "store.kept_order",
    "store.workspace",
    "world.computed_fields",
    "world.conditions",
    "world.invariants",
)

# why the compiled modules are not in use, or "on"; set once by `install`
state = "not checked"


def sources_digest(package_dir: Path = PACKAGE_DIR) -> str:
    """One digest of every Python source of the package and the list compiled from it: a
    compiled module assumes the types of the modules it imports, so any change invalidates all."""
    h = hashlib.blake2b(digest_size=20)
    h.update("\n".join(COMPILED).encode())
    for path in sorted(package_dir.rglob("*.py")):
        rel = path.relative_to(package_dir)
        if rel.parts[0].startswith(BUILT) or "__pycache__" in rel.parts:
            continue
        h.update(rel.as_posix().encode() + b"\0")
        h.update(path.read_bytes())
    return h.hexdigest()


def _abi() -> str:
    return importlib.machinery.EXTENSION_SUFFIXES[0]


class _Finder(importlib.abc.MetaPathFinder):
    """Finds the built extension modules by their full names, ahead of the sources."""

    def __init__(self, files: dict[str, Path]) -> None:
        self.files = files

    def find_spec(
        self,
        fullname: str,
        path: Sequence[str] | None = None,
        target: ModuleType | None = None,
    ) -> ModuleSpec | None:
        where = self.files.get(fullname)
        if where is None:
            return None
        loader = importlib.machinery.ExtensionFileLoader(fullname, str(where))
        return importlib.util.spec_from_file_location(fullname, where, loader=loader)


def install(package_dir: Path = PACKAGE_DIR) -> str:
    """Serve the compiled modules when they were built from exactly these sources for this
    interpreter; returns (and keeps in `state`) "on" or why not."""
    global state
    state, files = usable(package_dir)
    if files and not any(isinstance(f, _Finder) for f in sys.meta_path):
        sys.meta_path.insert(0, _Finder(files))
    return state


def usable(package_dir: Path) -> tuple[str, dict[str, Path]]:
    """("on", the built modules by full name), or (why not, nothing)."""
    if os.environ.get(SWITCH, "1").strip().lower() in {"0", "off", "false", "no"}:
        return f"off ({SWITCH}=0)", {}
    built = package_dir / BUILT
    try:
        manifest = json.loads((built / MANIFEST).read_text())
    except (OSError, ValueError):
        return "off (not built: make builds them)", {}
    if manifest.get("abi") != _abi():
        return "off (built for another interpreter)", {}
    if manifest.get("sources") != sources_digest(package_dir):
        return "off (sources changed since the build: make builds them again)", {}
    files = {name: built / file for name, file in manifest.get("modules", {}).items()}
    if not all(path.is_file() for path in files.values()):
        return "off (a built module is missing)", {}
    return "on", files


# ---------------------------------------------------------------------- build

_SETUP = """
import sys
from mypyc.build import mypycify
from setuptools import setup
paths = sys.argv[1:]
setup(
    name="opsmerge-sandbox-native",
    ext_modules=mypycify(["--ignore-missing-imports", *paths], opt_level="3"),
    script_args=["--quiet", "build_ext", "--inplace"],
)
"""


def build(package_dir: Path = PACKAGE_DIR) -> Path:
    """Compile `COMPILED` from a copy of the package's sources into `_native/`, replacing what
    was there only once the whole build succeeded."""
    import shutil
    import subprocess
    import tempfile

    digest = sources_digest(package_dir)
    with tempfile.TemporaryDirectory(prefix="native-") as tmp:
        root = Path(tmp)
        copy = root / PACKAGE
        shutil.copytree(
            package_dir,
            copy,
            ignore=shutil.ignore_patterns("__pycache__", BUILT, "*.so", "static", "openapi"),
        )
        paths = [f"{PACKAGE}/{m.replace('.', '/')}.py" for m in COMPILED]
        env = {**os.environ, SWITCH: "0"}
        subprocess.run([sys.executable, "-c", _SETUP, *paths], cwd=root, env=env, check=True)
        fresh = Path(tempfile.mkdtemp(prefix=f"{BUILT}.", dir=package_dir))
        modules: dict[str, str] = {}
        suffix = _abi()
        for so in root.rglob(f"*{suffix}"):
            if "build" in so.relative_to(root).parts:  # setuptools' copies of the same files
                continue
            if so.parent == root:  # the group module every shim imports, top-level
                name = so.name[: -len(suffix)]
            else:
                rel = so.relative_to(root).with_suffix("").with_suffix("")
                name = ".".join(rel.parts)
            shutil.copy2(so, fresh / f"{name}{suffix}")
            modules[name] = f"{name}{suffix}"
        missing = {f"{PACKAGE}.{m}" for m in COMPILED} - modules.keys()
        if missing:
            shutil.rmtree(fresh)
            raise SystemExit(f"the build made no module for {sorted(missing)}")
        manifest = {"sources": digest, "abi": suffix, "modules": modules}
        (fresh / MANIFEST).write_text(json.dumps(manifest, indent=1, sort_keys=True))
    target = package_dir / BUILT
    old = package_dir / f"{BUILT}.old"
    shutil.rmtree(old, ignore_errors=True)
    if target.exists():
        target.rename(old)
    fresh.rename(target)
    shutil.rmtree(old, ignore_errors=True)
    return target


def main(argv: Sequence[str] | None = None) -> None:
    import argparse

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    sub = p.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build", help="compile the modules (needs mypy and a C compiler)")
    b.add_argument("--package-dir", type=Path, default=PACKAGE_DIR)
    b.add_argument("--if-stale", action="store_true", help="only when the sources changed")
    sub.add_parser("status", help="whether the compiled modules are in use, or why not")
    args = p.parse_args(argv)
    if args.command == "status":
        print(state)
        return
    package_dir = args.package_dir.resolve()
    if args.if_stale and usable(package_dir)[0] == "on":
        return
    print(f"compiled {len(COMPILED)} modules into {build(package_dir)}")

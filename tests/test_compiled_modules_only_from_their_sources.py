"""The request path's compiled modules are used only when built from the sources beside them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from opsmerge_sandbox import native

ROOT = Path(__file__).resolve().parent.parent


def _package(tmp_path: Path) -> Path:
    """A package of two sources, built: its manifest names their digest and one module file."""
    pkg = tmp_path / "pkg"
    (pkg / "pipeline").mkdir(parents=True)
    (pkg / "clock.py").write_text("NOW = 1\n")
    (pkg / "pipeline" / "resources.py").write_text("X = 2\n")
    built = pkg / native.BUILT
    built.mkdir()
    module = f"{native.PACKAGE}.clock{native._abi()}"
    (built / module).write_bytes(b"\x7fELF")
    manifest = {
        "sources": native.sources_digest(pkg),
        "abi": native._abi(),
        "modules": {f"{native.PACKAGE}.clock": module},
    }
    (built / native.MANIFEST).write_text(json.dumps(manifest))
    return pkg


def test_a_build_of_these_very_sources_is_used(tmp_path: Path) -> None:
    pkg = _package(tmp_path)
    state, files = native.usable(pkg)
    assert state == "on"
    name = f"{native.PACKAGE}.clock"
    assert files == {name: pkg / native.BUILT / f"{name}{native._abi()}"}


def test_a_source_edited_after_the_build_turns_every_compiled_module_off(tmp_path: Path) -> None:
    pkg = _package(tmp_path)
    (pkg / "pipeline" / "resources.py").write_text("X = 3\n")  # not itself a compiled one
    state, files = native.usable(pkg)
    assert (state, files) == ("off (sources changed since the build: make builds them again)", {})


def test_a_new_source_turns_them_off_too(tmp_path: Path) -> None:
    pkg = _package(tmp_path)
    (pkg / "pipeline" / "added.py").write_text("")
    assert native.usable(pkg)[0].startswith("off (sources changed")


def test_no_build_another_interpreters_build_or_a_missing_file_is_not_used(tmp_path: Path) -> None:
    pkg = _package(tmp_path)
    manifest_path = pkg / native.BUILT / native.MANIFEST
    manifest = json.loads(manifest_path.read_text())
    manifest_path.write_text(json.dumps({**manifest, "abi": ".cpython-39-x86_64-linux-gnu.so"}))
    assert native.usable(pkg) == ("off (built for another interpreter)", {})
    manifest_path.write_text(json.dumps(manifest))
    next((pkg / native.BUILT).glob(f"*{native._abi()}")).unlink()
    assert native.usable(pkg) == ("off (a built module is missing)", {})
    manifest_path.unlink()
    assert native.usable(pkg) == ("off (not built: make builds them)", {})


def test_the_switch_turns_a_good_build_off(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pkg = _package(tmp_path)
    monkeypatch.setenv(native.SWITCH, "0")
    assert native.usable(pkg) == (f"off ({native.SWITCH}=0)", {})


def test_the_digest_covers_every_source_of_the_package_but_not_the_build(tmp_path: Path) -> None:
    pkg = _package(tmp_path)
    before = native.sources_digest(pkg)
    (pkg / native.BUILT / "extra.py").write_text("")  # inside the build: not a source
    (pkg / "pipeline" / "__pycache__").mkdir()
    (pkg / "pipeline" / "__pycache__" / "x.py").write_text("")
    assert native.sources_digest(pkg) == before
    (pkg / "clock.py").write_text("NOW = 2\n")
    assert native.sources_digest(pkg) != before


def test_a_fresh_build_is_what_a_request_runs() -> None:
    """In a process started now: the modules `COMPILED` names come from the build exactly when
    the build is fresh, and from their sources otherwise (or with the switch off)."""
    script = (
        "import json, sys, opsmerge_sandbox.app, opsmerge_sandbox.native as n; "
        "print(json.dumps([n.state, {m: sys.modules[f'opsmerge_sandbox.{m}'].__file__ "
        "for m in n.COMPILED}]))"
    )
    env = {k: v for k, v in os.environ.items() if k != native.SWITCH}
    for switch in ("1", "0"):
        out = subprocess.run(
            [sys.executable, "-c", script],
            capture_output=True,
            text=True,
            check=True,
            env={**env, native.SWITCH: switch},
            cwd=ROOT,
        )
        state, files = json.loads(out.stdout)
        fresh = switch == "1" and native.usable(native.PACKAGE_DIR)[0] == "on"
        assert (state == "on") is fresh
        # (a module another compiled one imports first names its file within the build too)
        from_build = {m for m, f in files.items() if native.BUILT in Path(f).parts}
        assert from_build == (set(native.COMPILED) if fresh else set())
        assert all(f.endswith(".py") for m, f in files.items() if m not in from_build)

"""Install and launch Stoplight Prism, the mock server the sandbox is measured against.

Prism goes into `.bench/prism` (gitignored) with npm, once. It is started with `-v error`
because its per-request logging costs a third of its speed and would make the comparison unfair.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import tooling

PACKAGE = "@stoplight/prism-cli"


def prism_bin(prefix: Path) -> Path:
    return prefix / "node_modules" / ".bin" / "prism"


def ensure_prism(prefix: Path, log: Path) -> tuple[Path | None, str]:
    """Return Prism's executable, installing it on first use; `(None, reason)` when impossible."""
    binary = prism_bin(prefix)
    if binary.exists():
        return binary, "already installed"
    npm = shutil.which("npm")
    if not npm or not shutil.which("node"):
        return None, "node/npm not found (apt-get install nodejs npm)"
    if tooling.npm_install(npm, prefix, PACKAGE, log, binary.exists):
        return binary, "installed"
    return None, f"npm install {PACKAGE} failed; see {log}"


def prism_command(binary: Path, spec: Path, port: int, *, dynamic: bool) -> list[str]:
    """Prism's mock server on 127.0.0.1 only, static examples or (`dynamic`) generated ones."""
    cmd = [str(binary), "mock", "-p", str(port), "-h", "127.0.0.1", "-v", "error"]
    if dynamic:
        cmd.append("-d")
    return [*cmd, str(spec)]

"""Install and launch WireMock, the mock server users pick for speed, with static stubs.

The `wiremock` npm package ships WireMock's standalone jar; it goes into `.bench/wiremock`
(gitignored) with npm, once, and runs on the machine's Java (Debian's JRE: `default-jre-headless`).
Every stub answers with the exact bytes, status and content type the sandbox sent for that path,
so both sides move the same bytes. WireMock is started the way one tunes it for a load test: no
request journal, no request logging, no banner, no gzip, no response templating, no extension
scanning, and Content-Length instead of chunked bodies (as the sandbox answers).
"""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import tooling

PACKAGE = "wiremock"
JRE_PACKAGE = "default-jre-headless"
# Jetty's request threads: 64 keep-alive connections only hold a thread while a request is being
# served, and on one core more threads than this only add switching. WireMock's default is 25.
CONTAINER_THREADS = 25


def find_jar(prefix: Path) -> Path | None:
    """The standalone jar inside the npm package, if installed."""
    jars = sorted((prefix / "node_modules" / PACKAGE / "build").glob("wiremock-standalone-*.jar"))
    return jars[-1] if jars else None


def _java() -> str | None:
    return shutil.which("java")


def ensure_java(log: Path) -> str | None:
    """The `java` binary, installing Debian's headless JRE once when it is missing."""
    if _java() is None and shutil.which("apt-get"):
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("ab") as out:
            subprocess.run(
                "apt-get update -qq && DEBIAN_FRONTEND=noninteractive "
                f"apt-get install -y -qq {JRE_PACKAGE}",
                shell=True, check=False, timeout=900, stdout=out, stderr=subprocess.STDOUT,
            )
    return _java()


def ensure_wiremock(prefix: Path, log: Path) -> tuple[tuple[str, Path] | None, str]:
    """`(java, jar)`, installing the npm package on first use; `(None, reason)` when impossible."""
    java = ensure_java(log)
    if java is None:
        return None, f"java not found (apt-get install {JRE_PACKAGE})"
    jar = find_jar(prefix)
    if jar is not None:
        return (java, jar), "already installed"
    npm = shutil.which("npm")
    if not npm:
        return None, "npm not found (apt-get install npm)"
    if tooling.npm_install(npm, prefix, PACKAGE, log, lambda: find_jar(prefix) is not None):
        jar = find_jar(prefix)
        assert jar is not None
        return (java, jar), "installed"
    return None, f"npm install {PACKAGE} failed; see {log}"


def stub_mapping(method: str, path: str, status: int, content_type: str,
                 body: bytes) -> dict[str, Any]:
    """One static stub: matched on method and path (any query), answering fixed bytes.

    UTF-8 bodies (the sandbox's JSON) go in as text, which WireMock sends as those very UTF-8
    bytes and serves faster than a base64 body; anything else goes in as base64."""
    response: dict[str, Any] = {"status": status, "headers": {"Content-Type": content_type}}
    try:
        response["body"] = body.decode("utf-8")
    except UnicodeDecodeError:
        response["base64Body"] = base64.b64encode(body).decode("ascii")
    return {"request": {"method": method, "urlPath": path}, "response": response}


def write_stubs(root: Path, stubs: Mapping[str, Mapping[str, Any]]) -> list[Path]:
    """Write `root/mappings/*.json` from {path: {"method", "status", "content_type", "body"}},
    replacing any stubs a previous run left there."""
    mappings = root / "mappings"
    if mappings.exists():
        shutil.rmtree(mappings)
    mappings.mkdir(parents=True)
    (root / "__files").mkdir(exist_ok=True)
    written = []
    for i, (path, stub) in enumerate(sorted(stubs.items())):
        body = stub["body"]
        mapping = stub_mapping(str(stub.get("method", "GET")), path, int(stub["status"]),
                               str(stub["content_type"]),
                               body if isinstance(body, bytes) else str(body).encode())
        target = mappings / f"stub-{i:02d}.json"
        target.write_text(json.dumps(mapping, indent=2) + "\n")
        written.append(target)
    return written


def wiremock_command(java: str, jar: Path, root: Path, port: int,
                     container_threads: int = CONTAINER_THREADS) -> list[str]:
    """WireMock on 127.0.0.1 only, serving `root`'s stubs, tuned for a load test."""
    return [
        java, "-jar", str(jar),
        "--bind-address", "127.0.0.1", "--port", str(port), "--root-dir", str(root),
        "--no-request-journal", "--disable-request-logging", "--disable-banner",
        "--disable-gzip", "--disable-response-templating", "--disable-extensions-scanning",
        "--use-chunked-encoding", "never",
        "--container-threads", str(container_threads),
    ]

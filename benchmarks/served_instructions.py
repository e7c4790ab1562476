"""What one API request costs the server process when served over loopback, in CPU instructions.

`per_request.py` counts the app alone, in process; this counts everything the server process
runs for a request: the loop, the HTTP protocol, the way into the app and the app. The server
runs under valgrind's callgrind with the sandbox's own server options (`uvicorn_options`); the
client is a child process that callgrind does not follow (16 keep-alive connections, one
request at a time on each), so only the server is counted. Two run lengths, so start-up
cancels out; repeatable to about 1% on the same machine whatever else it is doing, unlike
requests a second on a shared one.

    .venv/bin/python benchmarks/served_instructions.py [--root DIR] [--cases get,list,create]
        [--floor] [--durable]

`--root` measures another checkout (for example `git worktree add /tmp/before HEAD~1`).
`--floor` also counts the bare-Litestar floor of `make bench` (`floor_app.py`, one constant answer)
on the same server settings, and prints the floor's count as a share of the sandbox's: the
instructions side of "create >= 60% of the Litestar floor" (the rate side adds what the count
cannot see: cache and TLB misses, branch mispredictions, the kernel).
`--durable` serves with a fresh `--data-dir`, so a create's count includes what making it durable
costs every thread of the process (the commit's encoding, the writer thread, the batch's
completion, the wait), at the batches 16 connections make.
"""

from __future__ import annotations

import argparse
import gc
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import tooling

KEY = "Bearer om_sbx_owner_full_pG5aQxpYERgXwi9iPGPE2lWARD"
CASES = {
    "get": ("GET", "/api/v1/agents/agt_acmesrv01", ""),
    "list": ("GET", "/api/v1/agents?per_page=50", ""),
    "create": ("POST", "/api/v1/tickets", '{"subject": "Bench", "client_id": "cli_acme"}'),
}
CONNECTIONS = 16


def _client(port: int, case: str, n: int) -> None:
    """Send `n` requests over CONNECTIONS connections and check every answer is a 2xx."""
    method, target, body = CASES[case]
    head = f"{method} {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: {KEY}\r\n"
    if body:
        head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
    raw = (head + "\r\n" + body).encode()
    failed: list[bytes] = []

    def one_connection(count: int) -> None:
        with socket.create_connection(("127.0.0.1", port)) as sock:
            buf = b""
            for _ in range(count):
                sock.sendall(raw)
                while True:
                    end = buf.find(b"\r\n\r\n")
                    if end >= 0:
                        fields = buf[:end].lower()
                        at = fields.find(b"content-length:")
                        length = int(fields[at + 15 :].split(b"\r\n", 1)[0])
                        if len(buf) >= end + 4 + length:
                            if not buf.startswith(b"HTTP/1.1 2"):
                                failed.append(buf[:80])
                            buf = buf[end + 4 + length :]
                            break
                    buf += sock.recv(65536)

    threads = [
        threading.Thread(target=one_connection, args=(n // CONNECTIONS,))
        for _ in range(CONNECTIONS)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if failed:
        raise SystemExit(f"{case} answered {failed[:3]}")


def _serve(root: Path, case: str, n: int, floor: bool = False, durable: bool = False) -> None:
    """The counted process: the sandbox served as `serve` serves it (or the floor, on the same
    server settings), until the client is done."""
    sys.path.insert(0, str(root))
    import uvicorn

    from opsmerge_sandbox.connection_limits import resolve_limits, uvicorn_options

    app: Any
    data_dir: Path | None = None
    if floor:
        import floor_app

        app = floor_app.make_app()
    else:
        from opsmerge_sandbox.app import create_app
        from opsmerge_sandbox.settings import Settings

        data_dir = Path(tempfile.mkdtemp(prefix="served-instructions-")) if durable else None
        app = create_app(Settings(rate_limit=10**9, data_dir=data_dir))
    gc.collect()
    gc.freeze()  # as `serve` does
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        app, access_log=False, log_level="warning", lifespan="on", server_header=False,
        proxy_headers=False, **uvicorn_options(resolve_limits(False)),
    )  # fmt: skip
    server = uvicorn.Server(config)
    failed: list[int] = []

    def drive() -> None:
        while not server.started:
            time.sleep(0.01)
        client = [sys.executable, __file__, "--client", str(port), case, str(n)]
        done = subprocess.run(client, check=False)
        if done.returncode:
            failed.append(done.returncode)
        server.should_exit = True

    threading.Thread(target=drive, daemon=True).start()
    server.run(sockets=[sock])
    if data_dir is not None:
        shutil.rmtree(data_dir, ignore_errors=True)
    if failed:
        raise SystemExit("the client failed: this run counts nothing")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--root", type=Path, default=Path(__file__).resolve().parent.parent)
    p.add_argument("--cases", default="get,list,create")
    p.add_argument("--floor", action="store_true", help="count the Litestar floor too")
    p.add_argument("--durable", action="store_true",
                   help="serve with a data directory (fsynced writes)")
    p.add_argument("--one", nargs=2, metavar=("CASE", "N"), help=argparse.SUPPRESS)
    p.add_argument("--one-floor", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--client", nargs=3, metavar=("PORT", "CASE", "N"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.client:
        _client(int(args.client[0]), args.client[1], int(args.client[2]))
        return
    if args.one:
        _serve(args.root, args.one[0], int(args.one[1]), args.one_floor, args.durable)
        return
    cases = args.cases.split(",")
    for case in cases:
        if case not in CASES:
            p.error(f"unknown case {case!r}: give some of {', '.join(CASES)}")
    if shutil.which("valgrind") is None:
        raise SystemExit("valgrind is not installed (apt-get install valgrind)")
    env = tooling.private_cache_env(args.root, "served-instructions")
    for case in cases:
        cmd = [sys.executable, __file__, "--root", str(args.root),
               *(["--durable"] if args.durable else []), "--one", case]
        subprocess.run([*cmd, str(CONNECTIONS)], check=True, env=env)  # warms the start cache
        per_request = tooling.instructions_per_unit(cmd, env, 208, 1200)
        print(f"{case:6} {per_request:10.0f} instructions/request served")
        if args.floor:
            floor_cmd = [*cmd[:-2], "--one-floor", "--one", case]
            floor = tooling.instructions_per_unit(floor_cmd, env, 208, 1200)
            print(f"{case:6} {floor:10.0f} instructions/request served by the Litestar floor "
                  f"({floor / per_request:.1%} of the sandbox's)")


if __name__ == "__main__":
    main()

"""A data directory the store cannot use stops `serve` at once: one line naming it, exit code 2.

Each case runs the real command line, because what users see is the process: a traceback, or a
sandbox that starts and then answers 500 to every request touching a damaged record, is the
failure these tests guard against.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import ADMIN_TOKEN, free_port

CLI = str(Path(sys.executable).parent / "opsmerge-sandbox")
ENV = {**os.environ, "OPSMERGE_SANDBOX_ADMIN_TOKEN": ADMIN_TOKEN}


def _serve(data_dir: Path, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run `serve` on the data dir; a sandbox that starts anyway is stopped and reported."""
    port = free_port()
    cmd = [CLI, "serve", "--data-dir", str(data_dir), "--port", str(port)]
    proc = subprocess.Popen(
        cmd, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        pytest.fail(f"serve did not refuse {data_dir}: it kept running; stderr: {err[-2000:]}")
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


def _assert_refused(data_dir: Path, named: Path, problem: str) -> None:
    result = _serve(data_dir)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert str(named) in lines[0], lines[0]
    assert problem in lines[0], lines[0]


def _store(tmp_path: Path, document: Any) -> Path:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    (data_dir / "delta.json").write_text(json.dumps(document))
    return data_dir


_MISSING = object()  # a field value that means "leave the field out"


def _doc(**changes: Any) -> dict[str, Any]:
    """A well-formed stored change (a client a client created), with some fields changed."""
    doc = {
        "collection": "clients",
        "id": "cli_stored",
        "record": {"id": "cli_stored", "name": "Stored Ltd"},
        "created": True,
        "seq": 301,
    }
    doc.update(changes)
    return {k: v for k, v in doc.items() if v is not _MISSING}


@contextlib.contextmanager
def _unwritable_dir(path: Path) -> Iterator[str]:
    """A directory on which file creation really fails for this user (root included)."""
    path.mkdir()
    if os.geteuid() != 0:
        path.chmod(0o500)
        try:
            yield "permission bits"
        finally:
            path.chmod(0o700)
        return
    if shutil.which("chattr"):
        made = subprocess.run(["chattr", "+i", str(path)], capture_output=True)
        if made.returncode == 0:
            try:
                yield "immutable attribute"
            finally:
                subprocess.run(["chattr", "-i", str(path)], check=False)
            return
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", str(path)], capture_output=True
    )
    if mounted.returncode != 0:
        pytest.skip(
            "running as root without chattr +i or mount: no directory here refuses root's writes"
        )
    try:
        yield "read-only mount"
    finally:
        subprocess.run(["umount", str(path)], check=False)


def test_a_data_directory_that_takes_no_writes_stops_the_start(tmp_path: Path) -> None:
    data_dir = tmp_path / "locked"
    with _unwritable_dir(data_dir):
        probe = data_dir / "probe"
        with pytest.raises(OSError):  # the fixture's promise: writes really fail here
            probe.write_text("x")
        _assert_refused(data_dir, data_dir, "does not take writes")


def test_a_data_directory_that_is_a_file_stops_the_start(tmp_path: Path) -> None:
    path = tmp_path / "plain-file"
    path.write_text("not a directory")
    _assert_refused(path, path, "not a directory")


def test_a_data_directory_under_a_file_stops_the_start(tmp_path: Path) -> None:
    (tmp_path / "plain-file").write_text("not a directory")
    path = tmp_path / "plain-file" / "data"
    _assert_refused(path, path, "Not a directory")


def test_a_directory_in_place_of_the_store_file_stops_the_start(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    (data_dir / "delta.json").mkdir(parents=True)
    _assert_refused(data_dir, data_dir / "delta.json", "is a directory")


def test_a_store_file_that_is_not_json_stops_the_start(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    (data_dir / "delta.json").write_text('{"ws:default:01": {"1": ')
    _assert_refused(data_dir, data_dir / "delta.json", "not valid JSON")


def test_a_store_file_holding_a_list_stops_the_start(tmp_path: Path) -> None:
    data_dir = _store(tmp_path, [_doc()])
    _assert_refused(data_dir, data_dir / "delta.json", "holds an array, not an object of tables")


def test_a_table_that_is_not_an_object_of_documents_stops_the_start(tmp_path: Path) -> None:
    data_dir = _store(tmp_path, {"ws:default:01": [_doc()]})
    _assert_refused(data_dir, data_dir / "delta.json", "'ws:default:01' is an array")


def test_a_document_that_is_not_an_object_stops_the_start(tmp_path: Path) -> None:
    data_dir = _store(tmp_path, {"ws:default:01": {"1": "cli_stored"}})
    _assert_refused(data_dir, data_dir / "delta.json", "it is a string, not an object")


def test_a_record_that_is_a_string_stops_the_start(tmp_path: Path) -> None:
    data_dir = _store(tmp_path, {"ws:default:01": {"1": _doc(record="Stored Ltd")}})
    _assert_refused(data_dir, data_dir / "delta.json", "'record' is a string")


def test_a_sequence_number_that_is_not_an_integer_stops_the_start(tmp_path: Path) -> None:
    data_dir = _store(tmp_path, {"ws:default:01": {"1": _doc(seq="301")}})
    _assert_refused(data_dir, data_dir / "delta.json", "'seq' is a string, not a positive integer")


def test_a_document_missing_a_field_stops_the_start(tmp_path: Path) -> None:
    data_dir = _store(tmp_path, {"ws:default:01": {"1": _doc(created=_MISSING)}})
    _assert_refused(data_dir, data_dir / "delta.json", "lacks 'created'")


def test_a_record_whose_id_differs_from_its_document_stops_the_start(tmp_path: Path) -> None:
    record = {"id": "cli_other", "name": "Stored Ltd"}
    data_dir = _store(tmp_path, {"ws:default:01": {"1": _doc(record=record)}})
    _assert_refused(data_dir, data_dir / "delta.json", "'cli_other' is not the document's id")


def test_a_document_in_the_wrong_shard_stops_the_start(tmp_path: Path) -> None:
    # document ids pick their table; one in another table would be written twice under one id
    data_dir = _store(tmp_path, {"ws:default:02": {"1": _doc()}})
    _assert_refused(data_dir, data_dir / "delta.json", "belongs to another shard")


def _starts(data_dir: Path) -> bool:
    """Whether `serve` comes up on the data dir (it is stopped again either way)."""
    port = free_port()
    cmd = [CLI, "serve", "--data-dir", str(data_dir), "--port", str(port)]
    proc = subprocess.Popen(cmd, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=0.5).is_success:
                    return True
            except httpx.HTTPError:
                time.sleep(0.1)
        return False
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.mark.parametrize("content", [None, "", " \n"], ids=["missing", "empty", "blank"])
def test_a_missing_or_empty_store_file_is_a_fresh_store(
    tmp_path: Path, content: str | None
) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    if content is not None:
        (data_dir / "delta.json").write_text(content)
    assert _starts(data_dir)


def test_a_well_formed_store_file_starts(tmp_path: Path) -> None:
    """The checks refuse damage only: the document the other cases spoil is accepted as is."""
    assert _starts(_store(tmp_path, {"ws:default:01": {"1": _doc()}}))


def _log_line(**changes: Any) -> bytes:
    doc = _doc(**changes)
    change = [doc["collection"], doc["id"], doc["record"], doc["created"], doc["seq"]]
    return json.dumps({"ws": "default", "changes": [change]}).encode() + b"\n"


def test_a_damaged_line_inside_the_change_log_stops_the_start(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    (data_dir / "delta.log").write_bytes(b'{"ws": "default", "chan\n' + _log_line())
    _assert_refused(data_dir, data_dir / "delta.log", "line 1 is not a JSON commit")


def test_a_change_log_line_of_the_wrong_shape_stops_the_start(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    (data_dir / "delta.log").write_bytes(_log_line() + _log_line(seq=0) + _log_line())
    _assert_refused(data_dir, data_dir / "delta.log", "line 2: a change of 'cli_stored'")


def test_a_torn_last_line_of_the_change_log_is_dropped_and_the_sandbox_starts(
    tmp_path: Path,
) -> None:
    """A crash in the middle of an append tears the last line only: that write was never
    answered, so the start drops it and keeps the rest."""
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    torn = _log_line(id="cli_torn", record={"id": "cli_torn"})[:40]
    (data_dir / "delta.log").write_bytes(_log_line() + torn)
    assert _starts(data_dir)
    stored = json.loads((data_dir / "delta.json").read_text())
    assert [d["id"] for t in stored.values() for d in t.values()] == ["cli_stored"]

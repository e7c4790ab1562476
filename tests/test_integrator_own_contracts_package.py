"""An integrator's project with a `contracts` package of its own still loads the plugin.

The sandbox and the harness install as `opsmerge_sandbox` and `opsmerge_contracts` (from the
`sandbox/` and `contracts/` folders), so a project's own `contracts` or `sandbox` package can no
longer shadow them: pytest used to stop with `Error while loading plugin "pytest11"` and exit 3.
The project is a scratch directory, run with the project's own pytest in a subprocess.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

MINE = '''\
from contracts import THING
from sandbox import OTHER


def test_my_own_packages_and_the_sandbox_fixture(opsmerge_sandbox):
    assert (THING, OTHER) == ("mine", "also mine")
    key = opsmerge_sandbox.keys.owner.key
    import httpx

    with httpx.Client(
        base_url=opsmerge_sandbox.base_url,
        transport=opsmerge_sandbox.transport,
        headers={"Authorization": f"Bearer {key}"},
    ) as client:
        assert client.get("/agents").status_code == 200
'''


def test_a_project_with_its_own_contracts_and_sandbox_packages_runs_its_tests(
    tmp_path: Path,
) -> None:
    (tmp_path / "contracts").mkdir()
    (tmp_path / "contracts" / "__init__.py").write_text('THING = "mine"\n')
    (tmp_path / "sandbox").mkdir()
    (tmp_path / "sandbox" / "__init__.py").write_text('OTHER = "also mine"\n')
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "test_mine.py").write_text(MINE)
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    output = done.stdout + done.stderr
    assert "Error while loading plugin" not in output, output[-3000:]
    assert done.returncode == 0, output[-3000:]
    assert "1 passed" in output


def test_the_installed_import_names_cannot_clash() -> None:
    import opsmerge_contracts.plugin
    import opsmerge_sandbox.cli

    assert opsmerge_sandbox.cli.main is not None and opsmerge_contracts.plugin.SUITE_PATH.exists()
    from importlib.metadata import entry_points

    plugins = {e.name: e.value for e in entry_points(group="pytest11")}
    assert plugins.get("opsmerge") == "opsmerge_contracts.plugin"
    scripts = {e.name: e.value for e in entry_points(group="console_scripts")}
    assert scripts.get("opsmerge-sandbox") == "opsmerge_sandbox.cli:main"

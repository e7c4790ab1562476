"""The harness's README keeps up with the code: every check id and every option is documented."""

from __future__ import annotations

from pathlib import Path

import opsmerge_contracts as contracts
from opsmerge_contracts.checks import REGISTRY
from opsmerge_contracts.options import OPTIONS

README = (Path(contracts.__file__).parent / "README.md").read_text()


def test_every_check_id_is_documented() -> None:
    missing = [cid for cid in REGISTRY if f"| `{cid}` |" not in README]
    assert missing == []


def test_every_option_is_documented_with_its_environment_variable_and_ini_key() -> None:
    for option in OPTIONS:
        row = f"| `{option.flag}` | `{option.env}` | `{option.ini}` |"
        assert row in README, row

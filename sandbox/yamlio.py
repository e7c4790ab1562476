"""YAML reading through libyaml when it is there: the pure-Python loader is ten times slower."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def load_yaml(source: str | Path) -> Any:
    text = source.read_text() if isinstance(source, Path) else source
    return yaml.load(text, Loader=_Loader)

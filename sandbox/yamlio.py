"""YAML reading through libyaml when it is there: the pure-Python loader is ten times slower.

A key repeated in one mapping is refused: YAML forbids it, and PyYAML would silently keep the
last value, so a declaration written twice (two `x-invariants` on one schema) would lose one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

_Base: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _UniqueKeys(_Base):  # type: ignore[misc, valid-type]
    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        self.flatten_mapping(node)
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            try:
                first = seen.get(key)
            except TypeError:  # an unhashable key: the base constructor names that problem
                continue
            line = key_node.start_mark.line + 1
            if first is not None:
                problem = f"duplicate key {key!r} (first at line {first})"
                raise yaml.constructor.ConstructorError(None, None, problem, key_node.start_mark)
            seen[key] = line
        return super().construct_mapping(node, deep=deep)


def load_yaml(source: str | Path) -> Any:
    text = source.read_text() if isinstance(source, Path) else source
    return yaml.load(text, Loader=_UniqueKeys)

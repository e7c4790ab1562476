"""A key written twice in one mapping of a spec, recipe or fault file is refused, not dropped."""

from __future__ import annotations

import pytest
import yaml

from opsmerge_sandbox.yamlio import load_yaml


def test_a_repeated_key_is_refused_naming_the_key_and_both_lines() -> None:
    text = (
        "Ticket:\n  type: object\n  x-invariants: [a]\n  x-collection: {name: t}\n"
        "  x-invariants: [b]\n"
    )
    with pytest.raises(yaml.YAMLError) as caught:
        load_yaml(text)
    message = str(caught.value)
    assert "duplicate key 'x-invariants' (first at line 3)" in message
    assert "line 5" in message


def test_a_repeated_key_in_a_flow_mapping_is_refused_too() -> None:
    with pytest.raises(yaml.YAMLError, match="duplicate key 'id'"):
        load_yaml("- {id: a, class: time, id: b}\n")


def test_the_same_key_in_different_mappings_and_merge_keys_still_load() -> None:
    text = "base: &b {x: 1}\none: {<<: *b, y: 2}\ntwo: {x: 3, y: 4}\n"
    assert load_yaml(text) == {"base": {"x": 1}, "one": {"x": 1, "y": 2}, "two": {"x": 3, "y": 4}}

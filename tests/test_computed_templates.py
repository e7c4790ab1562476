"""A template field (`x-template`) formats from the fields it names, the sequence numbers and its
variables, exactly as formatting it over the whole record would."""

from __future__ import annotations

import string
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from opsmerge_sandbox.world.computed_fields import Numbers, _template

RULE = {
    "format": "{prefix}-{number:05d}/{year}-{seq:03d} {client_id} {flags[0]}",
    "vars": {"prefix": {"field": "type", "map": {"Incident": "INC", "Change": "CHG"}}},
}
words = st.text(alphabet=string.ascii_letters, min_size=1, max_size=8)


def _whole_record(record: dict[str, Any], seq: int, year: int, chosen: dict[str, Any]) -> str:
    """The plain definition: the whole record, then seq and year, then the variables."""
    raw = record.get("type")
    override = (chosen.get("prefix") or {}).get(raw)
    prefix = override if override else RULE["vars"]["prefix"]["map"].get(raw, raw)
    return RULE["format"].format(**{**record, "seq": seq, "year": year, "prefix": prefix})


@settings(max_examples=200, deadline=None)
@given(
    kind=st.sampled_from(["Incident", "Change", "Task"]),
    number=st.integers(1, 99_999),
    client=words,
    flags=st.lists(words, min_size=1, max_size=3),
    extra=st.dictionaries(words, st.integers(), max_size=5),
    seq=st.integers(1, 999),
    year=st.integers(2000, 2100),
    override=st.one_of(st.none(), words),
)
def test_a_template_formats_as_over_the_whole_record(
    kind: str,
    number: int,
    client: str,
    flags: list[str],
    extra: dict[str, int],
    seq: int,
    year: int,
    override: str | None,
) -> None:
    # fields the format does not name, one named like a sequence input too
    record: dict[str, Any] = {**extra, "seq": -1, "type": kind, "number": number,
                              "client_id": client, "flags": flags}  # fmt: skip
    chosen = {"prefix": {kind: override}} if override is not None else {}
    step = _template("reference", RULE)
    step.run(record, seq, year, Numbers(maps={"reference": chosen}))
    assert record["reference"] == _whole_record(
        {k: v for k, v in record.items() if k != "reference"}, seq, year, chosen
    )

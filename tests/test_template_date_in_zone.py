"""`{path|date-in <zone path>}`: a timestamp's date on the clock of the time zone a record names,
so a rule can say what day it was for the client (an invoice of a run made at 23:30 UTC in
British Summer Time is issued on the next day)."""

from __future__ import annotations

import pytest

from opsmerge_sandbox.world.conditions import (
    ConditionError,
    Env,
    compile_template,
    condition_fields,
    no_lookup,
    template_paths,
)

SCHEMAS = {
    "visits": {
        "properties": {
            "id": {"type": "string"},
            "at": {"type": "string", "format": "date-time"},
            "zone": {"type": ["string", "null"]},
        }
    }
}
ENV = Env(no_lookup, 0)


@pytest.mark.parametrize(
    ("at", "zone", "day"),
    [
        ("2026-07-01T23:30:00Z", "Europe/London", "2026-07-02"),  # 00:30 BST
        ("2026-01-01T23:30:00Z", "Europe/London", "2026-01-01"),  # GMT: the UTC day
        ("2026-07-01T23:30:00Z", "Asia/Tokyo", "2026-07-02"),
        ("2026-07-01T03:00:00Z", "America/New_York", "2026-06-30"),
        ("2026-07-01T23:30:00Z", None, "2026-07-01"),  # no zone named: UTC
        ("2026-07-01T23:30:00Z", "Mars/Olympus", "2026-07-01"),  # not a zone: UTC
    ],
)
def test_a_timestamps_date_is_read_on_the_clock_of_the_zone_the_record_names(
    at: str, zone: str | None, day: str
) -> None:
    render = compile_template("visits", "{at|date-in zone}", SCHEMAS)
    assert render({"id": "v1", "at": at, "zone": zone}, ENV) == day


def test_a_missing_or_unreadable_time_renders_nothing() -> None:
    render = compile_template("visits", "day {at|date-in zone}", SCHEMAS)
    assert render({"id": "v1", "at": None, "zone": "Europe/London"}, ENV) is None
    assert render({"id": "v1", "at": "soon", "zone": "Europe/London"}, ENV) is None


def test_the_zone_path_is_read_by_the_rule_and_must_name_a_field() -> None:
    assert template_paths("{at|date-in zone}") == ["at", "zone"]
    assert set(condition_fields({"at": {"equals": "{at|date-in zone}"}})) >= {"at", "zone"}
    with pytest.raises(ConditionError, match="'tz' is not a field of visits"):
        compile_template("visits", "{at|date-in tz}", SCHEMAS)

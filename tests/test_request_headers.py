"""The one parse of a request's headers every stage reads: names in any case, a repeated
single-valued header refused, a repeated list-valued one kept whole and in order."""

from __future__ import annotations

import pytest

from opsmerge_sandbox.errors import ApiError
from opsmerge_sandbox.pipeline.headers import RequestHeaders


def test_each_header_sent_once_is_read_by_its_lower_case_name() -> None:
    parsed = RequestHeaders.parse(
        [(b"Host", b"sandbox"), (b"authorization", b"Bearer om_x"), (b"Content-Type", b"a/b")]
    )
    assert parsed.get("host") == "sandbox"
    assert parsed.get("content-type") == "a/b"
    assert "authorization" in parsed and "cookie" not in parsed
    assert parsed.getall("host") == ["sandbox"] and parsed.getall("cookie") == []


@pytest.mark.parametrize("name", [b"authorization", b"Authorization", b"x-sandbox-workspace"])
def test_a_single_valued_header_sent_twice_is_refused_by_name(name: bytes) -> None:
    with pytest.raises(ApiError) as refused:
        RequestHeaders.parse([(name, b"one"), (b"accept", b"*/*"), (name.lower(), b"two")])
    assert refused.value.code == "HEADER_INVALID"
    assert refused.value.details[0].field.lower() == name.decode().lower()


def test_a_list_valued_header_sent_twice_keeps_every_value_and_reads_first_as_the_first() -> None:
    raw = iter([(b"prefer", b"code=429"), (b"host", b"h"), (b"Prefer", b"delay=10")])
    parsed = RequestHeaders.parse(raw)  # any iterable, read once
    assert parsed.get("prefer") == "code=429"
    assert parsed.getall("prefer") == ["code=429", "delay=10"]
    assert parsed.get("host") == "h"

"""Array planning: compact index lists, chunking below MaxArraySize, throttles."""

from __future__ import annotations

import pytest
from geohpc.core.arrays import compact, effective_throttle, expand, parse_throttle, plan_chunks
from geohpc.errors import ConfigError


def test_compact_and_expand_roundtrip() -> None:
    assert compact([3, 7, 12, 13, 14, 15]) == "3,7,12-15"
    assert compact([5]) == "5"
    assert expand("3,7,12-15%4") == [3, 7, 12, 13, 14, 15]
    assert expand("0-10:5") == [0, 5, 10]
    idx = [0, 1, 2, 9, 11, 12, 40]
    assert expand(compact(idx)) == idx


def test_250_items_with_max_101_make_three_arrays() -> None:
    chunks = plan_chunks(list(range(250)), 101)
    assert [c.offset for c in chunks] == [0, 101, 202]
    assert [len(c.indices) for c in chunks] == [101, 101, 48]
    assert all(max(c.indices) <= 100 for c in chunks)
    assert chunks[2].array_spec(5) == "0-47%5"
    assert sum((c.lines() for c in chunks), []) == list(range(250))


def test_resubmission_keeps_offsets() -> None:
    chunks = plan_chunks([3, 7, 12, 13, 14, 15, 205], 101)
    assert [(c.offset, c.array_spec(4)) for c in chunks] == [(0, "3,7,12-15%4"), (202, "3%4")]


@pytest.mark.parametrize("bad", ["0", "-1", "abc", "2.5", "4;ls"])
def test_bad_throttle(bad: str) -> None:
    with pytest.raises(ConfigError, match="not a positive integer"):
        parse_throttle(bad)


def test_throttle_defaults() -> None:
    assert parse_throttle("") is None and parse_throttle("8") == 8
    assert effective_throttle(None, 200, 2) == 100
    assert effective_throttle(7, 200, 2) == 7
    assert effective_throttle(None, None, 3) is None

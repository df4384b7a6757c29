"""Batch calls under both a count and a byte limit, in order, nothing dropped."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from learnrec.events.batching import calls


def test_splits_on_count_and_on_size() -> None:
    assert calls([1, 1, 1, 1, 1], lambda x: x, max_count=2, max_bytes=100) == [[1, 1], [1, 1], [1]]
    assert calls([4, 4, 4], lambda x: x, max_count=10, max_bytes=8) == [[4, 4], [4]]


def test_an_oversized_item_gets_a_call_of_its_own() -> None:
    assert calls([1, 50, 1], lambda x: x, max_count=10, max_bytes=10) == [[1], [50], [1]]


@given(st.lists(st.integers(min_value=0, max_value=20)), st.integers(1, 5), st.integers(1, 30))
def test_every_item_once_in_order_within_limits(items: list[int], count: int, size: int) -> None:
    groups = calls(items, lambda x: x, count, size)
    assert [x for g in groups for x in g] == items
    for group in groups:
        assert 1 <= len(group) <= count
        assert sum(group) <= size or len(group) == 1

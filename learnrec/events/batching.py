"""Grouping items into AWS batch calls that respect both a count and a size limit.

PutRecords (500 records, 5 MiB) and SendMessageBatch (10 messages, 256 KiB) each cap a
call twice; one greedy pass in order keeps every call under both caps.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TypeVar

T = TypeVar("T")


def calls(
    items: Iterable[T], size_of: Callable[[T], int], max_count: int, max_bytes: int
) -> list[list[T]]:
    """``items`` in order, split wherever the next one would break either limit.

    An item larger than ``max_bytes`` on its own still gets a call of its own: the
    service then refuses it and the caller reports that, rather than losing it here.
    """
    groups: list[list[T]] = []
    current: list[T] = []
    size = 0
    for item in items:
        item_size = size_of(item)
        if current and (len(current) == max_count or size + item_size > max_bytes):
            groups.append(current)
            current, size = [], 0
        current.append(item)
        size += item_size
    if current:
        groups.append(current)
    return groups

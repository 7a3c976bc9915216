"""Bulk transfer helpers: batching by size, and array literals built at C speed.

pg8000 escapes list parameters one character at a time in Python, which
dominates the cost of bulk statements (a 512 KiB chunk is a million
characters). These helpers build the array's text form with ``str``
methods instead; statements take them as ``CAST(:p AS TEXT[])`` and so on,
which both PostgreSQL and CockroachDB parse server-side.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")


def batches(
    items: Iterable[T], size: Callable[[T], int], limit: int, max_items: int | None = None
) -> Iterator[list[T]]:
    """Consecutive runs of ``items`` that each close once ``limit`` bytes (or ``max_items``)
    are reached; a single item over the limit makes a batch of its own."""
    batch: list[T] = []
    total = 0
    for item in items:
        batch.append(item)
        total += size(item)
        if total >= limit or (max_items is not None and len(batch) >= max_items):
            yield batch
            batch, total = [], 0
    if batch:
        yield batch


def text_array(values: Iterable[str | None]) -> str:
    """``{"a","b\\"c",NULL}``: every element quoted, backslashes and quotes escaped."""
    parts = [
        "NULL" if v is None else '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
        for v in values
    ]
    return "{" + ",".join(parts) + "}"


def int_array(values: Iterable[int]) -> str:
    """``{1,2,3}``."""
    return "{" + ",".join(str(int(v)) for v in values) + "}"


def int_or_null_array(values: Iterable[int | None]) -> str:
    """``{1,NULL,3}``."""
    return "{" + ",".join("NULL" if v is None else str(int(v)) for v in values) + "}"


def bytea_array(values: Iterable[bytes]) -> str:
    """``{"\\\\x0a0b",...}``: each element in bytea's hex form, escaped for the array."""
    return "{" + ",".join('"\\\\x' + v.hex() + '"' for v in values) + "}"

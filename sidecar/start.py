"""A sidecar's start: take the instance over (or refuse), and load what was shipped.

The database remembers size, mtime, mode and SHA-256 of every live file, and
restore puts the same mtime back, so this index lets the first comparison
skip every file that did not change: a restart over 100,000 unchanged files
reads none of them.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import sys
from datetime import UTC, datetime
from pathlib import Path

from waha_sync.common.store.base import Instance, Store, StoredEntry
from waha_sync.common.sync.claims import authorise
from waha_sync.common.sync.marker import Marker, write_marker

M_ARENA_MAX = -8  # glibc's mallopt() parameter number


def take_over(
    store: Store, root: Path, name: str, *, force: bool
) -> tuple[Instance, dict[str, StoredEntry]]:
    """The instance to write under (this volume's own claim) and the stored index by path.

    Raises ``RefusedError`` without this instance's restore marker (unless
    ``force``, which claims the instance and writes a marker saying so),
    ``FencedError`` if the marker's epoch was superseded.
    """
    store.ensure_schema()
    instance, marker, database = authorise(
        store, root, name, force=force, role="sidecar", require_marker=True
    )
    if marker is None or marker.epoch != instance.epoch:
        stamp = datetime.now(UTC).isoformat()
        own = Marker(
            name, instance.epoch, instance.holder, 0, False, "sidecar", stamp, 0, 0, 0.0, database
        )
        write_marker(root, own)
    known: dict[str, StoredEntry] = {}
    for page in store.live_entries(name):
        known.update((e.path, lean(e)) for e in page)
    return instance, known


def lean(e: StoredEntry) -> StoredEntry:
    """What the sidecar keeps per shipped file: the comparison fields, shared strings."""
    mime = sys.intern(e.mime) if e.mime is not None else None
    return StoredEntry(
        e.path,
        e.sha256,
        e.size_bytes,
        e.mode,
        e.mtime_ns,
        mime,
        piece_bytes=e.piece_bytes,
        commit_id=e.commit_id,
    )


def limit_malloc_arenas(count: int = 2) -> None:
    """Cap glibc's malloc arenas before threads start (unless ``MALLOC_ARENA_MAX`` is set).

    Each thread that allocates otherwise gets an arena of its own, which keeps
    freed memory apart (the reader pool, HTTP and the health check all allocate;
    the sidecar's memory: BENCHMARKS.md, "Sidecar: latency, idle cost, memory").
    """
    if "MALLOC_ARENA_MAX" not in os.environ:
        with contextlib.suppress(OSError, AttributeError):  # AttributeError: not glibc
            ctypes.CDLL(None).mallopt(M_ARENA_MAX, count)


def release_memory() -> None:
    """Hand memory freed by a large comparison back to the system (glibc keeps it otherwise)."""
    with contextlib.suppress(OSError, AttributeError):  # AttributeError: not glibc
        ctypes.CDLL(None).malloc_trim(0)

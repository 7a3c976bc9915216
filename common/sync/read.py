"""Reading one small file into a complete, valid version, or saying why not.

SQLite databases (recognised by their header, whatever their name, ``is_sqlite``)
and large files are not read here: they are stored as pieces
(``waha_sync.common.sync.pieces``).

- ``*.json`` must parse: WAHA's NOWEB engine writes its key files with plain,
  non-atomic ``writeFile``, so a half-written file is normal; it is read
  again shortly, and reported if it stays invalid.
- A file is read once it has been quiet for 0.2 s, and read again if it
  changes while being read.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass

from waha_sync.common.sync.scan import Candidate, SkipKind, Skipped, changing, unreadable

SQLITE_MIME = "application/vnd.sqlite3"
QUIET_NS = 200_000_000  # a file must be this long unmodified before it is read
UNSTABLE_AFTER_S = 3.0  # then it is reported as changing and tried again later


@dataclass(frozen=True)
class FileVersion:
    """The bytes to store for a candidate, with the metadata that goes with them."""

    rel: str
    data: bytes
    size: int
    mtime_ns: int
    mode: int


class Vanished(Exception):
    """The file was deleted between the scan and the read."""


def _read_stable(c: Candidate) -> tuple[bytes, os.stat_result]:
    """The file's bytes once it has been quiet for ``QUIET_NS`` and held still while read.

    A plain, non-atomic writer may pause half-way through a file; no check
    made during one read can see that, so a file modified within the last
    ``QUIET_NS`` is not read until it is older (at most ``UNSTABLE_AFTER_S``).
    """
    deadline = time.monotonic() + UNSTABLE_AFTER_S
    while time.monotonic() < deadline:
        fd = os.open(c.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        try:
            before = os.fstat(fd)
            age = time.time_ns() - before.st_mtime_ns
            if age < QUIET_NS:
                time.sleep((QUIET_NS - age) / 1e9)
                continue
            chunks = []
            while chunk := os.read(fd, 1 << 20):
                chunks.append(chunk)
            after = os.fstat(fd)
        finally:
            os.close(fd)
        if (before.st_size, before.st_mtime_ns) == (after.st_size, after.st_mtime_ns):
            return b"".join(chunks), after
    raise _Unstable


class _Unstable(Exception):
    pass


def read_version(c: Candidate, json_retry_seconds: float = 0.5) -> FileVersion | Skipped:
    """Read ``c`` into a version worth storing, or a ``Skipped`` with the reason.

    Raises ``Vanished`` when the file is gone (the caller records a deletion).
    """
    deadline = time.monotonic() + json_retry_seconds
    while True:
        try:
            data, st = _read_stable(c)
        except FileNotFoundError:
            raise Vanished(c.rel) from None
        except _Unstable:
            return changing(c.rel)
        except OSError as exc:
            return unreadable(c.rel, exc)
        if not c.rel.endswith(".json") or _valid_json(data):
            mode = st.st_mode & 0o7777
            return FileVersion(c.rel, data, len(data), st.st_mtime_ns, mode)
        if time.monotonic() >= deadline:
            why = "invalid JSON (half-written?); the stored version is kept"
            return Skipped(c.rel, SkipKind.INVALID_JSON, why)
        time.sleep(0.1)


def _valid_json(data: bytes) -> bool:
    try:
        json.loads(data)
    except (ValueError, UnicodeDecodeError):
        return False
    return True

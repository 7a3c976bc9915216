"""Reading one file into a complete, valid version, or saying why not.

- SQLite databases (recognised by their header, whatever their name) are
  copied with SQLite's online backup API into a consistent snapshot while a
  writer may be active, and checked with ``PRAGMA quick_check``.
- ``*.json`` must parse: WAHA's NOWEB engine writes its key files with plain,
  non-atomic ``writeFile``, so a half-written file is normal; it is read
  again shortly, and reported if it stays invalid.
- A file that changes while being read is read again.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from dataclasses import dataclass

from waha_sync.common.scan import Candidate, Skipped

SQLITE_HEADER = b"SQLite format 3\x00"
SQLITE_MIME = "application/vnd.sqlite3"
READ_ATTEMPTS = 5


@dataclass(frozen=True)
class FileVersion:
    """The bytes to store for a candidate, with the metadata that goes with them."""

    rel: str
    data: bytes
    size: int
    mtime_ns: int
    mode: int
    is_sqlite: bool


class Vanished(Exception):
    """The file was deleted between the scan and the read."""


def _read_stable(c: Candidate) -> tuple[bytes, os.stat_result]:
    """The file's bytes, read again until size and mtime hold still during a read."""
    for _ in range(READ_ATTEMPTS):
        fd = os.open(c.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        try:
            before = os.fstat(fd)
            chunks = []
            while chunk := os.read(fd, 1 << 20):
                chunks.append(chunk)
            after = os.fstat(fd)
        finally:
            os.close(fd)
        if (before.st_size, before.st_mtime_ns) == (after.st_size, after.st_mtime_ns):
            return b"".join(chunks), after
        time.sleep(0.05)
    raise _Unstable


class _Unstable(Exception):
    pass


def _snapshot(c: Candidate) -> bytes:
    src = sqlite3.connect(f"{c.path.absolute().as_uri()}?mode=ro", uri=True, timeout=10)
    try:
        dst = sqlite3.connect(":memory:")
        try:
            src.backup(dst)  # one step: a read transaction holds the snapshot still
            check = dst.execute("PRAGMA quick_check").fetchone()[0]
            if check != "ok":
                raise sqlite3.DatabaseError(f"quick_check: {check}")
            return dst.serialize()
        finally:
            dst.close()
    finally:
        src.close()


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
        except PermissionError:
            return Skipped(c.rel, "unreadable (permission denied)")
        except _Unstable:
            return Skipped(c.rel, "kept changing while being read; will retry")
        except OSError as exc:
            return Skipped(c.rel, f"unreadable ({exc.strerror})")
        if data.startswith(SQLITE_HEADER):
            try:
                snap = _snapshot(c)
            except sqlite3.Error as exc:
                return Skipped(c.rel, f"SQLite snapshot failed ({exc})")
            return FileVersion(c.rel, snap, len(snap), st.st_mtime_ns, c.mode, True)
        if not c.rel.endswith(".json") or _valid_json(data):
            mode = st.st_mode & 0o7777
            return FileVersion(c.rel, data, len(data), st.st_mtime_ns, mode, False)
        if time.monotonic() >= deadline:
            return Skipped(c.rel, "invalid JSON (half-written?); the stored version is kept")
        time.sleep(0.1)


def _valid_json(data: bytes) -> bool:
    try:
        json.loads(data)
    except (ValueError, UnicodeDecodeError):
        return False
    return True

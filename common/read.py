"""Reading one file into a complete, valid version, or saying why not.

- SQLite databases (recognised by their header, whatever their name) are
  copied with SQLite's online backup API into a consistent snapshot while a
  writer may be active, and checked with ``PRAGMA quick_check``.
- ``*.json`` must parse: WAHA's NOWEB engine writes its key files with plain,
  non-atomic ``writeFile``, so a half-written file is normal; it is read
  again shortly, and reported if it stays invalid.
- A file is read once it has been quiet for 0.2 s, and read again if it
  changes while being read.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

from waha_sync.common.scan import Candidate, Skipped

SQLITE_HEADER = b"SQLite format 3\x00"
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
    is_sqlite: bool


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


def _snapshot(c: Candidate) -> bytes:
    uri = f"{Path(c.path).absolute().as_uri()}?mode=ro"
    src = sqlite3.connect(uri, uri=True, timeout=10)
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
    try:
        if _is_sqlite(c):  # snapshotted consistently: no need to wait for quiet
            st = os.lstat(c.path)
            return FileVersion(
                c.rel, (snap := _snapshot(c)), len(snap), st.st_mtime_ns, c.mode, True
            )
    except FileNotFoundError:
        raise Vanished(c.rel) from None
    except sqlite3.Error as exc:
        return Skipped(c.rel, f"SQLite snapshot failed ({exc})")
    except OSError as exc:
        return _unreadable(c, exc)
    deadline = time.monotonic() + json_retry_seconds
    while True:
        try:
            data, st = _read_stable(c)
        except FileNotFoundError:
            raise Vanished(c.rel) from None
        except _Unstable:
            return Skipped(c.rel, "kept changing while being read; will retry")
        except OSError as exc:
            return _unreadable(c, exc)
        if not c.rel.endswith(".json") or _valid_json(data):
            mode = st.st_mode & 0o7777
            return FileVersion(c.rel, data, len(data), st.st_mtime_ns, mode, False)
        if time.monotonic() >= deadline:
            return Skipped(c.rel, "invalid JSON (half-written?); the stored version is kept")
        time.sleep(0.1)


def _is_sqlite(c: Candidate) -> bool:
    """Whether the file starts with SQLite's header, whatever its name."""
    fd = os.open(c.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        return os.read(fd, len(SQLITE_HEADER)) == SQLITE_HEADER
    finally:
        os.close(fd)


def _unreadable(c: Candidate, exc: OSError) -> Skipped:
    if isinstance(exc, PermissionError):
        return Skipped(c.rel, "unreadable (permission denied)")
    return Skipped(c.rel, f"unreadable ({exc.strerror})")


def _valid_json(data: bytes) -> bool:
    try:
        json.loads(data)
    except (ValueError, UnicodeDecodeError):
        return False
    return True

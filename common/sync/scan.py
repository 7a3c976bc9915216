"""Walking the sessions directory: what is there, what is left out and why.

Symlinks are never followed (and never stored). A glob without ``/``
matches any file or folder name; one with ``/`` the whole relative path.
Every file that is left out is reported with its reason, so nothing is
dropped silently; the SQLite side files and our own marker folder are
reported quietly (they are folded into the database snapshot, or ours).
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import Enum
from fnmatch import fnmatchcase, translate
from pathlib import Path

from waha_sync.common.config.settings import ALWAYS_EXCLUDED

SQLITE_HEADER = b"SQLite format 3\x00"


@dataclass(frozen=True, slots=True)
class Candidate:
    """A regular file that may be stored (``path``: a plain string, cheap by the 100,000)."""

    rel: str
    path: str
    size: int
    mtime_ns: int
    mode: int


class SkipKind(Enum):
    """Why a file or folder is left out, as a kind; ``label`` is its /metrics ``reason``."""

    TOO_BIG = "too_big"  # over --max-file-bytes or --max-sqlite-bytes
    INVALID_JSON = "invalid_json"  # a .json file that does not parse (half-written?)
    UNREADABLE = "unreadable"  # cannot be stat'ed, opened or read
    UNREADABLE_FOLDER = "unreadable_folder"  # its files are unknown, not gone
    EXCLUDED = "excluded"  # matched an exclude pattern
    NOT_REGULAR = "not_regular"  # a symlink, socket, FIFO or device
    BAD_NAME = "bad_name"  # the name is not valid UTF-8
    SQLITE_SNAPSHOT = "sqlite_snapshot"  # SQLite could not snapshot the database
    CHANGING = "changing"  # kept changing while being read; retried later

    @property
    def label(self) -> str:
        """The ``reason`` label of ``waha_sync_skipped_files`` (folders count as unreadable)."""
        return "unreadable" if self is SkipKind.UNREADABLE_FOLDER else self.value


@dataclass(frozen=True)
class Skipped:
    """A file or folder that is not stored this time: its kind, and why in words."""

    rel: str
    kind: SkipKind
    reason: str
    quiet: bool = False


def changing(rel: str) -> Skipped:
    """A file that kept changing while it was read (the next round tries again)."""
    return Skipped(rel, SkipKind.CHANGING, "kept changing while being read; will retry")


def unreadable(rel: str, exc: OSError) -> Skipped:
    """A file that could not be opened or read."""
    if isinstance(exc, PermissionError):
        return Skipped(rel, SkipKind.UNREADABLE, "unreadable (permission denied)")
    return Skipped(rel, SkipKind.UNREADABLE, f"unreadable ({exc.strerror})")


def cannot_stat(rel: str, exc: OSError) -> Skipped:
    """A path that is there but cannot be looked at (its folder is not searchable)."""
    return Skipped(rel, SkipKind.UNREADABLE, f"cannot stat ({exc.strerror})")


def bad_name(rel: str) -> Skipped:
    """A path whose name is not valid UTF-8, shown with backslash escapes."""
    shown = rel.encode("utf-8", "backslashreplace").decode()
    return Skipped(shown, SkipKind.BAD_NAME, "name is not valid UTF-8")


def classify(rel: str, path: str, st: os.stat_result, limits: Limits) -> Candidate | Skipped:
    """What to do with the file ``rel`` (at ``path``, ``st`` from lstat, not a folder):
    store it, or leave it out and why. The one decision scan and the sidecar share;
    reads the header only of files over a limit."""
    if stat.S_ISLNK(st.st_mode):
        return Skipped(rel, SkipKind.NOT_REGULAR, "symlink (links are not followed or stored)")
    if not stat.S_ISREG(st.st_mode):
        return Skipped(rel, SkipKind.NOT_REGULAR, "not a regular file")
    too_large = limits.over(rel, path, st.st_size)
    if too_large is not None:
        return too_large
    return Candidate(rel, path, st.st_size, st.st_mtime_ns, stat.S_IMODE(st.st_mode))


@dataclass
class ScanResult:
    candidates: list[Candidate] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)

    @property
    def present(self) -> set[str]:
        """Every file path that exists on disk (stored or not), for tombstone decisions."""
        return {c.rel for c in self.candidates} | {s.rel for s in self.skipped}


def fmt_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"  # pragma: no cover


class Excluder:
    """Decides whether a relative path is excluded, and by which pattern.

    The patterns are compiled into one regular expression per kind, so a
    name is tested once, not once per pattern (this runs for every file).
    """

    def __init__(self, patterns: Sequence[str]) -> None:
        self.by_name = [p for p in patterns if "/" not in p]
        self.by_path = [p.strip("/") for p in patterns if "/" in p]
        self._name_re = _any_of(self.by_name)
        self._path_re = _any_of(self.by_path)

    def match(self, rel: str) -> str | None:
        name = rel.rpartition("/")[2]
        if self._name_re is not None and self._name_re.match(name):
            return next(p for p in self.by_name if fnmatchcase(name, p))
        if self._path_re is not None and self._path_re.match(rel):
            return next(p for p in self.by_path if fnmatchcase(rel, p))
        return None

    def covers(self, rel: str) -> bool:
        """True if ``rel`` or any folder above it is excluded."""
        parts = rel.split("/")
        return any(self.match("/".join(parts[: i + 1])) for i in range(len(parts)))


def is_gone(path: Path) -> bool:
    """True if ``path`` does not exist; one that cannot be looked at is not gone."""
    try:
        os.lstat(path)
    except (FileNotFoundError, NotADirectoryError):
        return True
    except OSError:
        return False
    return False


def _any_of(patterns: Sequence[str]) -> re.Pattern[str] | None:
    if not patterns:
        return None
    return re.compile("|".join(f"(?:{translate(p)})" for p in patterns))


@dataclass(frozen=True)
class Limits:
    """The largest file stored: ``file_bytes`` for most, ``sqlite_bytes`` (None: no
    ceiling) for SQLite databases, recognised by their header."""

    file_bytes: int
    sqlite_bytes: int | None = None

    def over(self, rel: str, path: str, size: int) -> Skipped | None:
        """Why the file ``rel`` of ``size`` bytes is too large (or unreadable), or None;
        reads the header only of files over a limit."""
        if size <= min(self.file_bytes, self.sqlite_bytes or self.file_bytes):
            return None
        try:
            limit = self.sqlite_bytes if is_sqlite(path) else self.file_bytes
        except OSError as exc:
            return Skipped(rel, SkipKind.UNREADABLE, f"cannot read ({exc.strerror})")
        if limit is None or size <= limit:
            return None
        shown, most = fmt_bytes(size), fmt_bytes(limit)
        if shown == most:
            shown, most = f"{size} B", f"{limit} B"
        return Skipped(rel, SkipKind.TOO_BIG, f"{shown} > limit {most}")


def is_sqlite(path: str) -> bool:
    """Whether the file starts with SQLite's header, whatever its name (raises OSError)."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        return os.read(fd, len(SQLITE_HEADER)) == SQLITE_HEADER
    finally:
        os.close(fd)


def scan(root: Path, patterns: Sequence[str], limits: Limits) -> ScanResult:
    """List the files under ``root`` that may be stored, and those left out."""
    excluder = Excluder(patterns)
    result = ScanResult()
    _walk(root, "", excluder, limits, result)
    result.candidates.sort(key=lambda c: c.rel)
    return result


def _walk(folder: Path, prefix: str, ex: Excluder, limits: Limits, out: ScanResult) -> None:
    try:
        entries = list(os.scandir(folder))
    except OSError as exc:
        shown = prefix.rstrip("/") or "."
        kind = SkipKind.UNREADABLE_FOLDER
        out.skipped.append(Skipped(shown, kind, f"unreadable folder ({exc.strerror})"))
        return
    for entry in entries:
        rel = prefix + entry.name
        try:
            rel.encode("utf-8")
        except UnicodeEncodeError:
            out.skipped.append(bad_name(rel))
            continue
        pattern = ex.match(rel)
        if pattern is not None:
            quiet = pattern in ALWAYS_EXCLUDED
            out.skipped.append(Skipped(rel, SkipKind.EXCLUDED, f"excluded by {pattern!r}", quiet))
            continue
        try:
            st = entry.stat(follow_symlinks=False)
        except OSError as exc:
            out.skipped.append(cannot_stat(rel, exc))
            continue
        if stat.S_ISDIR(st.st_mode):
            _walk(Path(entry.path), rel + "/", ex, limits, out)
            continue
        got = classify(rel, entry.path, st, limits)
        if isinstance(got, Candidate):
            out.candidates.append(got)
        else:
            out.skipped.append(got)


def deletions(found: ScanResult, stored: Iterable[str], excluder: Excluder) -> list[str]:
    """Stored paths to record as deleted: gone from disk, and not merely excluded.

    The files of a folder that cannot be read are unknown, not gone: they keep their
    stored versions.
    """
    present = found.present
    unread = tuple(s.rel + "/" for s in found.skipped if s.kind is SkipKind.UNREADABLE_FOLDER)
    return [
        p
        for p in stored
        if p not in present and not p.startswith(unread) and not excluder.covers(p)
    ]

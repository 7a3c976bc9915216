"""Moving local files aside when the database's tree wins a restore, never deleting them.

When restore writes the stored tree over a volume that is not newer than the
database, every local file that differs from the stored version or is unknown
to the database is renamed (same filesystem, so it costs one directory
operation) to ``.waha-sync/displaced/<UTC time>/<path>``. SQLite side files
(``-wal``, ``-shm``, ``-journal``) are never stored, so in that case each one
is displaced together with its database: a database that restore writes never
sits next to a journal of another generation, and the displaced pair stays
readable as it was. Folders older than the retention are deleted by a later
restore; ``.waha-sync/displaced.json`` summarises what is kept (for
``/status``).

The plan is made in the restore process before any file is written
(``Survey``); the writer processes only move the one path they are about to
write (``Displacer.clear_way``), so no two of them ever touch the same path.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import shutil
import stat
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from waha_sync.common.errors import write_failure
from waha_sync.common.sync.marker import MARKER_DIR
from waha_sync.common.sync.scan import Excluder
from waha_sync.init.safepath import TMP_MARK

log = logging.getLogger("waha_sync.restore")
DISPLACED_DIR = "displaced"
SUMMARY_FILE = "displaced.json"
SIDE_SUFFIXES = ("-wal", "-shm", "-journal")
STAMP_FORMAT = "%Y%m%dT%H%M%S.%fZ"  # sorts as time does; no ':' for other filesystems
SUMMARY_PATHS = 5  # paths of the newest folder named in the summary


def stamp_now() -> str:
    """A folder name for now (UTC), e.g. ``20260109T103000.123456Z``."""
    return datetime.now(UTC).strftime(STAMP_FORMAT)


def side_base(rel: str) -> str | None:
    """``x.db`` for ``x.db-wal``, ``-shm`` or ``-journal``; None for any other path."""
    for suffix in SIDE_SUFFIXES:
        if rel.endswith(suffix) and len(rel.rpartition("/")[2]) > len(suffix):
            return rel[: -len(suffix)]
    return None


@dataclass(frozen=True)
class Displacer:
    """Moves paths under ``root`` into ``.waha-sync/displaced/<stamp>/`` (thread-safe)."""

    root: Path
    stamp: str

    @property
    def rel_folder(self) -> str:
        return f"{MARKER_DIR}/{DISPLACED_DIR}/{self.stamp}"

    def move(self, rel: str) -> list[str]:
        """Move ``rel`` (a file, link or folder) and its SQLite side files; what moved."""
        moved = [rel] if self._rename(rel) else []
        for suffix in SIDE_SUFFIXES:
            if self._rename(rel + suffix):
                moved.append(rel + suffix)
        return moved

    def clear_way(self, rel: str) -> list[str]:
        """Before ``rel`` is written: move whatever stands at that exact path, with its side
        files. The caller has checked the path and cleared the folders above it."""
        try:
            os.lstat(self.root / rel)
        except (FileNotFoundError, NotADirectoryError):
            return []
        except OSError as exc:
            raise write_failure(rel, exc) from exc
        return self.move(rel)

    def _rename(self, rel: str) -> bool:
        src = self.root / rel
        dst = self.root / self.rel_folder / rel
        try:
            os.lstat(src)
        except (FileNotFoundError, NotADirectoryError):
            return False
        except OSError as exc:
            raise write_failure(rel, exc) from exc
        try:
            dst.parent.mkdir(parents=True, exist_ok=True)
            src.rename(dst)
        except FileNotFoundError:  # gone meanwhile: nothing to keep
            return False
        except OSError as exc:
            if exc.errno != errno.EXDEV:  # a folder mounted inside the volume
                raise write_failure(f"{rel} (moving it to {self.rel_folder})", exc) from exc
            try:
                shutil.move(src, dst)
            except OSError as again:
                raise write_failure(f"{rel} (moving it to {self.rel_folder})", again) from again
        return True


@dataclass
class Survey:
    """The local tree before the stored one is written: what may have to move aside.

    ``files`` holds every local path that is not a folder (links included) and
    is not excluded; ``links`` the symlinks among them (a stored path through a
    linked folder stays refused, as the safe-path rules say). Temp files of an
    interrupted restore are deleted on the way.
    """

    displacer: Displacer
    files: set[str] = field(default_factory=set)
    links: set[str] = field(default_factory=set)
    side: list[str] = field(default_factory=list)
    moved: list[str] = field(default_factory=list)

    @classmethod
    def of(cls, displacer: Displacer, excluder: Excluder) -> Survey:
        survey = cls(displacer)
        survey._walk(displacer.root, "", excluder)
        return survey

    def _walk(self, folder: Path, prefix: str, excluder: Excluder) -> None:
        try:
            entries = list(os.scandir(folder))
        except OSError as exc:  # never a failure: what cannot be seen is left as it is
            log.warning(
                "cannot read the folder %s (%s): its local files are left as they are",
                prefix.rstrip("/") or ".",
                exc.strerror,
            )
            return
        for entry in entries:
            rel = prefix + entry.name
            if not prefix and entry.name == MARKER_DIR:
                continue
            if TMP_MARK in entry.name:
                with contextlib.suppress(OSError):
                    Path(entry.path).unlink()
                continue
            if side_base(rel) is not None:
                self.side.append(rel)
                continue
            if excluder.match(rel) is not None:
                continue  # never stored, never compared: left alone
            try:
                mode = entry.stat(follow_symlinks=False).st_mode
            except OSError:  # gone meanwhile, or not to be looked at: left as it is
                continue
            if stat.S_ISDIR(mode):
                self._walk(Path(entry.path), rel + "/", excluder)
                continue
            self.files.add(rel)
            if stat.S_ISLNK(mode):
                self.links.add(rel)

    def side_files(self) -> list[str]:
        """Move every SQLite side file aside, with the database it belongs to."""
        moved: list[str] = []
        for rel in sorted(self.side):
            base = side_base(rel)
            assert base is not None
            if base in self.files and base not in self.links:
                self.files.discard(base)
                moved += self.displacer.move(base)
            else:
                moved += self.displacer.move(rel)
        self.moved += moved
        return moved

    def clear_folders(self, paths: list[str]) -> list[str]:
        """Move local files that stand where ``paths`` need a folder (in the restore process,
        before the page goes to a writer)."""
        moved: list[str] = []
        for rel in paths:
            parts = rel.split("/")
            for i in range(1, len(parts)):
                above = "/".join(parts[:i])
                if above in self.files and above not in self.links:
                    self.files.discard(above)
                    moved += self.displacer.move(above)
                    break
        self.moved += moved
        return moved

    def leftovers(self, known: set[str], written: list[str]) -> list[str]:
        """Move every local file the database does not know (what the writers did not)."""
        done = set(written)
        moved: list[str] = []
        for rel in sorted(self.files - known - done):
            moved += self.displacer.move(rel)
        self.moved += moved
        return moved


# -- retention and the summary shown in /status -------------------------------
def _displaced_root(root: Path) -> Path:
    return root / MARKER_DIR / DISPLACED_DIR


def _stamp_time(name: str) -> datetime | None:
    try:
        return datetime.strptime(name, STAMP_FORMAT).replace(tzinfo=UTC)
    except ValueError:
        return None


def prune(root: Path, retention_hours: float, now: datetime | None = None) -> list[str]:
    """Delete displaced folders older than the retention; the names deleted.

    A folder that cannot be deleted is logged and kept (never a failure).
    """
    base = _displaced_root(root)
    if not base.is_dir():
        return []
    horizon = (now or datetime.now(UTC)) - timedelta(hours=retention_hours)
    pruned = []
    for entry in sorted(os.scandir(base), key=lambda e: e.name):
        made = _stamp_time(entry.name)
        if made is None or made >= horizon or not entry.is_dir(follow_symlinks=False):
            continue
        try:
            shutil.rmtree(entry.path)
        except OSError as exc:
            log.warning("cannot delete displaced files in %s: %s", entry.path, exc.strerror)
            continue
        pruned.append(entry.name)
        log.info(
            "deleted displaced files of %s/%s/%s (older than %g hours)",
            MARKER_DIR,
            DISPLACED_DIR,
            entry.name,
            retention_hours,
        )
    return pruned


def _count(folder: str) -> int:
    n = 0
    for _, _, files in os.walk(folder):
        n += len(files)
    return n


def write_summary(root: Path, newest: list[str], retention_hours: float) -> None:
    """Record what is kept in ``displaced/`` (counts per folder; ``newest``: paths of the
    newest folder, if this restore made it). Failures are logged, never raised."""
    base = _displaced_root(root)
    path = root / MARKER_DIR / SUMMARY_FILE
    try:
        folders = sorted(
            (e.name, e.path)
            for e in os.scandir(base)
            if e.is_dir(follow_symlinks=False) and _stamp_time(e.name) is not None
        )
        old = read_summary(root) or {}
        newest_rel = f"{MARKER_DIR}/{DISPLACED_DIR}/{folders[-1][0]}" if folders else None
        if not newest and newest_rel is not None and old.get("newest") == newest_rel:
            newest = list(old.get("paths", []))  # the newest folder is still the last one's
        body: dict[str, Any] = {
            "files": 0,
            "folders": [],
            "newest": None,
            "paths": newest[-SUMMARY_PATHS:] if folders else [],
            "retention_hours": retention_hours,
        }
        for name, full in folders:
            count = _count(full)
            body["files"] += count
            body["folders"].append(
                {"folder": f"{MARKER_DIR}/{DISPLACED_DIR}/{name}", "files": count}
            )
        body["newest"] = newest_rel
        tmp = path.with_name(f".{SUMMARY_FILE}.tmp")
        tmp.write_text(json.dumps(body, indent=2), encoding="utf-8")
        tmp.replace(path)
    except OSError as exc:
        log.warning("cannot record the displaced files in %s: %s", path, exc.strerror)


def read_summary(root: Path) -> dict[str, Any] | None:
    """The summary ``write_summary`` left, or None (none, or unreadable)."""
    try:
        raw = json.loads((root / MARKER_DIR / SUMMARY_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return raw if isinstance(raw, dict) else None

"""Watching a tree with inotify: which paths changed, never which content.

One watch per directory; a new directory gets its watch first and is then
listed, so files created before the watch existed are reported too. Writes
to a SQLite ``-wal`` or ``-journal`` file are reported as changes of the
database itself; their creation and removal are not (readers, our own
snapshots included, do that without changing anything). A kernel queue
overflow asks for a full rescan; hitting the watch limit is logged once with
the sysctl to raise and turns on periodic rescans (``degraded``), so syncing
never silently stops.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import select
from dataclasses import dataclass
from pathlib import Path

from inotify_simple import INotify, flags

from waha_sync.common.sync.scan import Excluder
from waha_sync.common.words import plural

log = logging.getLogger("waha_sync.sync")

MASK = (
    flags.CLOSE_WRITE
    | flags.MODIFY
    | flags.CREATE
    | flags.MOVED_TO
    | flags.MOVED_FROM
    | flags.DELETE
    | flags.DELETE_SELF
    | flags.DONT_FOLLOW
    | flags.EXCL_UNLINK
    | flags.ONLYDIR
)
SQLITE_SIDE = ("-wal", "-journal")
SYSCTL = "fs.inotify.max_user_watches"


@dataclass(frozen=True)
class Change:
    """A path that may differ from what was shipped; ``folder_gone``: a whole folder left."""

    rel: str
    folder_gone: bool = False
    journal: bool = False  # written through its SQLite -wal/-journal: committed data


class TreeWatcher:
    """inotify watches over every folder under ``root`` (excluded folders left out)."""

    def __init__(self, root: Path, excluder: Excluder) -> None:
        self.root = root
        self.excluder = excluder
        self.folders: dict[int, str] = {}  # watch descriptor -> relative folder ("" = root)
        self.rescan_needed = False  # events were lost: compare the whole tree
        self.degraded = False  # some folder is unwatched: rescan periodically
        self._inotify: INotify | None = None
        try:
            self._inotify = INotify()
        except OSError as exc:
            self._degrade(
                f"cannot start inotify ({exc.strerror})",
                "sysctl -w fs.inotify.max_user_instances=512 on the node",
            )

    def fileno(self) -> int | None:
        return self._inotify.fileno() if self._inotify is not None else None

    def close(self) -> None:
        if self._inotify is not None:
            self._inotify.close()
            self._inotify = None

    def start(self) -> None:
        """Watch the whole tree (the files already there are the first comparison's job)."""
        self._watch_tree("", files=False)

    def _degrade(self, why: str, hint: str) -> None:
        if not self.degraded:
            log.warning("%s: falling back to periodic full rescans. Try: %s", why, hint)
        self.degraded = True

    def _watch_tree(self, rel: str, *, files: bool = True) -> list[Change]:
        """Add watches to ``rel`` and every folder below it; the files found there (if
        ``files``). ``rel`` itself is not excluded (the caller checked)."""
        found: list[Change] = []
        if self._inotify is None:
            return found
        stack = [rel]
        while stack:
            folder = stack.pop()
            path = self.root / folder if folder else self.root
            try:
                wd = self._inotify.add_watch(path, MASK)
            except OSError as exc:
                if exc.errno == errno.ENOSPC:
                    self._degrade(
                        f"inotify watch limit reached at {plural(len(self.folders), 'folder')}",
                        f"sysctl -w {SYSCTL}=524288 (and fs.inotify.max_user_instances) "
                        "on the node",
                    )
                elif exc.errno not in (errno.ENOENT, errno.ENOTDIR):
                    self._degrade(
                        f"{path}: cannot watch ({exc.strerror})",
                        "run WAHA and waha-sync as one uid/gid (or one fsGroup) so that the "
                        "sidecar can read every folder WAHA creates",
                    )
                continue
            self.folders[wd] = folder
            try:
                entries = list(os.scandir(path))
            except OSError:
                continue
            for entry in entries:
                is_dir = entry.is_dir(follow_symlinks=False)
                if not is_dir and not files:
                    continue
                child = f"{folder}/{entry.name}" if folder else entry.name
                if self.excluder.match(child) is not None:  # its folders are not excluded
                    continue
                if is_dir:
                    stack.append(child)
                else:
                    found.append(Change(child))
        return found

    def wait(self, timeout: float | None, wake_fd: int) -> bool:
        """Sleep in the kernel until an event, ``wake_fd`` or the timeout; True if woken."""
        poller = select.poll()
        poller.register(wake_fd, select.POLLIN)
        fd = self.fileno()
        if fd is not None:
            poller.register(fd, select.POLLIN)
        ms = None if timeout is None else max(0, int(timeout * 1000) + 1)
        ready = poller.poll(ms)
        return any(f == wake_fd for f, _ in ready)

    def changes(self) -> list[Change]:
        """Every change the kernel has queued, without blocking."""
        if self._inotify is None:
            return []
        out: list[Change] = []
        for event in self._inotify.read(timeout=0):
            mask, name = event.mask, event.name
            if mask & flags.Q_OVERFLOW:
                log.warning("inotify queue overflowed: rescanning the whole tree")
                self.rescan_needed = True
                continue
            if mask & flags.IGNORED:
                self.folders.pop(event.wd, None)
                continue
            folder = self.folders.get(event.wd)
            if folder is None or mask & flags.DELETE_SELF or not name:
                continue
            rel = f"{folder}/{name}" if folder else name
            if mask & flags.ISDIR:
                out.extend(self._folder_event(rel, mask))
                continue
            db = _database_of(rel)
            if db != rel and not mask & flags.MODIFY:
                continue  # a reader (our own snapshot too) creates and removes side files
            if self.excluder.match(db) is None:  # its folders are watched: not excluded
                out.append(Change(db, journal=db != rel))
        return out

    def _folder_event(self, rel: str, mask: int) -> list[Change]:
        if self.excluder.covers(rel):
            return []
        if mask & (flags.CREATE | flags.MOVED_TO):
            return self._watch_tree(rel)
        if mask & (flags.DELETE | flags.MOVED_FROM):
            if mask & flags.MOVED_FROM:  # its watches moved with it: drop them
                self._unwatch_below(rel)
            return [Change(rel, folder_gone=True)]
        return []

    def _unwatch_below(self, rel: str) -> None:
        prefix = rel + "/"
        for wd, folder in list(self.folders.items()):
            if folder == rel or folder.startswith(prefix):
                del self.folders[wd]
                if self._inotify is not None:
                    with contextlib.suppress(OSError):
                        self._inotify.rm_watch(wd)


def _database_of(rel: str) -> str:
    """A SQLite side file stands for its database: ``x.db-wal`` changes ``x.db``."""
    for suffix in SQLITE_SIDE:
        if rel.endswith(suffix):
            return rel.removesuffix(suffix)
    return rel

"""``waha-sync restore``: fill the target directory from the database.

Which side is newer is decided from the marker the volume holds. If it is
this instance's, written against this database, not read-only, and its
epoch is still the instance's (nobody claimed it since), the volume was the
last writer: restore claims a new epoch and writes nothing (local changes and
deletions the sidecar had not shipped yet stay; its first comparison ships
them). Otherwise (no marker, another instance's or database's, an older
epoch, a read-only one, ``--at``, ``--read-only``) the database wins: the
tree ends equal to the stored one, and every local file that differs or is
unknown is moved to ``.waha-sync/displaced/<UTC time>/``, SQLite side files
with their database (``init.displace``). An instance that never stored
anything keeps the volume as it is (the first sidecar ships it).

Every write is a temp file plus rename, verified against its SHA-256 first;
one filesystem sync makes them all durable before the marker is written, so
a restore that crashes has no new marker and simply runs again. Restores
into one volume take turns (a lock file in ``.waha-sync``). The writing
itself is ``tree_writer``'s.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import multiprocessing
import os
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from waha_sync.common.config.settings import Settings
from waha_sync.common.errors import ConfigError, DatabaseUnavailable, write_failure
from waha_sync.common.store.base import Instance, Store, StoredEntry
from waha_sync.common.sync.claims import holder_name
from waha_sync.common.sync.marker import MARKER_DIR, Marker, marker_path, read_marker, write_marker
from waha_sync.common.sync.scan import Excluder, ScanResult, deletions, scan
from waha_sync.common.words import plural
from waha_sync.init.displace import Displacer, Survey, prune, stamp_now, write_summary
from waha_sync.init.safepath import TMP_MARK, TargetDir, check_rel
from waha_sync.init.tree_writer import (
    PageResult,
    PageWriter,
    WriteOptions,
    start_process,
    write_page_in_process,
)

log = logging.getLogger("waha_sync.restore")
MAX_PROCESSES = 4
LOCK_FILE = "restore.lock"
LOGGED_PATHS = 20  # displaced or kept files named one per line; the rest counted


@dataclass
class RestoreReport:
    commit_id: int = 0
    epoch: int = 0
    files: int = 0
    written: int = 0
    unchanged: int = 0
    bytes: int = 0
    kept_local: list[str] = field(default_factory=list)
    seconds: float = 0.0
    volume_newer: bool = False  # the volume was the last writer: nothing was written
    local_changes: int = 0  # with volume_newer: local differences the sidecar will ship
    displaced: list[str] = field(default_factory=list)  # paths moved aside
    displaced_to: str = ""  # where, relative to the target


def _local_leftovers(root: Path, known: set[str]) -> list[str]:
    """Local files the database does not know (kept); stale temp files are removed."""
    kept = []
    for folder, dirs, files in os.walk(root):
        rel_dir = os.path.relpath(folder, root)
        if rel_dir == ".":
            dirs[:] = [d for d in dirs if d != MARKER_DIR]
        for name in files:
            rel = name if rel_dir == "." else f"{rel_dir}/{name}"
            if TMP_MARK in name:
                Path(folder, name).unlink(missing_ok=True)
            elif rel not in known:
                kept.append(rel)
    return sorted(kept)


@contextlib.contextmanager
def _volume_lock(root: Path) -> Iterator[None]:
    """Restores into one volume take turns (an flock on ``.waha-sync/restore.lock``)."""
    folder = root / MARKER_DIR
    try:
        folder.mkdir(exist_ok=True)
        fd = os.open(folder / LOCK_FILE, os.O_RDONLY | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except OSError as exc:
        raise write_failure(str(folder / LOCK_FILE), exc) from exc
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log.info("another restore into %s is running; waiting for it to finish", root)
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def _marker_or_none(root: Path) -> tuple[Marker | None, str | None]:
    """The volume's marker, or (None, why it cannot be used)."""
    try:
        return read_marker(root), None
    except ConfigError as exc:
        return None, exc.message


def _not_newer(
    marker: Marker | None,
    unreadable: str | None,
    name: str,
    database: str,
    before: Instance | None,
    *,
    at: datetime | None,
    read_only: bool,
) -> str | None:
    """Why the volume is not newer than the database; None when it is the last writer."""
    if read_only:
        return "a read-only restore"
    if at is not None:
        return "a restore as of a past time"
    if marker is None:
        return unreadable or "no restore marker"
    if marker.instance != name:
        return f"the marker is instance {marker.instance!r}'s"
    if marker.read_only:
        return "the marker is a read-only restore's"
    if not marker.database:
        return "the marker does not name its database (written by an older waha-sync)"
    if marker.database != database:
        return "the marker was written against another database"
    if before is None or before.epoch != marker.epoch:
        now = before.epoch if before is not None else 0
        return f"the marker's epoch {marker.epoch} was superseded by epoch {now}"
    return None


def restore(
    store: Store,
    settings: Settings,
    *,
    at: datetime | None = None,
    read_only: bool = False,
    store_factory: Callable[[], Store] | None = None,
) -> RestoreReport:
    """Restore the instance's tree (as of ``at`` if given) into ``settings.sessions_dir``.

    With ``store_factory`` (a way to open another connection), pages of the
    tree are written by several forked processes, each on its own connection.
    Raises ``ConfigError`` (target unusable), ``UnsafePathError``,
    ``IntegrityError``, ``DatabaseUnavailable`` and ``WahaSyncError`` (a local
    write failed); a restore that raised wrote no new marker.
    """
    started = time.monotonic()
    root = settings.sessions_dir
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(
            f"sessions_dir: cannot create ({exc.strerror}) (got {str(root)!r})",
            "--sessions-dir pointing at a writable folder",
        ) from exc
    with _volume_lock(root):
        report = _restore_locked(store, settings, at, read_only, store_factory, started)
    report.seconds = time.monotonic() - started
    return report


def _restore_locked(
    store: Store,
    settings: Settings,
    at: datetime | None,
    read_only: bool,
    store_factory: Callable[[], Store] | None,
    started: float,
) -> RestoreReport:
    root = settings.sessions_dir
    name = settings.instance
    report = RestoreReport()
    marker, unreadable = _marker_or_none(root)
    database = store.database_id()
    before = store.instance(name)
    why = _not_newer(marker, unreadable, name, database, before, at=at, read_only=read_only)
    found = scan(root, settings.excludes(), settings.limits()) if why is None else None
    if read_only:
        inst = before
    else:
        inst = store.claim(name, holder_name("restore"))
        log.info("claimed instance %s: epoch %d", name, inst.epoch)
        if why is None and (before is None or inst.epoch != before.epoch + 1):
            why = f"another restore claimed the instance meanwhile (epoch {inst.epoch})"
    report.epoch = 0 if inst is None or read_only else inst.epoch
    report.commit_id = inst.last_commit if inst is not None else 0
    if why is None and found is not None and inst is not None:
        _keep_volume(store, settings, inst, found, report, database, started)
        return report
    if at is not None:
        report.commit_id = store.commit_at(name, at) or 0
    known: set[str] = set()
    # The common case on a new pod: nothing to compare or keep, so no local reads at all.
    empty = all(e.name == MARKER_DIR for e in os.scandir(root))
    if report.commit_id == 0 and at is None:
        log.info("nothing stored for instance %s", name)  # the volume is kept as it is
        report.kept_local = [] if empty else _local_leftovers(root, known)
        _name_paths("kept local file unknown to the database", report.kept_local, "kept")
    else:
        survey = None
        if not empty:
            log.info("the database's tree wins (%s); differing local files are moved aside", why)
            displacer = Displacer(root, stamp_now())
            survey = Survey.of(displacer, Excluder(settings.excludes()))
            report.displaced_to = displacer.rel_folder
            survey.side_files()
        # Having just claimed the instance, nobody else may commit: the current state
        # is the last commit, read by key. Otherwise assemble it from the history.
        current = not read_only and at is None
        pages: Iterator[list[StoredEntry]] = iter(())
        if report.commit_id:
            pages = store.live_entries(name) if current else store.tree(name, report.commit_id)
        known = _restore_tree(store, pages, settings, report, empty, store_factory, survey)
        if survey is not None:
            survey.leftovers(known, report.displaced)
            report.displaced = survey.moved + report.displaced
        TargetDir(str(root)).sync_and_close()  # the renames and writes, before the marker
        if report.displaced:
            _name_paths(f"displaced local file (now in {report.displaced_to})", report.displaced)
            log.info(
                "displaced %s to %s (kept %g hours)",
                plural(len(report.displaced), "local file"),
                report.displaced_to,
                settings.displaced_retention_hours,
            )
    _finish(settings, report, inst, database, read_only, started)
    return report


def _name_paths(what: str, paths: list[str], verb: str = "displaced") -> None:
    for rel in paths[:LOGGED_PATHS]:
        log.info("%s: %s", what, rel)
    if len(paths) > LOGGED_PATHS:
        log.info("... and %s more %s", plural(len(paths) - LOGGED_PATHS, "local file"), verb)


def _keep_volume(
    store: Store,
    settings: Settings,
    inst: Instance,
    found: ScanResult,
    report: RestoreReport,
    database: str,
    started: float,
) -> None:
    """The volume is the last writer: mark the new epoch, write nothing, count the changes."""
    report.volume_newer = True
    candidates = []
    for c in found.candidates:  # temp files of an interrupted restore are ours to remove
        if TMP_MARK in c.rel.rpartition("/")[2]:
            Path(c.path).unlink(missing_ok=True)
        else:
            candidates.append(c)
    report.files = len(candidates)
    report.bytes = sum(c.size for c in candidates)
    _finish(settings, report, inst, database, False, started)  # the claim is ours from here
    stored: dict[str, StoredEntry] = {}
    try:
        for page in store.live_entries(settings.instance):
            stored.update((e.path, e) for e in page)
    except DatabaseUnavailable as exc:  # the claim and the marker are done: not a failure
        log.info(
            "volume is newer than the database: local changes kept; the sidecar ships them "
            "(not counted: %s)",
            exc.message,
        )
        _prune(settings)
        return
    differ = 0
    for c in candidates:
        e = stored.get(c.rel)
        differ += e is None or (e.size_bytes, e.mtime_ns, e.mode) != (c.size, c.mtime_ns, c.mode)
    gone = deletions(found, stored, Excluder(settings.excludes()))
    report.local_changes = differ + len(gone)
    log.info(
        "volume is newer than the database: %s kept; the sidecar ships them",
        plural(report.local_changes, "local change"),
    )
    _prune(settings)


def _prune(settings: Settings) -> None:
    root = settings.sessions_dir
    if (root / MARKER_DIR / "displaced").is_dir() and prune(
        root, settings.displaced_retention_hours
    ):
        write_summary(root, [], settings.displaced_retention_hours)


def _finish(
    settings: Settings,
    report: RestoreReport,
    inst: Instance | None,
    database: str,
    read_only: bool,
    started: float,
) -> None:
    """Prune old displaced files, write the marker (the restore's last act), set owners."""
    root = settings.sessions_dir
    if report.displaced:
        prune(root, settings.displaced_retention_hours)
        write_summary(root, report.displaced, settings.displaced_retention_hours)
    elif not report.volume_newer:
        _prune(settings)
    write_marker(
        root,
        Marker(
            settings.instance,
            report.epoch,
            inst.holder if inst else "",
            report.commit_id,
            read_only,
            "restore",
            datetime.now(UTC).isoformat(),
            report.files,
            report.bytes,
            round(time.monotonic() - started, 3),
            database,
        ),
    )
    if settings.uid is not None or settings.gid is not None:
        owner = (
            -1 if settings.uid is None else settings.uid,
            -1 if settings.gid is None else settings.gid,
        )
        for path in (root, root / MARKER_DIR, marker_path(root), root / MARKER_DIR / LOCK_FILE):
            os.chown(path, *owner)  # the sidecar, not root, updates these later
        for path in (root / MARKER_DIR / "displaced", root / MARKER_DIR / "displaced.json"):
            if path.exists():
                os.chown(path, *owner)


def _restore_tree(
    store: Store,
    pages: Iterator[list[StoredEntry]],
    settings: Settings,
    report: RestoreReport,
    empty: bool,
    factory: Callable[[], Store] | None,
    survey: Survey | None,
) -> set[str]:
    """Write every file of the tree: pages go to forked processes when a factory is given.

    With ``survey`` (the database wins over local files), what stands in the way of a
    write is moved aside first; the paths moved are added to ``report.displaced``.
    """
    displace = survey.displacer if survey is not None else None
    opts = WriteOptions(
        settings.sessions_dir,
        settings.instance,
        settings.uid,
        settings.gid,
        settings.workers,
        empty,
        displace,
    )
    procs = min(os.cpu_count() or 1, MAX_PROCESSES) if factory is not None else 1
    known: set[str] = set()
    results: list[PageResult] = []
    if procs == 1:
        writer = PageWriter(store, opts, factory)
        try:
            for page in pages:
                known.update(_checked(page, survey))
                results.append(writer.write_page(page))
        finally:
            writer.close()
    else:
        assert factory is not None
        store.close()  # forked children must not inherit an open connection
        ctx = multiprocessing.get_context("fork")
        with ProcessPoolExecutor(
            procs, mp_context=ctx, initializer=start_process, initargs=(factory, opts, os.getpid())
        ) as pool:
            pool.submit(int).result()  # fork every worker now, before we reconnect
            pending: list[Future[PageResult]] = []
            for page in pages:
                known.update(_checked(page, survey))
                pending.append(pool.submit(write_page_in_process, page))
                while len(pending) > 2 * procs:  # bounded memory: a few pages in flight
                    results.append(pending.pop(0).result())
            results.extend(f.result() for f in pending)
    for r in results:
        report.files += r.files
        report.unchanged += r.unchanged
        report.bytes += r.bytes
        report.displaced += r.displaced
    report.written = report.files - report.unchanged
    log.info(
        "restored %s (%d unchanged, %s)",
        plural(report.written, "file"),
        report.unchanged,
        plural(procs, "process"),
    )
    return known


def _checked(page: list[StoredEntry], survey: Survey | None) -> list[str]:
    """The page's paths, checked safe, with local files standing where they need a folder
    moved aside (here, before any writer sees the page, so no two writers race for one)."""
    paths = check_rel_all(page)
    if survey is not None:
        survey.clear_folders(paths)
    return paths


def check_rel_all(page: list[StoredEntry]) -> list[str]:
    """The page's paths, each checked safe before anything of the page is written."""
    for e in page:
        check_rel(e.path)
    return [e.path for e in page]

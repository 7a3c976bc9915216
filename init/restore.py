"""``waha-sync restore``: fill the target directory from the database.

Rules for a non-empty target: a file identical to the stored version is left
alone; a differing one is replaced by the stored version; a local file the
database does not know is kept and listed. Every write is a temp file plus
rename, verified against its SHA-256 first; one filesystem sync makes them
all durable before the marker is written, so a restore that crashes has no
marker and simply runs again. The writing itself is ``tree_writer``'s.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from waha_sync.common.config import Settings
from waha_sync.common.errors import ConfigError
from waha_sync.common.marker import MARKER_DIR, Marker, marker_path, write_marker
from waha_sync.common.push import holder_name
from waha_sync.common.store import Store, StoredEntry
from waha_sync.common.words import plural
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
    name = settings.instance
    report = RestoreReport()
    if read_only:
        inst = store.instance(name)
    else:
        inst = store.claim(name, holder_name("restore"))
        log.info("claimed instance %s: epoch %d", name, inst.epoch)
    report.epoch = 0 if inst is None or read_only else inst.epoch
    report.commit_id = inst.last_commit if inst is not None else 0
    if at is not None:
        report.commit_id = store.commit_at(name, at) or 0
    known: set[str] = set()
    # The common case on a new pod: nothing to compare or keep, so no local reads at all.
    empty = all(e.name == MARKER_DIR for e in os.scandir(root))
    if report.commit_id == 0:
        log.info("nothing stored for instance %s", name)
    else:
        # Having just claimed the instance, nobody else may commit: the current state
        # is the last commit, read by key. Otherwise assemble it from the history.
        current = not read_only and at is None
        pages = store.live_entries(name) if current else store.tree(name, report.commit_id)
        known = _restore_tree(store, pages, settings, report, empty, store_factory)
    report.kept_local = [] if empty else _local_leftovers(root, known)
    for rel in report.kept_local[:20]:
        log.info("kept local file unknown to the database: %s", rel)
    if len(report.kept_local) > 20:
        log.info("... and %s kept", plural(len(report.kept_local) - 20, "more local file"))
    write_marker(
        root,
        Marker(
            name,
            report.epoch,
            inst.holder if inst else "",
            report.commit_id,
            read_only,
            "restore",
            datetime.now(UTC).isoformat(),
            report.files,
            report.bytes,
            round(time.monotonic() - started, 3),
        ),
    )
    if settings.uid is not None or settings.gid is not None:
        owner = (
            -1 if settings.uid is None else settings.uid,
            -1 if settings.gid is None else settings.gid,
        )
        for path in (root, root / MARKER_DIR, marker_path(root)):
            os.chown(path, *owner)  # the sidecar, not root, updates these later
    report.seconds = time.monotonic() - started
    return report


def _restore_tree(
    store: Store,
    pages: Iterator[list[StoredEntry]],
    settings: Settings,
    report: RestoreReport,
    empty: bool,
    factory: Callable[[], Store] | None,
) -> set[str]:
    """Write every file of the tree: pages go to forked processes when a factory is given."""
    opts = WriteOptions(
        settings.sessions_dir,
        settings.instance,
        settings.uid,
        settings.gid,
        settings.workers,
        empty,
    )
    procs = min(os.cpu_count() or 1, MAX_PROCESSES) if factory is not None else 1
    known: set[str] = set()
    results: list[PageResult] = []
    if procs == 1:
        writer = PageWriter(store, opts, factory)
        try:
            for page in pages:
                known.update(check_rel_all(page))
                results.append(writer.write_page(page))
        finally:
            writer.close()
    else:
        assert factory is not None
        store.close()  # forked children must not inherit an open connection
        ctx = multiprocessing.get_context("fork")
        with ProcessPoolExecutor(
            procs, mp_context=ctx, initializer=start_process, initargs=(factory, opts)
        ) as pool:
            pool.submit(int).result()  # fork every worker now, before we reconnect
            pending: list[Future[PageResult]] = []
            for page in pages:
                known.update(check_rel_all(page))
                pending.append(pool.submit(write_page_in_process, page))
                while len(pending) > 2 * procs:  # bounded memory: a few pages in flight
                    results.append(pending.pop(0).result())
            results.extend(f.result() for f in pending)
    for r in results:
        report.files += r.files
        report.unchanged += r.unchanged
        report.bytes += r.bytes
    report.written = report.files - report.unchanged
    log.info(
        "restored %s (%d unchanged, %s)",
        plural(report.written, "file"),
        report.unchanged,
        plural(procs, "process"),
    )
    TargetDir(str(settings.sessions_dir)).sync_and_close()
    return known


def check_rel_all(page: list[StoredEntry]) -> list[str]:
    """The page's paths, each checked safe before anything of the page is written."""
    for e in page:
        check_rel(e.path)
    return [e.path for e in page]

"""``waha-sync restore``: fill the target directory from the database.

Rules for a non-empty target: a file identical to the stored version is left
alone; a differing one is replaced by the stored version; a local file the
database does not know is kept and listed. Every write is a temp file plus
rename, verified against its SHA-256 first; one filesystem sync makes them
all durable before the marker is written, so a restore that crashes has no
marker and simply runs again. Memory stays bounded: the tree is read a page
at a time and content in groups of ``FETCH_BYTES``.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from waha_sync.common.config import Settings
from waha_sync.common.content import decode
from waha_sync.common.errors import ConfigError
from waha_sync.common.marker import MARKER_DIR, Marker, marker_path, write_marker
from waha_sync.common.push import holder_name
from waha_sync.common.store import Store, StoredEntry
from waha_sync.init.safepath import TMP_MARK, TargetDir, check_rel

log = logging.getLogger("waha_sync.restore")
FETCH_BYTES = 8 * 1024 * 1024
INFLIGHT_BYTES = 48 * 1024 * 1024
WRITE_BATCH = 32  # files per write task


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


def _same_locally(root: Path, e: StoredEntry) -> bool:
    try:
        path = root / e.path
        st = path.lstat()
        if not path.is_file() or path.is_symlink() or st.st_size != e.size_bytes:
            return False
        return hashlib.sha256(path.read_bytes()).hexdigest() == e.sha256
    except OSError:
        return False


def _fetch_groups(entries: list[StoredEntry]) -> Iterator[list[StoredEntry]]:
    group: list[StoredEntry] = []
    size = 0
    for e in entries:
        group.append(e)
        size += e.stored_bytes
        if size >= FETCH_BYTES:
            yield group
            group, size = [], 0
    if group:
        yield group


def _write_all(target: TargetDir, batch: list[tuple[StoredEntry, list[bytes]]]) -> int:
    """Verify and write a batch of files (one task per batch keeps thread overhead low)."""
    for e, chunks in batch:
        target.write(
            e.path, decode(e.sha256, e.size_bytes, e.codec, chunks, e.path), e.mode, e.mtime_ns
        )
    return len(batch)


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
) -> RestoreReport:
    """Restore the instance's tree (as of ``at`` if given) into ``settings.sessions_dir``."""
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
        _restore_tree(store, settings, report, known, empty)
    report.kept_local = [] if empty else _local_leftovers(root, known)
    for rel in report.kept_local[:20]:
        log.info("kept local file unknown to the database: %s", rel)
    if len(report.kept_local) > 20:
        log.info("... and %d more local files kept", len(report.kept_local) - 20)
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
    store: Store, settings: Settings, report: RestoreReport, known: set[str], empty: bool
) -> None:
    root = settings.sessions_dir
    target = TargetDir(str(root), settings.uid, settings.gid)
    pending: list[tuple[Future[int], int]] = []
    inflight = 0
    try:
        with ThreadPoolExecutor(settings.workers, thread_name_prefix="restore") as pool:
            for page in store.tree(settings.instance, report.commit_id):
                for e in page:
                    check_rel(e.path)
                    known.add(e.path)
                report.files += len(page)
                report.bytes += sum(e.size_bytes for e in page)
                need = page
                if not empty:
                    same = list(pool.map(lambda e: _same_locally(root, e), page))
                    need = [e for e, s in zip(page, same, strict=True) if not s]
                report.unchanged += len(page) - len(need)
                for group in _fetch_groups(need):
                    chunks = store.read_blobs(group)
                    for i in range(0, len(group), WRITE_BATCH):
                        part = group[i : i + WRITE_BATCH]
                        batch = [(e, chunks.get(e.sha256, [])) for e in part]
                        size = sum(e.stored_bytes for e in part)
                        pending.append((pool.submit(_write_all, target, batch), size))
                        inflight += size
                    while inflight > INFLIGHT_BYTES and pending:
                        fut, size = pending.pop(0)
                        fut.result()
                        inflight -= size
                log.info("restored %d files so far", report.files - report.unchanged)
            for fut, _ in pending:
                fut.result()
        report.written = report.files - report.unchanged
        target.sync()
    finally:
        target.close()

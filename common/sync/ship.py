"""Shipping changes: read, hash, compress, upload content, then one commit.

This is the core both drivers share: the one-shot ``push`` hands it every
file of a scan, the sidecar the files that changed. Content is uploaded in
idempotent transactions of its own first (it is addressed by hash, so an
orphan left by a crash is harmless and collected later); then a single
transaction records every changed file and deletion as one commit, so the
database only ever holds complete commits.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace

from waha_sync.common.db.bulk import batches
from waha_sync.common.store.base import Store, StoredEntry
from waha_sync.common.sync.content import EncodedBlob, encode, sha256_hex
from waha_sync.common.sync.pieces import (
    PIECED_MIN_BYTES,
    PiecedFiles,
    PiecedUpload,
    PieceWriter,
    upload_pieced,
)
from waha_sync.common.sync.read import (
    SQLITE_MIME,
    FileVersion,
    Vanished,
    read_version,
)
from waha_sync.common.sync.scan import Candidate, Skipped, fmt_bytes, is_sqlite, unreadable
from waha_sync.common.words import plural

log = logging.getLogger("waha_sync.sync")
GROUP_BYTES = 8 * 1024 * 1024
GROUP_FILES = 2000
TASK_FILES = 64  # files per read task


@dataclass
class ShipReport:
    """What one shipment did; ``commit_id`` is None when there was nothing to commit.

    ``files_*`` are counts of files, ``*_bytes`` byte counts, ``*_entries`` and
    ``*_paths`` the files themselves.
    """

    files_uploaded: int = 0  # changed files whose new version was uploaded
    files_unchanged: int = 0  # files found as stored (by stat, or read and compared)
    files_deleted: int = 0  # deletions the commit recorded (tombstones)
    skipped: list[Skipped] = field(default_factory=list)  # files left out, with the reason
    vanished_paths: list[str] = field(default_factory=list)  # gone while being read
    raw_bytes: int = 0  # uncompressed size of the uploaded files
    stored_bytes: int = 0  # what the new content takes in the database (compressed)
    commit_id: int | None = None
    elapsed_seconds: float = 0.0  # wall time of the shipment (monotonic clock)
    committed_entries: list[StoredEntry] = field(default_factory=list)  # new versions recorded
    unchanged_entries: list[StoredEntry] = field(default_factory=list)  # read: as stored
    deleted_paths: list[str] = field(default_factory=list)  # paths recorded as deleted
    pieces_written: int = 0  # pieces of large files uploaded (changed pieces only)


@dataclass(frozen=True)
class _Pieced:
    """A file stored as pieces: read later, in the shipping thread."""

    candidate: Candidate
    sqlite: bool


@dataclass(frozen=True)
class _Read:
    entry: StoredEntry
    blob: EncodedBlob | None  # None: same content as stored


def mime_of(rel: str, sqlite: bool) -> str | None:
    import mimetypes

    return SQLITE_MIME if sqlite else mimetypes.guess_type(rel, strict=False)[0]


def unchanged_by_stat(c: Candidate, stored: StoredEntry | None) -> bool:
    """Same size, mtime and mode as stored: unchanged without reading (SQLite always re-read)."""
    return (
        stored is not None
        and stored.mime != SQLITE_MIME
        and (stored.size_bytes, stored.mtime_ns, stored.mode) == (c.size, c.mtime_ns, c.mode)
    )


_Result = _Read | _Pieced | Skipped | str


def _process_all(cs: Sequence[Candidate], stored: Mapping[str, StoredEntry]) -> list[_Result]:
    return [_process(c, stored.get(c.rel)) for c in cs]


def _process(c: Candidate, stored: StoredEntry | None) -> _Result:
    try:
        sqlite = is_sqlite(c.path)
        if sqlite or c.size >= PIECED_MIN_BYTES:
            return _Pieced(c, sqlite)
        got = read_version(c)
    except (Vanished, FileNotFoundError):
        return c.rel
    except OSError as exc:
        return unreadable(c.rel, exc)
    if isinstance(got, Skipped):
        return got
    return _to_read(got, stored)


def _to_read(v: FileVersion, stored: StoredEntry | None) -> _Read:
    sha = sha256_hex(v.data)
    entry = StoredEntry(v.rel, sha, v.size, v.mode, v.mtime_ns, mime_of(v.rel, False))
    if stored is not None and (stored.sha256, stored.mode) == (sha, v.mode):
        return _Read(entry, None)
    return _Read(entry, encode(v.data, sha))


def ship(
    store: Store,
    instance: str,
    epoch: int,
    holder: str,
    candidates: Sequence[Candidate],
    stored: Mapping[str, StoredEntry],
    deleted: Sequence[str] = (),
    workers: int = 4,
    group_files: int = GROUP_FILES,
    on_group: Callable[[], None] | None = None,
    *,
    pieced: PiecedFiles,
) -> ShipReport:
    """Upload what changed among ``candidates``, then commit it with ``deleted`` as one batch.

    ``stored`` is what the database holds for these paths (for change
    detection). Files are read and uploaded ``group_files`` at a time (fewer:
    less memory held at once, more round trips); ``on_group`` is called after
    each group is uploaded (progress). Files that vanish mid-way are
    committed as deletions if the database holds them. SQLite databases and large
    files go as pieces (``waha_sync.common.sync.pieces``); ``pieced`` keeps their state
    between calls. Raises what ``Store`` raises; nothing is committed then.
    """
    started = time.monotonic()
    report = ShipReport()
    changed: list[StoredEntry] = []
    todo = [c for c in candidates if not unchanged_by_stat(c, stored.get(c.rel))]
    report.files_unchanged = len(candidates) - len(todo)
    writer = PieceWriter(store, instance, epoch)
    big: list[_Pieced] = []
    uploads: list[PiecedUpload] = []
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="read") as pool:
        pending: list[Future[list[_Result]]] | None = None
        groups = batches(todo, lambda c: c.size, GROUP_BYTES, group_files)
        for group in [*groups, []]:
            # Tasks of up to TASK_FILES files: one future per file cost more than the read.
            step = max(1, min(TASK_FILES, -(-len(group) // workers)))
            parts = [group[i : i + step] for i in range(0, len(group), step)]
            nxt = [pool.submit(_process_all, part, stored) for part in parts]
            if pending is not None:
                got = [r for f in pending for r in f.result()]
                big.extend(r for r in got if isinstance(r, _Pieced))
                _upload([r for r in got if not isinstance(r, _Pieced)], store, report, changed)
                if on_group is not None:
                    on_group()
                (log.info if len(todo) > group_files else log.debug)(
                    "uploaded %d of %s so far (%s raw)",
                    report.files_uploaded,
                    plural(len(todo), "changed file"),
                    fmt_bytes(report.raw_bytes),
                )
            pending = nxt
        for p in big:
            _ship_pieced(p, writer, pieced, stored, pool, report, changed, uploads)
            if on_group is not None:
                on_group()
    gone = [p for p in report.vanished_paths if p in stored] + list(deleted)
    if changed or gone:
        pieces_for = writer.begin() if any(e.piece_bytes for e in changed) else None
        result = store.commit(instance, epoch, holder, changed, gone, pieces_for)
        report.commit_id = result.commit_id
        report.files_deleted = result.files_deleted
        report.committed_entries = [
            replace(e, commit_id=result.commit_id) if e.piece_bytes else e for e in changed
        ]
        report.deleted_paths = gone
    for u in uploads:  # stored now: the next ship builds on these lists
        pieced.lists[u.entry.path] = u.pieces
        if u.snapshot is not None:
            pieced.followers[u.entry.path].acknowledge(u.snapshot)
    for rel in (*report.vanished_paths, *gone):
        pieced.forget(rel)
    report.elapsed_seconds = time.monotonic() - started
    return report


def _ship_pieced(
    p: _Pieced,
    writer: PieceWriter,
    files: PiecedFiles,
    stored: Mapping[str, StoredEntry],
    pool: ThreadPoolExecutor,
    report: ShipReport,
    changed: list[StoredEntry],
    uploads: list[PiecedUpload],
) -> None:
    c = p.candidate
    old = stored.get(c.rel)
    try:
        got = upload_pieced(writer, files, c, old, mime_of(c.rel, p.sqlite), p.sqlite, pool)
    except FileNotFoundError:
        report.vanished_paths.append(c.rel)
        return
    if isinstance(got, Skipped):
        report.skipped.append(got)
        return
    uploads.append(got)
    if not got.changed and old is not None:
        report.files_unchanged += 1
        report.unchanged_entries.append(replace(got.entry, commit_id=old.commit_id))
        return
    changed.append(got.entry)
    report.files_uploaded += 1
    report.raw_bytes += got.entry.size_bytes
    report.stored_bytes += got.bytes_stored
    report.pieces_written += got.pieces_written


def _upload(
    results: list[_Result],
    store: Store,
    report: ShipReport,
    changed: list[StoredEntry],
) -> None:
    blobs: dict[str, EncodedBlob] = {}
    for r in results:
        if isinstance(r, Skipped):
            report.skipped.append(r)
        elif isinstance(r, str):
            report.vanished_paths.append(r)
        elif isinstance(r, _Pieced):
            raise AssertionError("pieced files are shipped apart")
        elif r.blob is None:
            report.files_unchanged += 1
            report.unchanged_entries.append(r.entry)
        else:
            blobs[r.entry.sha256] = r.blob
            changed.append(r.entry)
            report.files_uploaded += 1
            report.raw_bytes += r.entry.size_bytes
    missing = store.missing_blobs(blobs)
    fresh = [blobs[s] for s in sorted(missing)]
    store.put_blobs(fresh)
    report.stored_bytes += sum(b.stored_bytes for b in fresh)

"""Writing one slice of a stored tree into the target (the restore's inner loop).

The tree is split into slices by a hash of each path, so several processes
(each with its own database connection and writer threads) can restore at
once without coordinating: Python threads alone leave a second core idle,
because every file costs interpreter time under the GIL. Memory stays
bounded in each: the tree is read a page at a time, content in groups of
``FETCH_BYTES``, with at most ``INFLIGHT_BYTES`` waiting to be written.
"""

from __future__ import annotations

import hashlib
import logging
import zlib
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from waha_sync.common.bulk import batches
from waha_sync.common.content import decode
from waha_sync.common.store import Store, StoredEntry
from waha_sync.init.safepath import TargetDir, check_rel

log = logging.getLogger("waha_sync.restore")
FETCH_BYTES = 8 * 1024 * 1024
INFLIGHT_BYTES = 48 * 1024 * 1024
WRITE_BATCH = 32  # files per write task


@dataclass(frozen=True)
class SliceJob:
    """What one slice restores: ``slice_no`` of ``slices`` of the tree at ``commit_id``."""

    instance: str
    commit_id: int
    root: Path
    uid: int | None
    gid: int | None
    threads: int
    empty: bool  # the target held nothing: skip comparing with local files
    slice_no: int = 0
    slices: int = 1


@dataclass
class SliceResult:
    files: int = 0
    unchanged: int = 0
    bytes: int = 0
    known: list[str] = field(default_factory=list)


def in_slice(path: str, job: SliceJob) -> bool:
    return job.slices == 1 or zlib.crc32(path.encode()) % job.slices == job.slice_no


def _same_locally(root: Path, e: StoredEntry) -> bool:
    try:
        path = root / e.path
        st = path.lstat()
        if not path.is_file() or path.is_symlink() or st.st_size != e.size_bytes:
            return False
        return hashlib.sha256(path.read_bytes()).hexdigest() == e.sha256
    except OSError:
        return False


def _write_all(target: TargetDir, batch: list[tuple[StoredEntry, list[bytes]]]) -> int:
    """Verify and write a batch of files (one task per batch keeps thread overhead low)."""
    for e, chunks in batch:
        data = decode(e.sha256, e.size_bytes, e.codec, chunks, e.path)
        target.write(e.path, data, e.mode, e.mtime_ns)
    return len(batch)


def write_slice(store: Store, job: SliceJob) -> SliceResult:
    """Restore the files of one slice; raises on the first failure (nothing half-written)."""
    result = SliceResult()
    target = TargetDir(str(job.root), job.uid, job.gid)
    pending: list[tuple[Future[int], int]] = []
    inflight = 0
    try:
        with ThreadPoolExecutor(job.threads, thread_name_prefix="restore") as pool:
            for full_page in store.tree(job.instance, job.commit_id):
                page = [e for e in full_page if in_slice(e.path, job)]
                for e in page:
                    check_rel(e.path)
                    result.known.append(e.path)
                result.files += len(page)
                result.bytes += sum(e.size_bytes for e in page)
                need = page
                if not job.empty:
                    same = list(pool.map(lambda e: _same_locally(job.root, e), page))
                    need = [e for e, s in zip(page, same, strict=True) if not s]
                result.unchanged += len(page) - len(need)
                for group in batches(need, lambda e: e.stored_bytes, FETCH_BYTES):
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
            for fut, _ in pending:
                fut.result()
    finally:
        target.close()
    return result

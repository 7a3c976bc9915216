"""Writing pages of a stored tree into the target (the restore's inner loop).

The restore reads the tree's metadata a page at a time and hands each page to
a ``PageWriter``: in the restore process itself, or in one of several forked
processes, each with its own database connection and writer threads.
Python threads alone leave a second core idle, because every file costs
interpreter time under the GIL; pages spread over processes do not. Memory
stays bounded: a few pages in flight, content fetched in groups of
``FETCH_BYTES``.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import signal
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from waha_sync.common.db.bulk import batches
from waha_sync.common.store.base import Store, StoredEntry
from waha_sync.common.sync.content import decode
from waha_sync.common.sync.pieces import PieceRows, file_list_digest, write_pieces
from waha_sync.init.displace import Displacer
from waha_sync.init.safepath import TargetDir

FETCH_BYTES = 8 * 1024 * 1024
FETCHERS = 3  # threads (each with its own connection) fetching pieces of a large file
WRITE_BATCH = 32  # files per write task


@dataclass(frozen=True)
class WriteOptions:
    root: Path
    instance: str
    uid: int | None
    gid: int | None
    threads: int
    empty: bool  # the target held nothing at the start: skip comparing with local files
    # Set when the database's tree wins over local files: what stands where a file is
    # written is moved aside first (``init.displace``), never overwritten.
    displace: Displacer | None = None


@dataclass(frozen=True)
class PageResult:
    files: int
    unchanged: int
    bytes: int
    displaced: tuple[str, ...] = ()


def _same_locally(root: Path, e: StoredEntry) -> bool:
    try:
        path = root / e.path
        st = path.lstat()
        if not path.is_file() or path.is_symlink() or st.st_size != e.size_bytes:
            return False
        if e.piece_bytes is not None:
            return file_list_digest(str(path), e.size_bytes, e.piece_bytes) == e.sha256
        return hashlib.sha256(path.read_bytes()).hexdigest() == e.sha256
    except OSError:
        return False


def _write_all(
    target: TargetDir, batch: list[tuple[StoredEntry, list[bytes]]], displace: Displacer | None
) -> list[str]:
    """Verify and write a batch of files (one task per batch keeps thread overhead low);
    the local paths moved aside on the way."""
    moved: list[str] = []
    for e, chunks in batch:
        data = decode(e.sha256, e.size_bytes, e.codec, chunks, e.path)
        if displace is not None:
            moved += displace.clear_way(e.path)
        target.write(e.path, data, e.mode, e.mtime_ns)
    return moved


class PageWriter:
    """Fetches and writes pages of entries (whose paths the caller has checked)."""

    def __init__(
        self, store: Store, opts: WriteOptions, factory: Callable[[], Store] | None = None
    ) -> None:
        self.store = store
        self.opts = opts
        self.factory = factory  # connections for fetching pieces in parallel
        self.fetchers: ThreadPoolExecutor | None = None
        self._local = threading.local()
        self._lock = threading.Lock()
        self._own: list[Store] = []
        self.target = TargetDir(str(opts.root), opts.uid, opts.gid)
        self.pool = ThreadPoolExecutor(opts.threads, thread_name_prefix="restore")

    def write_page(self, page: list[StoredEntry]) -> PageResult:
        """Write every entry of ``page`` that differs locally; raises on the first failure."""
        need = page
        if not self.opts.empty:
            same = list(self.pool.map(lambda e: _same_locally(self.opts.root, e), page))
            need = [e for e, s in zip(page, same, strict=True) if not s]
        moved: list[str] = []
        for e in [e for e in need if e.piece_bytes is not None]:  # streamed, one at a time
            if self.opts.displace is not None:
                moved += self.opts.displace.clear_way(e.path)
            self.target.write_with(e.path, partial(self._write_pieces, e), e.mode, e.mtime_ns)
        writes: list[Future[list[str]]] = []
        need_blobs = [e for e in need if e.piece_bytes is None]
        for group in batches(need_blobs, lambda e: e.stored_bytes, FETCH_BYTES):
            chunks = self.store.read_blobs(group)
            for part in batches(group, lambda e: 1, WRITE_BATCH):
                batch = [(e, chunks.get(e.sha256, [])) for e in part]
                writes.append(self.pool.submit(_write_all, self.target, batch, self.opts.displace))
        moved += [rel for fut in writes for rel in fut.result()]
        size = sum(e.size_bytes for e in page)
        return PageResult(len(page), len(page) - len(need), size, tuple(moved))

    def _write_pieces(self, e: StoredEntry, fd: int) -> None:
        def fetch(lo: int, hi: int) -> PieceRows:
            return self._fetch_store().piece_data(self.opts.instance, e.path, e.commit_id, lo, hi)

        if self.factory is not None and self.fetchers is None:
            self.fetchers = ThreadPoolExecutor(FETCHERS, thread_name_prefix="fetch")
        write_pieces(fetch, e, fd, self.fetchers)

    def _fetch_store(self) -> Store:
        """The calling thread's store: its own connection in a fetch thread."""
        if self.factory is None or threading.current_thread() is threading.main_thread():
            return self.store
        got: Store | None = getattr(self._local, "store", None)
        if got is None:
            got = self._local.store = self.factory()
            with self._lock:
                self._own.append(got)
        return got

    def close(self) -> None:
        """Wait for the threads and release the folder handles (the store stays open)."""
        self.pool.shutdown()
        if self.fetchers is not None:
            self.fetchers.shutdown()
        for own in self._own:
            own.close()
        self.target.close()


# In each forked restore process: the writer its initializer built.
_process_writer: PageWriter | None = None


def start_process(factory: Callable[[], Store], opts: WriteOptions, parent: int) -> None:
    """Initializer of a restore process forked by process ``parent``: it dies with that
    process, then gets its own connection and writer."""
    global _process_writer
    die_with_parent(parent)
    _process_writer = PageWriter(factory(), opts, factory)


_PR_SET_PDEATHSIG = 1  # prctl(2) option: a signal sent to us when our parent dies (Linux)


def die_with_parent(parent: int) -> None:
    """SIGKILL this process as soon as ``parent`` (the process that forked it) dies.

    A forked writer inherits the restore's open lock files (the target's restore lock,
    ``up``'s data-folder lock): orphaned by a ``kill -9`` of the restore alone, it would
    hold them forever and every later restore would wait. Uses ``prctl(PR_SET_PDEATHSIG)``
    (Linux, prctl(2)); exits at once if ``parent`` died before the call. Raises
    ``OSError`` if the kernel refuses.
    """
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
        code = ctypes.get_errno()
        raise OSError(code, f"prctl(PR_SET_PDEATHSIG): {os.strerror(code)}")
    if os.getppid() != parent:
        os._exit(1)


def write_page_in_process(page: list[StoredEntry]) -> PageResult:
    assert _process_writer is not None, "start_process did not run"
    return _process_writer.write_page(page)

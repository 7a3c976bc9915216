"""Large files as pieces: a new version stores only the pieces that changed.

A SQLite database (whatever its size) and any other file over ``PIECED_MIN_BYTES`` is
stored as fixed-size pieces: for SQLite, ``sqlite_piece_bytes(page size)`` (one page of
4 KiB or more, several smaller pages), so a changed page costs one piece; for other
files ``FILE_PIECE_BYTES``. Each piece is named and verified by the SHA-256 of its raw
bytes. A version writes rows only for the pieces that differ from the version before it
(``Store.put_pieces``, under the commit number it is about to get); the whole list of a
version at commit C is, per index, the row of the highest commit at or before C. So what
a version records grows with what changed, never with the file's size, and no periodic
full list is needed: garbage collection folds old rows into the version at its horizon.

The version's ``sha256`` is the SHA-256 of its pieces' raw digests concatenated in
index order (``list_digest``), a hash list over the file's bytes: restore recomputes
it from the bytes it wrote, so a file is verified whole, not only piece by piece.

What changed is known without reading the file: a SQLite database is followed through
its WAL (``SqliteFollower``: a scratch copy on the volume, brought forward by the WAL
frames committed since, which name the pages they change), so a ship hashes and
uploads the pieces of changed pages only. Other files are read whole when their size,
mtime or mode changed, and only differing pieces are uploaded. Memory holds one group
of pieces (``GROUP_BYTES``) and each file's list of digests (32 bytes per piece:
2 MiB for a 1 GiB database), never a whole file.
"""

from __future__ import annotations

import hashlib
import logging
import os
import sqlite3
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from waha_sync.common.errors import IntegrityError
from waha_sync.common.store.base import Store, StoredEntry
from waha_sync.common.sync.content import pack, unpack
from waha_sync.common.sync.marker import MARKER_DIR
from waha_sync.common.sync.scan import Candidate, SkipKind, Skipped, changing
from waha_sync.common.sync.sqlite_follow import Snapshot, SqliteFollower

log = logging.getLogger("waha_sync.sync")
T = TypeVar("T")
R = TypeVar("R")
INLINE_PIECES = 128  # fewer pieces than this are hashed and compressed in the calling thread

PIECE_TARGET = 4096  # SQLite: the smallest piece, in bytes (a page when pages are larger)
FILE_PIECE_BYTES = 256 * 1024  # other files: under the 512 KiB value limit when stored raw
PIECED_MIN_BYTES = 8 * 1024 * 1024  # other files from this size on are stored as pieces
# Raw bytes of pieces held, encoded and sent at once: smaller groups, lower peak memory
# (push and restore memory of a large database: BENCHMARKS.md, "Large, busy SQLite").
GROUP_BYTES = 2 * 1024 * 1024
DIGEST = 32
SCRATCH_DIR = "scratch"


def sqlite_piece_bytes(page_size: int) -> int:
    """Bytes per piece for a database of ``page_size`` (512 to 65536): whole pages."""
    return page_size * max(1, PIECE_TARGET // page_size)


def piece_count(size_bytes: int, piece_bytes: int) -> int:
    return -(-size_bytes // piece_bytes)


def list_digest(digests: bytes | bytearray | memoryview) -> str:
    """The version's SHA-256: over the raw piece digests concatenated in index order."""
    return hashlib.sha256(digests).hexdigest()


@dataclass
class PieceList:
    """A stored version's piece digests (``32 * count`` bytes) and what they add up to."""

    sha256: str
    size_bytes: int
    piece_bytes: int
    digests: bytearray


@dataclass
class PiecedUpload:
    """One pieced file read and its changed pieces uploaded; committed by the caller."""

    entry: StoredEntry
    pieces: PieceList
    snapshot: Snapshot | None
    changed: bool  # False: the same content as stored (nothing was written)
    pieces_written: int = 0
    bytes_raw: int = 0
    bytes_stored: int = 0


class PieceWriter:
    """Writes the piece rows of one coming commit; the number is taken at the first write."""

    def __init__(self, store: Store, instance: str, epoch: int) -> None:
        self.store = store
        self.instance = instance
        self.epoch = epoch
        self.commit_id: int | None = None

    def begin(self) -> int:
        """The commit number the rows go under; clears an unfinished upload's rows first.

        Called before any commit that records a pieced version, even one that wrote no
        row: rows an earlier attempt left under that number must not join the version.
        """
        if self.commit_id is None:
            self.commit_id = self.store.begin_pieces(self.instance, self.epoch)
        return self.commit_id

    def put(self, path: str, rows: list[tuple[int, bytes, str, bytes]]) -> None:
        self.commit_id = self.store.put_pieces(
            self.instance, self.epoch, self.commit_id, path, rows
        )


@dataclass
class PiecedFiles:
    """Per tree: the SQLite followers and the piece lists last committed, by path.

    A long-running sidecar keeps one, so a ship of a busy database reads only the
    pages its WAL says changed; ``push`` uses one for a single run. ``close`` removes
    the scratch copies.
    """

    root: Path
    lists: dict[str, PieceList] = field(default_factory=dict)
    followers: dict[str, SqliteFollower] = field(default_factory=dict)

    def follower(self, c: Candidate) -> SqliteFollower:
        got = self.followers.get(c.rel)
        if got is None:
            folder = self.root / MARKER_DIR / SCRATCH_DIR
            folder.mkdir(parents=True, exist_ok=True)
            name = hashlib.sha256(c.rel.encode()).hexdigest()[:32] + ".db"
            got = self.followers[c.rel] = SqliteFollower(c.path, str(folder / name))
        return got

    def forget(self, rel: str) -> None:
        """A path is gone or no longer pieced: drop its follower (and scratch copy)."""
        self.lists.pop(rel, None)
        if (f := self.followers.pop(rel, None)) is not None:
            f.close()

    def close(self) -> None:
        for rel in list(self.followers):
            self.forget(rel)


class _Changing(Exception):
    pass


def _stored_list(
    store: Store, instance: str, stored: StoredEntry | None, known: PieceList | None
) -> PieceList | None:
    """The digests of the stored version, from memory or the database; None when there
    is no pieced version to build on."""
    if stored is None or stored.piece_bytes is None:
        return None
    if known is not None and (known.sha256, known.piece_bytes) == (
        stored.sha256,
        stored.piece_bytes,
    ):
        return known
    count = piece_count(stored.size_bytes, stored.piece_bytes)
    digests = bytearray()
    for window in store.piece_digests(instance, stored.path, stored.commit_id, count):
        digests += window
    if list_digest(digests) != stored.sha256:
        log.warning("%s: stored piece list does not add up; storing every piece", stored.path)
        return None
    return PieceList(stored.sha256, stored.size_bytes, stored.piece_bytes, digests)


def _indexes(
    base: PieceList | None, size: int, pb: int, page_size: int, pages: frozenset[int] | None
) -> Iterable[int]:
    """Piece indexes that may differ from ``base``: all of them without a base or a page list."""
    count = piece_count(size, pb)
    if base is None or base.piece_bytes != pb or pages is None:
        return range(count)
    old = piece_count(base.size_bytes, pb)
    todo = {(p - 1) * page_size // pb for p in pages}
    todo.update(range(max(0, min(old, count) - 1), count))  # a last piece that grew or shrank
    return sorted(i for i in todo if i < count)


def _read_piece(fd: int, idx: int, pb: int, size: int) -> bytes:
    want = min(pb, size - idx * pb)
    data = os.pread(fd, want, idx * pb)
    if len(data) != want:
        raise _Changing
    return data


def _hash_all(pieces: list[tuple[int, bytes]]) -> list[bytes]:
    return [hashlib.sha256(data).digest() for _, data in pieces]


def _pack_all(pieces: list[tuple[int, bytes, bytes]]) -> list[tuple[int, bytes, str, bytes]]:
    return [(idx, digest, *pack(data)) for idx, digest, data in pieces]


def _mapped(fn: Callable[[list[T]], list[R]], items: list[T], pool: ThreadPoolExecutor) -> list[R]:
    """``fn`` over ``items``: in the calling thread for a few (a ship of a busy database
    changes tens of pages, less work than handing it over), else one task per thread."""
    if len(items) < INLINE_PIECES:
        return fn(items)
    return [r for part in pool.map(fn, _split(items, pool)) for r in part]


def _split(items: list[T], pool: ThreadPoolExecutor) -> list[list[T]]:
    """``items`` in one task per thread (one task per piece costs more than its work)."""
    n = max(1, min(pool._max_workers, len(items) // 16))
    step = -(-len(items) // n) if items else 1
    return [items[i : i + step] for i in range(0, len(items), step)]


def upload_pieced(
    writer: PieceWriter,
    files: PiecedFiles,
    c: Candidate,
    stored: StoredEntry | None,
    mime: str | None,
    sqlite: bool,
    pool: ThreadPoolExecutor,
) -> PiecedUpload | Skipped:
    """Read ``c`` as pieces, upload those that differ from ``stored``, and describe the
    new version (not yet committed: apply ``PiecedUpload`` after the commit).

    Raises ``FileNotFoundError`` when the file vanished, what ``Store`` raises
    (``FencedError``, ``DatabaseUnavailable``); a database that cannot be snapshotted or
    a file that keeps changing is a ``Skipped``.
    """
    snap: Snapshot | None = None
    try:
        if sqlite:
            snap = files.follower(c).snapshot()
            source, size, page_size = snap.path, snap.size_bytes, snap.page_size
            pb, pages = sqlite_piece_bytes(page_size), snap.changed_pages
        else:
            source, size, page_size = c.path, c.size, FILE_PIECE_BYTES
            pb, pages = FILE_PIECE_BYTES, None
    except sqlite3.Error as exc:
        return Skipped(c.rel, SkipKind.SQLITE_SNAPSHOT, f"SQLite snapshot failed ({exc})")
    base = _stored_list(writer.store, writer.instance, stored, files.lists.get(c.rel))
    if base is not None and base.piece_bytes != pb:
        base = None  # the page size changed: every piece is new
    count = piece_count(size, pb)
    digests = bytearray(DIGEST * count)
    if base is not None:
        kept = min(len(base.digests), len(digests))
        digests[:kept] = base.digests[:kept]
    written = raw = stored_bytes = 0
    try:
        fd = os.open(source, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        if sqlite:  # the follower has just written it: someone removed our folder
            raise IntegrityError(f"{c.rel}: scratch copy {source} vanished") from None
        raise
    try:
        if not sqlite and _moved(fd, c):
            return changing(c.rel)
        for group in _groups(_indexes(base, size, pb, page_size, pages), pb):
            pieces = [(i, _read_piece(fd, i, pb, size)) for i in group]
            hashed = _mapped(_hash_all, pieces, pool)
            news = []  # hashed first: only the pieces that differ are compressed
            for (idx, data), digest in zip(pieces, hashed, strict=True):
                at = slice(DIGEST * idx, DIGEST * (idx + 1))
                if base is not None and digests[at] == digest:
                    continue
                digests[at] = digest
                news.append((idx, digest, data))
                raw += len(data)
            rows = _mapped(_pack_all, news, pool)
            stored_bytes += sum(len(r[3]) for r in rows)
            if rows:
                writer.put(c.rel, rows)
                written += len(rows)
        if not sqlite and _moved(fd, c):
            return changing(c.rel)
    except _Changing:
        return changing(c.rel)
    finally:
        os.close(fd)
    sha = list_digest(digests)
    entry = StoredEntry(c.rel, sha, size, c.mode, c.mtime_ns, mime, piece_bytes=pb)
    same = stored is not None and (stored.sha256, stored.mode, stored.piece_bytes) == (
        sha,
        c.mode,
        pb,
    )
    return PiecedUpload(
        entry, PieceList(sha, size, pb, digests), snap, not same, written, raw, stored_bytes
    )


def _moved(fd: int, c: Candidate) -> bool:
    st = os.fstat(fd)
    return (st.st_size, st.st_mtime_ns) != (c.size, c.mtime_ns)


def _in_order(
    fetch: Callable[[int, int], PieceRows],
    windows: list[tuple[int, int]],
    pool: ThreadPoolExecutor | None,
) -> Iterator[PieceRows]:
    """The windows' rows in order; with a pool, up to two per thread are fetched ahead."""
    if pool is None:
        for lo, hi in windows:
            yield fetch(lo, hi)
        return
    ahead: deque[Future[PieceRows]] = deque()
    depth = 2 * max(1, pool._max_workers)
    for lo, hi in windows:
        ahead.append(pool.submit(fetch, lo, hi))
        if len(ahead) >= depth:
            yield ahead.popleft().result()
    while ahead:
        yield ahead.popleft().result()


def _groups(indexes: Iterable[int], pb: int) -> Iterator[list[int]]:
    per = max(1, GROUP_BYTES // pb)
    group: list[int] = []
    for i in indexes:
        group.append(i)
        if len(group) >= per:
            yield group
            group = []
    if group:
        yield group


def file_list_digest(path: str, size: int, piece_bytes: int) -> str:
    """The list digest of a local file cut into ``piece_bytes`` pieces (restore's check)."""
    digests = bytearray()
    with open(path, "rb", buffering=0) as f:
        for idx in range(piece_count(size, piece_bytes)):
            data = f.read(piece_bytes)
            if len(data) != min(piece_bytes, size - idx * piece_bytes):
                return ""
            digests += hashlib.sha256(data).digest()
        if f.read(1):
            return ""
    return list_digest(digests)


PieceRows = list[tuple[int, bytes, str, bytes]]
FETCH_WINDOW_BYTES = 4 * 1024 * 1024  # raw bytes of pieces per read while restoring


def write_pieces(
    fetch: Callable[[int, int], PieceRows],
    entry: StoredEntry,
    fd: int,
    pool: ThreadPoolExecutor | None = None,
) -> None:
    """Write the pieced version ``entry`` into ``fd`` (an empty file), verifying every
    piece's SHA-256 and the list digest of the whole.

    ``fetch(lo, hi)`` reads pieces ``lo..hi-1`` (``Store.piece_data``); with ``pool``,
    windows are fetched in parallel by its threads (each on its own connection), a few
    ahead of the one being written, so memory stays at a few windows. Raises
    ``IntegrityError`` naming the path on a missing, corrupt or mismatching piece.
    """
    assert entry.piece_bytes is not None
    pb = entry.piece_bytes
    count = piece_count(entry.size_bytes, pb)
    step = max(1, FETCH_WINDOW_BYTES // pb)
    windows = [(lo, min(count, lo + step)) for lo in range(0, count, step)]
    digests = hashlib.sha256()
    for rows in _in_order(fetch, windows, pool):
        for idx, digest, codec, packed in rows:
            want = min(pb, entry.size_bytes - idx * pb)
            data = unpack(codec, packed, want, entry.path)
            if len(data) != want or hashlib.sha256(data).digest() != digest:
                raise IntegrityError(
                    f"{entry.path}: stored piece {idx} does not match its SHA-256",
                    "push the file again from a good copy, or restore --at an earlier time",
                )
            view = memoryview(data)
            offset = idx * pb
            while view:
                n = os.pwrite(fd, view, offset)
                view, offset = view[n:], offset + n
            digests.update(digest)
    if digests.hexdigest() != entry.sha256:
        raise IntegrityError(
            f"{entry.path}: stored pieces do not add up to the version's SHA-256 "
            f"{entry.sha256[:12]}…",
            "push the file again from a good copy, or restore --at an earlier time",
        )
    os.ftruncate(fd, entry.size_bytes)

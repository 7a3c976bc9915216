"""The storage interface every driver uses, and the records it speaks in.

``Store`` is deliberately small: claim an instance, read what is stored,
add content, commit a batch. The PostgreSQL/CockroachDB implementation is
``waha_sync.common.store.postgres.PgStore``; ``waha_sync.common.store.memory.MemoryStore``
holds the same semantics in memory, for fast engine tests (``tests/test_store_contract.py``
runs one suite against both).

Error contract, for every method:

- ``DatabaseUnavailable``: the database could not be reached, or the
  connection broke and the operation could not be retried safely. Nothing
  partial is visible: a commit either happened entirely or not at all.
- ``FencedError`` (``commit`` only): the instance's epoch is no longer the
  caller's; nothing was written.
- ``IntegrityError`` (reads only): stored content is missing or corrupt.
- Serialization conflicts (SQLSTATE 40001) never escape: they are retried.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from waha_sync.common.sync.content import EncodedBlob


@dataclass(frozen=True, slots=True)
class StoredEntry:
    """One live file as stored: where, what content, and its metadata.

    ``piece_bytes`` None: the content is the one blob ``sha256``. Otherwise the file is
    stored as pieces of ``piece_bytes`` (the last one shorter) and ``sha256`` is the
    SHA-256 of the concatenated raw SHA-256 digests of its pieces (``pieces.list_digest``);
    ``commit_id`` is the commit that recorded this version (its pieces are read as of it).
    """

    path: str
    sha256: str
    size_bytes: int
    mode: int
    mtime_ns: int
    mime: str | None = None
    codec: str = ""
    stored_bytes: int = 0
    updated_at: datetime | None = None
    piece_bytes: int | None = None
    commit_id: int = 0


@dataclass(frozen=True)
class Instance:
    """The fencing and commit state of one instance."""

    name: str
    epoch: int
    holder: str
    last_commit: int
    claimed_at: datetime | None = None


@dataclass(frozen=True)
class CommitResult:
    commit_id: int
    files_changed: int
    files_deleted: int


@dataclass(frozen=True)
class GcBatch:
    """What one garbage-collection transaction deleted (already committed)."""

    versions: int = 0  # history rows replaced by a later version at or before the horizon
    tombstones: int = 0  # deletion records of the history that the horizon made moot
    entries: int = 0  # tombstone rows of the current state, deleted at or before the horizon
    commits: int = 0
    blobs: int = 0
    pieces: int = 0  # piece rows of large files no retained version uses
    bytes_freed: int = 0  # stored (compressed) bytes of the deleted blobs and pieces


class Store(Protocol):
    def close(self) -> None:
        """Release the connection; the next call opens a new one. Never raises."""

    def ensure_schema(self) -> None:
        """Create or upgrade the schema; idempotent, safe from several processes at once."""

    def database_id(self) -> str:
        """This database's id (32 hex digits, made on first use; restore markers record it)."""

    def instance(self, name: str) -> Instance | None:
        """The instance's state, or None if it was never claimed or pushed."""

    def claim(self, name: str, holder: str) -> Instance:
        """Take the instance for ``holder``: a new, higher epoch (compare-and-set on one row)."""

    def live_entries(self, name: str) -> Iterator[list[StoredEntry]]:
        """Every live file of the instance in path order, a page at a time."""

    def commit_at(self, name: str, when: datetime) -> int | None:
        """The number of the last commit made at or before ``when``; None if there was none."""

    def tree(self, name: str, commit_id: int) -> Iterator[list[StoredEntry]]:
        """The live files as they stood right after commit ``commit_id``, in path order, paged.

        Reads only committed versions, so concurrent commits never mix into the result.
        """

    def missing_blobs(self, shas: Iterable[str]) -> set[str]:
        """Which of ``shas`` are not stored yet.

        The stored ones are marked in use (``used_at``), so garbage collection
        leaves them alone for its grace period while the caller commits entries
        that refer to them.
        """

    def put_blobs(self, blobs: Sequence[EncodedBlob]) -> None:
        """Store content (marked in use); idempotent, so a retry or a duplicate is harmless."""

    def read_blobs(self, entries: Sequence[StoredEntry]) -> dict[str, list[bytes]]:
        """The stored chunks of each entry's blob, by SHA-256 (not yet decoded)."""

    def piece_digests(self, name: str, path: str, commit_id: int, count: int) -> Iterator[bytes]:
        """The raw 32-byte SHA-256 digests of pieces ``0..count-1`` of ``path`` as of
        ``commit_id``, concatenated, a window at a time in index order.
        Raises ``IntegrityError`` if any piece is missing."""

    def piece_data(
        self, name: str, path: str, commit_id: int, lo: int, hi: int
    ) -> list[tuple[int, bytes, str, bytes]]:
        """Pieces ``lo..hi-1`` of ``path`` as of ``commit_id``: ``(idx, raw sha256, codec,
        encoded bytes)`` in index order. Raises ``IntegrityError`` if any is missing."""

    def begin_pieces(self, name: str, epoch: int) -> int:
        """Start writing pieces for the next commit: clears rows an unfinished upload left
        above the last commit; returns the commit number they are written under.
        Raises ``FencedError``."""

    def put_pieces(
        self,
        name: str,
        epoch: int,
        commit_id: int | None,
        path: str,
        rows: Sequence[tuple[int, bytes, str, bytes]],
    ) -> int:
        """Record pieces ``(idx, raw sha256, codec, encoded bytes)`` of ``path`` for the
        coming ``commit_id`` (None: begin, as ``begin_pieces`` does, in the same
        transaction); idempotent; returns the commit number. Raises ``FencedError`` when
        the instance moved on (another claim, or a commit under that number)."""

    def commit(
        self,
        name: str,
        epoch: int,
        holder: str,
        changed: Sequence[StoredEntry],
        deleted: Sequence[str],
        pieces_for: int | None = None,
    ) -> CommitResult:
        """Record one batch atomically: changed files (blobs already put) and tombstones.

        ``pieces_for``: the number ``begin_pieces`` gave, when pieces were written for
        this batch; the commit must get that number (else ``FencedError``). Piece rows
        at or above the new number that belong to no pieced entry of ``changed`` are
        dropped in the same transaction.
        """

    def usage(self, name: str) -> dict[str, tuple[int, int]]:
        """Stored (compressed) bytes per path: ``(live version, live plus retained
        history)``; paths whose every version is gone are left out."""

    def collect_garbage(
        self, name: str, retention: timedelta, grace: timedelta
    ) -> Iterator[GcBatch]:
        """Delete what no state from ``retention`` ago on needs, one small transaction per batch.

        The horizon commit is the instance's last commit made at or before
        now - ``retention`` (database clock). For every time from then on,
        ``commit_at`` and ``tree`` give the same result as before, and the
        live state is untouched. Then content that no entry or version of any
        instance refers to, and that was not marked in use within ``grace``, is
        deleted; the delete checks both again, so concurrent writers are safe.
        Needs no claim: nothing a writer, or a restore from the horizon on, sees changes.

        Each yielded batch is committed; stopping early leaves a consistent
        store (the next run carries on). Raises ``DatabaseUnavailable``;
        40001 is retried.
        """

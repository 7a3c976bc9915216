"""``Store`` on PostgreSQL or CockroachDB (see ``waha_sync.common.store.base`` for the contract).

Reads are paged by key so memory stays bounded however large the tree;
multi-row writes go as one statement over ``unnest`` of arrays; every
transaction runs through ``Database.transaction`` and so survives 40001.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import datetime, timedelta
from typing import Any, NamedTuple, NoReturn, cast

from waha_sync.common.db.bulk import (
    batches,
    bytea_array,
    int_array,
    int_or_null_array,
    text_array,
)
from waha_sync.common.db.database import Database, Tx
from waha_sync.common.errors import IntegrityError, writer_fenced
from waha_sync.common.store import sql
from waha_sync.common.store.base import CommitResult, GcBatch, Instance, StoredEntry
from waha_sync.common.sync.content import EncodedBlob

PAGE = 1000
DIGEST_WINDOW = 8192  # piece indexes per read of a piece list's digests
GC_ROWS = 500  # rows a garbage-collection transaction looks at or deletes (about)
BLOB_TX_BYTES = 8 * 1024 * 1024  # stored bytes per put_blobs transaction
# Chunk bytes per INSERT: sent as hex they double, and CockroachDB refuses
# client messages over 16 MiB (sql.conn.max_read_buffer_message_size).
STATEMENT_BYTES = 3 * 1024 * 1024


# Page rows (JSON arrays) hold StoredEntry's fields in order (sql.ENTRY_FIELDS, which the
# statements are built from); the cursor is a row's path.
_PATH = sql.ENTRY_FIELDS.index("path")


# Result rows, read by column name (``Tx.records`` checks the names).
class _Gone(NamedTuple):  # TOMBSTONE
    path: str
    size_bytes: int
    mode: int
    mtime_ns: int


class _Piece(NamedTuple):  # PIECE_DATA
    idx: int
    sha256: bytes
    codec: str
    data: bytes


class _Usage(NamedTuple):  # USAGE_BLOBS, USAGE_PIECES
    path: str
    live_bytes: int | None
    total_bytes: int | None


class _Deleted(NamedTuple):  # GC_ENTRIES, GC_COMMITS
    deleted_rows: int
    last_key: Any


class _VersionKey(NamedTuple):  # GC_VERSION_PAGE
    path: str
    commit_id: int


class _PieceKey(NamedTuple):  # GC_PIECE_PAGE
    path: str
    idx: int
    commit_id: int


class _BlobState(NamedTuple):  # GC_BLOB_PAGE
    sha256: str
    chunks: int
    unused: bool


class _Freed(NamedTuple):  # GC_BLOBS
    sha256: str
    stored_bytes: int


def _columns(entries: Sequence[StoredEntry]) -> dict[str, str]:
    return {
        "path_list": text_array(e.path for e in entries),
        "sha256_list": text_array(e.sha256 for e in entries),
        "size_bytes_list": int_array(e.size_bytes for e in entries),
        "mode_list": int_array(e.mode for e in entries),
        "mtime_ns_list": int_array(e.mtime_ns for e in entries),
        "mime_list": text_array(e.mime for e in entries),
        "piece_bytes_list": int_or_null_array(e.piece_bytes for e in entries),
    }


def _value(query: str, **params: Any) -> Callable[[Tx], Any]:
    return lambda tx: tx.value(query, **params)


def _tombstones(gone: list[_Gone]) -> dict[str, str]:
    """Version columns for deleted paths: no content, last known mode and mtime."""
    none = text_array(None for _ in gone)
    return {
        "path_list": text_array(g.path for g in gone),
        "sha256_list": none,
        "size_bytes_list": int_array(0 for _ in gone),
        "mode_list": int_array(g.mode for g in gone),
        "mtime_ns_list": int_array(g.mtime_ns for g in gone),
        "mime_list": none,
        "piece_bytes_list": int_or_null_array(None for _ in gone),
    }


class PgStore:
    """The Store implementation over one ``Database``."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def close(self) -> None:
        self.db.close()

    def ensure_schema(self) -> None:
        from waha_sync.common.db.schema import migrate

        migrate(self.db)

    def database_id(self) -> str:
        def read(tx: Tx) -> str:
            found = tx.value(sql.DATABASE_ID)
            if found is None:  # first use: ours, or a concurrent first use's
                tx.run(sql.MAKE_DATABASE_ID, database_id=secrets.token_hex(16))
                found = tx.value(sql.DATABASE_ID)
            return str(found)

        return self.db.transaction(read)

    def instance(self, name: str) -> Instance | None:
        def read(tx: Tx) -> Instance | None:
            rows = tx.records(sql.INSTANCE, Instance, instance=name)
            return rows[0] if rows else None

        return self.db.transaction(read)

    def claim(self, name: str, holder: str) -> Instance:
        def write(tx: Tx) -> Instance:
            return tx.records(sql.CLAIM, Instance, instance=name, holder=holder)[0]

        return self.db.transaction(write)

    def _paged(self, query: str, **params: Any) -> Iterator[list[StoredEntry]]:
        """Key-ordered pages of a query that returns each page as one JSON array of
        ``sql.ENTRY_FIELDS`` rows; tombstone rows are passed over."""
        first = query.replace("path > :after_path", "path >= :after_path")  # '' is a path too
        after, q = "", first
        while True:

            def read(tx: Tx, after: str = after, q: str = q) -> list[list[Any]]:
                page = tx.value(q, after_path=after, page_rows=PAGE, **params)
                return json.loads(page) if isinstance(page, str) else list(page)

            rows = self.db.transaction(read)
            page = [e for e in map(_entry, rows) if e is not None]
            if page:
                yield page
            if len(rows) < PAGE:
                return
            after, q = rows[-1][_PATH], query

    def live_entries(self, name: str) -> Iterator[list[StoredEntry]]:
        yield from self._paged(sql.LIVE_PAGE, instance=name)

    def commit_at(self, name: str, when: datetime) -> int | None:
        found = self.db.transaction(_value(sql.COMMIT_AT, instance=name, as_of=when))
        return int(found) if found is not None else None

    def tree(self, name: str, commit_id: int) -> Iterator[list[StoredEntry]]:
        yield from self._paged(sql.TREE_PAGE, instance=name, commit_id=commit_id)

    def missing_blobs(self, shas: Iterable[str]) -> set[str]:
        wanted = sorted(set(shas))
        missing = set(wanted)
        for i in range(0, len(wanted), PAGE):
            part = wanted[i : i + PAGE]

            def read(tx: Tx, part: list[str] = part) -> list[str]:
                return tx.values(sql.KNOWN_BLOBS, sha256_list=text_array(part))

            missing.difference_update(self.db.transaction(read))
        return missing

    def put_blobs(self, blobs: Sequence[EncodedBlob]) -> None:
        unique = {b.sha256: b for b in blobs}.values()  # an upsert may touch a row only once
        for batch in batches(unique, lambda b: b.stored_bytes, BLOB_TX_BYTES):
            self._put_batch(batch)

    def _put_batch(self, blobs: list[EncodedBlob]) -> None:
        chunks = [(b.sha256, i, c) for b in blobs for i, c in enumerate(b.chunks)]
        statements = list(batches(chunks, lambda c: len(c[2]), STATEMENT_BYTES))

        def write(tx: Tx) -> None:
            # Blob rows first: the upsert locks out a concurrent GC, which deletes a blob row
            # and then its chunks. One transaction, so a blob row means complete content.
            tx.run(
                sql.PUT_BLOBS,
                sha256_list=text_array(b.sha256 for b in blobs),
                size_bytes_list=int_array(b.size_bytes for b in blobs),
                codec_list=text_array(b.codec for b in blobs),
                stored_bytes_list=int_array(b.stored_bytes for b in blobs),
                chunks_list=int_array(len(b.chunks) for b in blobs),
            )
            for part in statements:
                tx.run(
                    sql.PUT_CHUNKS,
                    sha256_list=text_array(sha for sha, _, _ in part),
                    seq_list=int_array(seq for _, seq, _ in part),
                    data_list=bytea_array(data for _, _, data in part),
                )

        self.db.transaction(write)

    def read_blobs(self, entries: Sequence[StoredEntry]) -> dict[str, list[bytes]]:
        shas = sorted({e.sha256 for e in entries})

        def read(tx: Tx) -> list[list[Any]]:
            return tx.run(sql.READ_CHUNKS, sha256_list=text_array(shas))

        out: dict[str, list[bytes]] = {sha: [] for sha in shas}
        for sha, data in self.db.transaction(read):  # columns: sha256, data
            out[sha].append(bytes(data))
        return out

    def piece_digests(self, name: str, path: str, commit_id: int, count: int) -> Iterator[bytes]:
        for lo in range(0, count, DIGEST_WINDOW):
            hi = min(count, lo + DIGEST_WINDOW)
            window = {"idx_from": lo, "idx_to": hi}

            def read(tx: Tx, window: dict[str, int] = window) -> list[list[Any]]:
                return tx.named(
                    sql.PIECE_DIGESTS,
                    ("idx", "sha256"),
                    instance=name,
                    path=path,
                    commit_id=commit_id,
                    **window,
                )

            rows = self.db.transaction(read)  # hot (8192 rows a window): unpacked, not records
            _check_window(path, [idx for idx, _ in rows[:1] + rows[-1:]], len(rows), lo, hi)
            yield b"".join([sha256 for _, sha256 in rows])

    def piece_data(
        self, name: str, path: str, commit_id: int, lo: int, hi: int
    ) -> list[tuple[int, bytes, str, bytes]]:
        def read(tx: Tx) -> list[_Piece]:
            return tx.records(
                sql.PIECE_DATA,
                _Piece,
                instance=name,
                path=path,
                commit_id=commit_id,
                idx_from=lo,
                idx_to=hi,
            )

        pieces = self.db.transaction(read)
        _check_window(path, [p.idx for p in pieces[:1] + pieces[-1:]], len(pieces), lo, hi)
        return cast(list[tuple[int, bytes, str, bytes]], pieces)  # a _Piece is such a tuple

    def _fence_share(self, tx: Tx, name: str, epoch: int) -> int:
        """The instance's last commit, holding off a claim until ``tx`` ends; fenced if the
        epoch moved on."""
        last = tx.value(sql.FENCE_SHARE, instance=name, epoch=epoch)
        if last is None:
            _fenced(tx, name, epoch)
        return int(last)

    def begin_pieces(self, name: str, epoch: int) -> int:
        def write(tx: Tx) -> int:
            last = self._fence_share(tx, name, epoch)
            tx.run(sql.DROP_UNCOMMITTED_PIECES, instance=name, last_commit=last)
            return last + 1

        return self.db.transaction(write)

    def put_pieces(
        self,
        name: str,
        epoch: int,
        commit_id: int | None,
        path: str,
        rows: Sequence[tuple[int, bytes, str, bytes]],
    ) -> int:
        parts = list(batches(rows, lambda r: len(r[3]), STATEMENT_BYTES))

        def write(tx: Tx) -> int:
            last = self._fence_share(tx, name, epoch)
            if commit_id is None:  # the first rows of this upload: begin_pieces, in this tx
                tx.run(sql.DROP_UNCOMMITTED_PIECES, instance=name, last_commit=last)
            elif last + 1 != commit_id:
                _fenced(tx, name, epoch)
            for part in parts:
                tx.run(
                    sql.PUT_PIECES,
                    instance=name,
                    path=path,
                    commit_id=last + 1,
                    idx_list=int_array(idx for idx, _, _, _ in part),
                    sha256_list=bytea_array(sha for _, sha, _, _ in part),
                    codec_list=text_array(codec for _, _, codec, _ in part),
                    data_list=bytea_array(data for _, _, _, data in part),
                )
            return last + 1

        return self.db.transaction(write)

    def commit(
        self,
        name: str,
        epoch: int,
        holder: str,
        changed: Sequence[StoredEntry],
        deleted: Sequence[str],
        pieces_for: int | None = None,
    ) -> CommitResult:
        raw = sum(e.size_bytes for e in changed)
        pieced = text_array(e.path for e in changed if e.piece_bytes is not None)

        def write(tx: Tx) -> CommitResult:
            number = tx.value(sql.NEXT_COMMIT, instance=name, epoch=epoch)
            if number is None:
                _fenced(tx, name, epoch)
            cid = int(number)
            if pieces_for is not None and cid != pieces_for:
                _fenced(tx, name, epoch)  # another writer of this epoch committed meanwhile
            this = {"instance": name, "commit_id": cid}
            tx.run(sql.DROP_FOREIGN_PIECES, path_list=pieced, **this)
            for i in range(0, len(changed), PAGE):
                tx.run(sql.RECORD_CHANGES, **this, **_columns(changed[i : i + PAGE]))
            gone = 0
            for i in range(0, len(deleted), PAGE):
                paths = text_array(deleted[i : i + PAGE])
                dead = tx.records(sql.TOMBSTONE, _Gone, path_list=paths, **this)
                if dead:
                    tx.run(sql.RECORD_VERSIONS, **this, **_tombstones(dead))
                gone += len(dead)
            tx.run(
                sql.RECORD_COMMIT,
                epoch=epoch,
                holder=holder,
                files_changed=len(changed),
                files_deleted=gone,
                bytes_raw=raw,
                **this,
            )
            return CommitResult(cid, len(changed), gone)

        return self.db.transaction(write)

    def usage(self, name: str) -> dict[str, tuple[int, int]]:
        def read(tx: Tx) -> list[_Usage]:
            return tx.records(sql.USAGE_BLOBS, _Usage, instance=name) + tx.records(
                sql.USAGE_PIECES, _Usage, instance=name
            )

        out: dict[str, tuple[int, int]] = {}
        for u in self.db.transaction(read):
            live, total = out.get(u.path, (0, 0))
            out[u.path] = (live + int(u.live_bytes or 0), total + int(u.total_bytes or 0))
        return out

    def collect_garbage(
        self, name: str, retention: timedelta, grace: timedelta
    ) -> Iterator[GcBatch]:
        seconds = retention.total_seconds()
        horizon = self.db.transaction(
            _value(sql.GC_HORIZON, instance=name, retention_seconds=seconds)
        )
        if horizon is not None:
            yield from self._gc_history(name, horizon)
            yield from self._gc_pieces(name, horizon)
            yield from self._gc_rows(sql.GC_ENTRIES, "entries", name, horizon, "after_path", "")
            yield from self._gc_rows(
                sql.GC_COMMITS, "commits", name, horizon, "after_commit_id", -1
            )
        yield from self._gc_blobs(grace.total_seconds())

    def _gc_rows(
        self, q: str, kind: str, name: str, horizon: int, cursor: str, after: Any
    ) -> Iterator[GcBatch]:
        """Batches of a query that deletes from a cursor on (parameter ``cursor``, first
        ``after``) and returns (rows deleted, last key deleted)."""
        p = {"instance": name, "horizon": horizon, "page_rows": GC_ROWS}
        while True:

            def drop(tx: Tx, after: Any = after) -> _Deleted:
                return tx.records(q, _Deleted, **{cursor: after}, **p)[0]

            batch = self.db.transaction(drop)
            count, after = batch.deleted_rows, batch.last_key
            if count:
                yield GcBatch(**{kind: int(count)})
            if count < GC_ROWS:
                return

    def _gc_history(self, name: str, horizon: int) -> Iterator[GcBatch]:
        at = {"instance": name, "horizon": horizon}
        after = _VersionKey("", -1)
        while True:

            def drop(tx: Tx, after: _VersionKey = after) -> tuple[int, int, _VersionKey | None]:
                keys = tx.records(
                    sql.GC_VERSION_PAGE,
                    _VersionKey,
                    after_path=after.path,
                    after_commit_id=after.commit_id,
                    page_rows=GC_ROWS,
                    **at,
                )
                if not keys:
                    return 0, 0, None
                page = {
                    "path_list": text_array(k.path for k in keys),
                    "commit_id_list": int_array(k.commit_id for k in keys),
                }
                old = tx.run(sql.GC_SUPERSEDED, **at, **page)
                moot = tx.run(sql.GC_TOMBSTONES, **at, **page)
                return len(old), len(moot), keys[-1] if len(keys) == GC_ROWS else None

            old, moot, last = self.db.transaction(drop)
            if old or moot:
                yield GcBatch(versions=old, tombstones=moot)
            if last is None:
                return
            after = last

    def _gc_pieces(self, name: str, horizon: int) -> Iterator[GcBatch]:
        at = {"instance": name, "horizon": horizon}
        after = _PieceKey("", -1, -1)
        while True:

            def drop(tx: Tx, after: _PieceKey = after) -> tuple[list[_PieceKey], list[int]]:
                keys = tx.records(
                    sql.GC_PIECE_PAGE,
                    _PieceKey,
                    after_path=after.path,
                    after_idx=after.idx,
                    after_commit_id=after.commit_id,
                    page_rows=GC_ROWS,
                    **at,
                )
                if not keys:
                    return [], []
                freed = tx.values(
                    sql.GC_PIECES,
                    path_list=text_array(k.path for k in keys),
                    idx_list=int_array(k.idx for k in keys),
                    commit_id_list=int_array(k.commit_id for k in keys),
                    **at,
                )
                return keys, freed

            keys, freed = self.db.transaction(drop)
            if freed:
                yield GcBatch(pieces=len(freed), bytes_freed=sum(int(n) for n in freed))
            if len(keys) < GC_ROWS:
                return
            after = keys[-1]

    def _gc_blobs(self, grace: float) -> Iterator[GcBatch]:
        after = ""
        while True:

            def look(tx: Tx, after: str = after) -> list[_BlobState]:
                return tx.records(
                    sql.GC_BLOB_PAGE,
                    _BlobState,
                    after_sha256=after,
                    grace_seconds=grace,
                    page_rows=GC_ROWS,
                )

            page = self.db.transaction(look)
            unused = [b for b in page if b.unused]
            for part in batches(unused, lambda b: b.chunks + 1, GC_ROWS):

                def drop(tx: Tx, part: list[_BlobState] = part) -> list[_Freed]:
                    shas = text_array(b.sha256 for b in part)
                    gone = tx.records(sql.GC_BLOBS, _Freed, sha256_list=shas, grace_seconds=grace)
                    if gone:
                        tx.run(sql.GC_CHUNKS, sha256_list=text_array(f.sha256 for f in gone))
                    return gone

                gone = self.db.transaction(drop)
                if gone:
                    yield GcBatch(blobs=len(gone), bytes_freed=sum(f.stored_bytes for f in gone))
            if len(page) < GC_ROWS:
                return
            after = page[-1].sha256


def _entry(row: list[Any]) -> StoredEntry | None:
    """A row of ``LIVE_PAGE`` or ``TREE_PAGE`` (``sql.ENTRY_FIELDS``; the latter has no
    ``updated_at``); None for a tombstone (no content)."""
    (
        path,
        sha256,
        size_bytes,
        mode,
        mtime_ns,
        mime,
        codec,
        stored_bytes,
        updated_at,
        piece_bytes,
        commit_id,
    ) = row
    if sha256 is None:
        return None
    return StoredEntry(
        path,
        sha256,
        int(size_bytes),
        mode,
        int(mtime_ns),
        mime,
        codec or "",
        stored_bytes or 0,
        datetime.fromisoformat(updated_at) if updated_at is not None else None,
        piece_bytes,
        int(commit_id),
    )


def _check_window(path: str, ends: list[int], found: int, lo: int, hi: int) -> None:
    """Every index of the window ``lo <= idx < hi`` must be there: a gap means lost rows,
    never a short file. ``ends``: the first and the last index read; ``found``: rows read."""
    if found != hi - lo or (found and ends != [lo, hi - 1]):
        raise IntegrityError(
            f"{path}: stored pieces {lo}..{hi - 1} are incomplete ({found} found)",
            "push the file again from a good copy, or restore --at an earlier time",
        )


def _fenced(tx: Tx, name: str, epoch: int) -> NoReturn:
    now = tx.records(sql.INSTANCE, Instance, instance=name)
    raise writer_fenced(name, (now[0].holder, now[0].epoch) if now else None, epoch)

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
from typing import Any, NoReturn

from waha_sync.common.db.bulk import (
    batches,
    bytea_array,
    int_array,
    int_or_null_array,
    text_array,
)
from waha_sync.common.db.database import Database, Tx
from waha_sync.common.db.url import ConnParams
from waha_sync.common.errors import FencedError, IntegrityError, fenced_message
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


def _instance(row: list[Any]) -> Instance:
    return Instance(row[0], int(row[1]), str(row[2]), int(row[3]), row[4])


def _columns(entries: Sequence[StoredEntry]) -> dict[str, str]:
    return {
        "paths": text_array(e.path for e in entries),
        "shas": text_array(e.sha256 for e in entries),
        "sizes": int_array(e.size_bytes for e in entries),
        "modes": int_array(e.mode for e in entries),
        "mtimes": int_array(e.mtime_ns for e in entries),
        "mimes": text_array(e.mime for e in entries),
        "pieces": int_or_null_array(e.piece_bytes for e in entries),
    }


def _statement(query: str, **params: Any) -> Callable[[Tx], list[list[Any]]]:
    return lambda tx: tx.run(query, **params)


def _tombstones(rows: list[list[Any]]) -> dict[str, str]:
    """Version columns for deleted paths: no content, last known mode and mtime."""
    none = text_array(None for _ in rows)
    return {
        "paths": text_array(r[0] for r in rows),
        "shas": none,
        "sizes": int_array(0 for _ in rows),
        "modes": int_array(r[2] for r in rows),
        "mtimes": int_array(r[3] for r in rows),
        "mimes": none,
        "pieces": int_or_null_array(None for _ in rows),
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
            rows = tx.run(sql.DATABASE_ID)
            if not rows:  # first use: ours, or a concurrent first use's
                tx.run(sql.MAKE_DATABASE_ID, id=secrets.token_hex(16))
                rows = tx.run(sql.DATABASE_ID)
            return str(rows[0][0])

        return self.db.transaction(read)

    def instance(self, name: str) -> Instance | None:
        def read(tx: Tx) -> Instance | None:
            rows = tx.run(sql.INSTANCE, n=name)
            return _instance(rows[0]) if rows else None

        return self.db.transaction(read)

    def claim(self, name: str, holder: str) -> Instance:
        def write(tx: Tx) -> Instance:
            rows = tx.run(sql.CLAIM, n=name, h=holder)
            return _instance(rows[0])

        return self.db.transaction(write)

    def _paged(self, query: str, **params: Any) -> Iterator[list[list[Any]]]:
        """Key-ordered pages of a query that returns each page as one JSON array."""
        after, q = "", query.replace("path > :after", "path >= :after")  # '' is a (bad) path too
        while True:

            def read(tx: Tx, after: str = after, q: str = q) -> list[list[Any]]:
                page = tx.run(q, after=after, lim=PAGE, **params)[0][0]
                return json.loads(page) if isinstance(page, str) else list(page)

            rows = self.db.transaction(read)
            if rows:
                yield rows
            if len(rows) < PAGE:
                return
            after, q = rows[-1][0], query

    def live_entries(self, name: str) -> Iterator[list[StoredEntry]]:
        for rows in self._paged(sql.LIVE_PAGE, name=name):
            yield [_entry(r) for r in rows]

    def commit_at(self, name: str, when: datetime) -> int | None:
        def read(tx: Tx) -> int | None:
            rows = tx.run(sql.COMMIT_AT, n=name, w=when)
            return int(rows[0][0]) if rows and rows[0][0] is not None else None

        return self.db.transaction(read)

    def tree(self, name: str, commit_id: int) -> Iterator[list[StoredEntry]]:
        for rows in self._paged(sql.TREE_PAGE, name=name, cid=commit_id):
            page = [
                _entry(r)
                for r in rows
                if r[1] is not None  # tombstone
            ]
            if page:
                yield page

    def missing_blobs(self, shas: Iterable[str]) -> set[str]:
        wanted = sorted(set(shas))
        missing = set(wanted)
        for i in range(0, len(wanted), PAGE):
            part = wanted[i : i + PAGE]

            def read(tx: Tx, part: list[str] = part) -> list[list[Any]]:
                return tx.run(sql.KNOWN_BLOBS, s=text_array(part))

            missing.difference_update(r[0] for r in self.db.transaction(read))
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
                s=text_array(b.sha256 for b in blobs),
                z=int_array(b.size_bytes for b in blobs),
                c=text_array(b.codec for b in blobs),
                b=int_array(b.stored_bytes for b in blobs),
                n=int_array(len(b.chunks) for b in blobs),
            )
            for part in statements:
                tx.run(
                    sql.PUT_CHUNKS,
                    s=text_array(c[0] for c in part),
                    q=int_array(c[1] for c in part),
                    d=bytea_array(c[2] for c in part),
                )

        self.db.transaction(write)

    def read_blobs(self, entries: Sequence[StoredEntry]) -> dict[str, list[bytes]]:
        shas = sorted({e.sha256 for e in entries})

        def read(tx: Tx) -> list[list[Any]]:
            return tx.run(sql.READ_CHUNKS, s=text_array(shas))

        out: dict[str, list[bytes]] = {sha: [] for sha in shas}
        for sha, data in self.db.transaction(read):
            out[sha].append(bytes(data))
        return out

    def piece_digests(self, name: str, path: str, commit_id: int, count: int) -> Iterator[bytes]:
        for lo in range(0, count, DIGEST_WINDOW):
            hi = min(count, lo + DIGEST_WINDOW)
            rows = self.db.transaction(
                _statement(sql.PIECE_DIGESTS, n=name, p=path, cid=commit_id, lo=lo, hi=hi)
            )
            _check_window(path, rows, lo, hi)
            yield b"".join(bytes(r[1]) for r in rows)

    def piece_data(
        self, name: str, path: str, commit_id: int, lo: int, hi: int
    ) -> list[tuple[int, bytes, str, bytes]]:
        rows = self.db.transaction(
            _statement(sql.PIECE_DATA, n=name, p=path, cid=commit_id, lo=lo, hi=hi)
        )
        _check_window(path, rows, lo, hi)
        return [(int(r[0]), bytes(r[1]), str(r[2]), bytes(r[3])) for r in rows]

    def _fence_share(self, tx: Tx, name: str, epoch: int) -> int:
        """The instance's last commit, holding off a claim until ``tx`` ends; fenced if the
        epoch moved on."""
        rows = tx.run(sql.FENCE_SHARE, n=name, e=epoch)
        if not rows:
            _fenced(tx, name, epoch)
        return int(rows[0][0])

    def begin_pieces(self, name: str, epoch: int) -> int:
        def write(tx: Tx) -> int:
            last = self._fence_share(tx, name, epoch)
            tx.run(sql.DROP_UNCOMMITTED_PIECES, n=name, c=last)
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
                tx.run(sql.DROP_UNCOMMITTED_PIECES, n=name, c=last)
            elif last + 1 != commit_id:
                _fenced(tx, name, epoch)
            for part in parts:
                tx.run(
                    sql.PUT_PIECES,
                    n=name,
                    p=path,
                    cid=last + 1,
                    i=int_array(r[0] for r in part),
                    s=bytea_array(r[1] for r in part),
                    c=text_array(r[2] for r in part),
                    d=bytea_array(r[3] for r in part),
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
            rows = tx.run(sql.NEXT_COMMIT, n=name, e=epoch)
            if not rows:
                _fenced(tx, name, epoch)
            cid = int(rows[0][0])
            if pieces_for is not None and cid != pieces_for:
                _fenced(tx, name, epoch)  # another writer of this epoch committed meanwhile
            tx.run(sql.DROP_FOREIGN_PIECES, n=name, cid=cid, p=pieced)
            for i in range(0, len(changed), PAGE):
                cols = _columns(changed[i : i + PAGE])
                tx.run(sql.RECORD_CHANGES, name=name, cid=cid, **cols)
            gone = 0
            for i in range(0, len(deleted), PAGE):
                dead = tx.run(sql.TOMBSTONE, cid=cid, n=name, p=text_array(deleted[i : i + PAGE]))
                if dead:
                    tx.run(sql.RECORD_VERSIONS, name=name, cid=cid, **_tombstones(dead))
                gone += len(dead)
            tx.run(
                sql.RECORD_COMMIT,
                n=name,
                cid=cid,
                e=epoch,
                h=holder,
                fc=len(changed),
                fd=gone,
                b=raw,
            )
            return CommitResult(cid, len(changed), gone)

        return self.db.transaction(write)

    def usage(self, name: str) -> dict[str, tuple[int, int]]:
        def read(tx: Tx) -> list[list[Any]]:
            return tx.run(sql.USAGE_BLOBS, n=name) + tx.run(sql.USAGE_PIECES, n=name)

        out: dict[str, tuple[int, int]] = {}
        for path, live, total in self.db.transaction(read):
            was = out.get(path, (0, 0))
            out[path] = (was[0] + int(live or 0), was[1] + int(total or 0))
        return out

    def collect_garbage(
        self, name: str, retention: timedelta, grace: timedelta
    ) -> Iterator[GcBatch]:
        r = retention.total_seconds()
        keep = self.db.transaction(_statement(sql.GC_HORIZON, n=name, r=r))[0][0]
        if keep is not None:
            yield from self._gc_history(name, keep)
            yield from self._gc_pieces(name, keep)
            yield from self._gc_rows(sql.GC_ENTRIES, "entries", name, keep, "")
            yield from self._gc_rows(sql.GC_COMMITS, "commits", name, keep, -1)
        yield from self._gc_blobs(grace.total_seconds())

    def _gc_rows(self, q: str, kind: str, name: str, keep: int, after: Any) -> Iterator[GcBatch]:
        """Batches of a query that deletes from a cursor on and returns (count, next cursor)."""
        p = {"n": name, "c": keep, "lim": GC_ROWS}
        while True:
            count, after = self.db.transaction(_statement(q, after=after, **p))[0]
            if count:
                yield GcBatch(**{kind: int(count)})
            if count < GC_ROWS:
                return

    def _gc_history(self, name: str, keep: int) -> Iterator[GcBatch]:
        after: tuple[str, int] = ("", -1)
        while True:

            def drop(tx: Tx, ap: str = after[0], ac: int = after[1]) -> tuple[int, int, list[Any]]:
                keys = tx.run(sql.GC_VERSION_PAGE, n=name, c=keep, ap=ap, ac=ac, lim=GC_ROWS)
                page = {"p": text_array(k[0] for k in keys), "k": int_array(k[1] for k in keys)}
                old = tx.run(sql.GC_SUPERSEDED, n=name, c=keep, **page) if keys else []
                moot = tx.run(sql.GC_TOMBSTONES, n=name, c=keep, **page) if keys else []
                return len(old), len(moot), keys[-1] if len(keys) == GC_ROWS else []

            old, moot, last = self.db.transaction(drop)
            if old or moot:
                yield GcBatch(versions=old, tombstones=moot)
            if not last:
                return
            after = (str(last[0]), int(last[1]))

    def _gc_pieces(self, name: str, keep: int) -> Iterator[GcBatch]:
        after: tuple[str, int, int] = ("", -1, -1)
        while True:

            def drop(tx: Tx, a: tuple[str, int, int] = after) -> tuple[list[Any], list[Any]]:
                keys = tx.run(
                    sql.GC_PIECE_PAGE, n=name, c=keep, ap=a[0], ai=a[1], ac=a[2], lim=GC_ROWS
                )
                if not keys:
                    return [], []
                gone = tx.run(
                    sql.GC_PIECES,
                    n=name,
                    c=keep,
                    kp=text_array(k[0] for k in keys),
                    ki=int_array(k[1] for k in keys),
                    kc=int_array(k[2] for k in keys),
                )
                return keys, gone

            keys, gone = self.db.transaction(drop)
            if gone:
                yield GcBatch(pieces=len(gone), bytes_freed=sum(int(r[0]) for r in gone))
            if len(keys) < GC_ROWS:
                return
            after = (str(keys[-1][0]), int(keys[-1][1]), int(keys[-1][2]))

    def _gc_blobs(self, grace: float) -> Iterator[GcBatch]:
        after, p = "", {"g": grace, "lim": GC_ROWS}
        while True:
            page = self.db.transaction(_statement(sql.GC_BLOB_PAGE, after=after, **p))
            unused = [(str(r[0]), int(r[1])) for r in page if r[2]]
            for part in batches(unused, lambda u: u[1] + 1, GC_ROWS):

                def drop(tx: Tx, part: list[tuple[str, int]] = part) -> list[list[Any]]:
                    gone = tx.run(sql.GC_BLOBS, s=text_array(u[0] for u in part), g=grace)
                    if gone:
                        tx.run(sql.GC_CHUNKS, s=text_array(str(r[0]) for r in gone))
                    return gone

                gone = self.db.transaction(drop)
                if gone:
                    yield GcBatch(blobs=len(gone), bytes_freed=sum(int(r[1]) for r in gone))
            if len(page) < GC_ROWS:
                return
            after = str(page[-1][0])


def _entry(r: list[Any]) -> StoredEntry:
    """A row of ``LIVE_PAGE`` or ``TREE_PAGE`` (the latter has no ``updated_at``)."""
    updated = datetime.fromisoformat(r[8]) if r[8] is not None else None
    return StoredEntry(
        r[0],
        r[1],
        int(r[2]),
        r[3],
        int(r[4]),
        r[5],
        r[6] or "",
        r[7] or 0,
        updated,
        r[9],
        int(r[10]),
    )


def _check_window(path: str, rows: list[list[Any]], lo: int, hi: int) -> None:
    """Every index of the window must be there: a gap means lost rows, never a short file."""
    if len(rows) != hi - lo or (rows and (int(rows[0][0]), int(rows[-1][0])) != (lo, hi - 1)):
        raise IntegrityError(
            f"{path}: stored pieces {lo}..{hi - 1} are incomplete ({len(rows)} found)",
            "push the file again from a good copy, or restore --at an earlier time",
        )


def _fenced(tx: Tx, name: str, epoch: int) -> NoReturn:
    now = tx.run(sql.INSTANCE, n=name)
    claimed = (str(now[0][2]), int(now[0][1])) if now else None
    raise FencedError(
        fenced_message(name, claimed, f"this writer holds epoch {epoch}"),
        "run `waha-sync restore` again in this pod, or stop this writer",
    )


def open_pg_store(params: ConnParams, chaos_40001_rate: float, component: str) -> PgStore:
    """A store on a new connection (module-level, so it can be handed to other processes)."""
    return PgStore(Database(params, chaos_40001_rate=chaos_40001_rate, component=component))

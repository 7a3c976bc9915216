"""``Store`` on PostgreSQL or CockroachDB (see ``waha_sync.common.store`` for the contract).

Reads are paged by key so memory stays bounded however large the tree;
multi-row writes go as one statement over ``unnest`` of arrays; every
transaction runs through ``Database.transaction`` and so survives 40001.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime
from typing import Any

from waha_sync.common.content import EncodedBlob
from waha_sync.common.db import Database, Tx
from waha_sync.common.errors import FencedError
from waha_sync.common.pgarray import bytea_array, int_array, text_array
from waha_sync.common.pgurl import ConnParams
from waha_sync.common.store import CommitResult, Instance, StoredEntry

PAGE = 1000
BLOB_TX_BYTES = 8 * 1024 * 1024  # stored bytes per put_blobs transaction
# Chunk bytes per INSERT: sent as hex they double, and CockroachDB refuses
# client messages over 16 MiB (sql.conn.max_read_buffer_message_size).
STATEMENT_BYTES = 3 * 1024 * 1024

_SELECT_INSTANCE = (
    "SELECT instance, epoch, holder, last_commit, claimed_at FROM waha_sync_instances "
)
_CLAIM = (
    "INSERT INTO waha_sync_instances AS i (instance, epoch, holder, claimed_at) "
    "VALUES (:n, 1, :h, now()) ON CONFLICT (instance) DO UPDATE "
    "SET epoch = i.epoch + 1, holder = excluded.holder, claimed_at = excluded.claimed_at "
    "RETURNING instance, epoch, holder, last_commit, claimed_at"
)
# One statement writes the current state and the version history from the
# same parameters (sent once); CockroachDB supports data-modifying CTEs.
_RECORD_CHANGES = """
WITH u AS (
    SELECT * FROM unnest(CAST(:paths AS TEXT[]), CAST(:shas AS TEXT[]),
        CAST(:sizes AS BIGINT[]), CAST(:modes AS INT[]), CAST(:mtimes AS BIGINT[]),
        CAST(:mimes AS TEXT[])) AS u(path, sha, size, mode, mtime, mime)
), cur AS (
    INSERT INTO waha_sync_entries AS e (instance, path, sha256, size_bytes, mode, mtime_ns,
        mime, deleted, commit_id, first_uploaded_at, updated_at)
    SELECT :name, path, sha, size, mode, mtime, mime, false, :cid, now(), now() FROM u
    ON CONFLICT (instance, path) DO UPDATE SET
        sha256 = excluded.sha256, size_bytes = excluded.size_bytes, mode = excluded.mode,
        mtime_ns = excluded.mtime_ns, mime = excluded.mime, commit_id = excluded.commit_id,
        first_uploaded_at = CASE WHEN e.deleted THEN excluded.first_uploaded_at
                                 ELSE e.first_uploaded_at END,
        deleted = false, updated_at = excluded.updated_at
    RETURNING 1
)
INSERT INTO waha_sync_versions (instance, path, commit_id, sha256, size_bytes, mode, mtime_ns,
    mime)
SELECT :name, path, :cid, sha, size, mode, mtime, mime FROM u
"""
_INSERT_VERSIONS = """
INSERT INTO waha_sync_versions (instance, path, commit_id, sha256, size_bytes, mode, mtime_ns, mime)
SELECT :name, u.path, :cid, u.sha, u.size, u.mode, u.mtime, u.mime
FROM unnest(CAST(:paths AS TEXT[]), CAST(:shas AS TEXT[]), CAST(:sizes AS BIGINT[]),
            CAST(:modes AS INT[]), CAST(:mtimes AS BIGINT[]), CAST(:mimes AS TEXT[]))
     AS u(path, sha, size, mode, mtime, mime)
"""
_TREE = """
SELECT t.path, t.sha256, t.size_bytes, t.mode, t.mtime_ns, t.mime, b.codec, b.stored_bytes
FROM (SELECT DISTINCT ON (path) path, sha256, size_bytes, mode, mtime_ns, mime
      FROM waha_sync_versions
      WHERE instance = :name AND commit_id <= :cid AND path > :after
      ORDER BY path, commit_id DESC LIMIT :lim) AS t
LEFT JOIN waha_sync_blobs b ON b.sha256 = t.sha256
ORDER BY t.path
"""


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
    }


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
    }


class PgStore:
    """The Store implementation over one ``Database``."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def close(self) -> None:
        self.db.close()

    def instance(self, name: str) -> Instance | None:
        def read(tx: Tx) -> Instance | None:
            rows = tx.run(_SELECT_INSTANCE + "WHERE instance = :n", n=name)
            return _instance(rows[0]) if rows else None

        return self.db.transaction(read)

    def claim(self, name: str, holder: str) -> Instance:
        def write(tx: Tx) -> Instance:
            rows = tx.run(_CLAIM, n=name, h=holder)
            return _instance(rows[0])

        return self.db.transaction(write)

    def _paged(self, sql: str, **params: Any) -> Iterator[list[list[Any]]]:
        after = ""
        while True:

            def read(tx: Tx, after: str = after) -> list[list[Any]]:
                return tx.run(sql, after=after, lim=PAGE, **params)

            rows = self.db.transaction(read)
            if rows:
                yield rows
            if len(rows) < PAGE:
                return
            after = rows[-1][0]

    def live_entries(self, name: str) -> Iterator[list[StoredEntry]]:
        sql = (
            "SELECT e.path, e.sha256, e.size_bytes, e.mode, e.mtime_ns, e.mime, b.codec, "
            "b.stored_bytes, e.updated_at FROM waha_sync_entries e "
            "LEFT JOIN waha_sync_blobs b ON b.sha256 = e.sha256 "
            "WHERE e.instance = :name AND NOT e.deleted AND e.path > :after "
            "ORDER BY e.path LIMIT :lim"
        )
        for rows in self._paged(sql, name=name):
            yield [
                StoredEntry(
                    r[0], r[1], int(r[2]), r[3], int(r[4]), r[5], r[6] or "", r[7] or 0, r[8]
                )
                for r in rows
            ]

    def commit_at(self, name: str, when: datetime) -> int | None:
        def read(tx: Tx) -> int | None:
            rows = tx.run(
                "SELECT max(id) FROM waha_sync_commits WHERE instance = :n AND created_at <= :w",
                n=name,
                w=when,
            )
            return int(rows[0][0]) if rows and rows[0][0] is not None else None

        return self.db.transaction(read)

    def tree(self, name: str, commit_id: int) -> Iterator[list[StoredEntry]]:
        for rows in self._paged(_TREE, name=name, cid=commit_id):
            page = [
                StoredEntry(r[0], r[1], int(r[2]), r[3], int(r[4]), r[5], r[6] or "", r[7] or 0)
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
                return tx.run(
                    "SELECT sha256 FROM waha_sync_blobs WHERE sha256 = ANY(CAST(:s AS TEXT[]))",
                    s=text_array(part),
                )

            missing.difference_update(r[0] for r in self.db.transaction(read))
        return missing

    def put_blobs(self, blobs: Sequence[EncodedBlob]) -> None:
        batch: list[EncodedBlob] = []
        size = 0
        for blob in blobs:
            batch.append(blob)
            size += blob.stored_bytes
            if size >= BLOB_TX_BYTES:
                self._put_batch(batch)
                batch, size = [], 0
        if batch:
            self._put_batch(batch)

    def _put_batch(self, blobs: list[EncodedBlob]) -> None:
        chunks = [(b.sha256, i, c) for b in blobs for i, c in enumerate(b.chunks)]
        statements: list[list[tuple[str, int, bytes]]] = [[]]
        size = 0
        for chunk in chunks:
            if statements[-1] and size + len(chunk[2]) > STATEMENT_BYTES:
                statements.append([])
                size = 0
            statements[-1].append(chunk)
            size += len(chunk[2])

        def write(tx: Tx) -> None:
            for part in statements:  # every chunk first, so a blob row means complete content
                tx.run(
                    "INSERT INTO waha_sync_chunks (sha256, seq, data) SELECT * FROM "
                    "unnest(CAST(:s AS TEXT[]), CAST(:q AS INT[]), CAST(:d AS BYTEA[])) "
                    "ON CONFLICT (sha256, seq) DO NOTHING",
                    s=text_array(c[0] for c in part),
                    q=int_array(c[1] for c in part),
                    d=bytea_array(c[2] for c in part),
                )
            tx.run(
                "INSERT INTO waha_sync_blobs (sha256, size_bytes, codec, stored_bytes, chunks) "
                "SELECT * FROM unnest(CAST(:s AS TEXT[]), CAST(:z AS BIGINT[]), "
                "CAST(:c AS TEXT[]), CAST(:b AS BIGINT[]), CAST(:n AS INT[])) "
                "ON CONFLICT (sha256) DO NOTHING",
                s=text_array(b.sha256 for b in blobs),
                z=int_array(b.size_bytes for b in blobs),
                c=text_array(b.codec for b in blobs),
                b=int_array(b.stored_bytes for b in blobs),
                n=int_array(len(b.chunks) for b in blobs),
            )

        self.db.transaction(write)

    def read_blobs(self, entries: Sequence[StoredEntry]) -> dict[str, list[bytes]]:
        shas = sorted({e.sha256 for e in entries})

        def read(tx: Tx) -> list[list[Any]]:
            return tx.run(
                "SELECT c.sha256, c.data FROM waha_sync_chunks c "
                "JOIN waha_sync_blobs b ON b.sha256 = c.sha256 "
                "WHERE c.sha256 = ANY(CAST(:s AS TEXT[])) AND c.seq < b.chunks "
                "ORDER BY c.sha256, c.seq",
                s=text_array(shas),
            )

        out: dict[str, list[bytes]] = {sha: [] for sha in shas}
        for sha, data in self.db.transaction(read):
            out[sha].append(bytes(data))
        return out

    def commit(
        self,
        name: str,
        epoch: int,
        holder: str,
        changed: Sequence[StoredEntry],
        deleted: Sequence[str],
    ) -> CommitResult:
        raw = sum(e.size_bytes for e in changed)

        def write(tx: Tx) -> CommitResult:
            rows = tx.run(
                "UPDATE waha_sync_instances SET last_commit = last_commit + 1 "
                "WHERE instance = :n AND epoch = :e RETURNING last_commit",
                n=name,
                e=epoch,
            )
            if not rows:
                now = tx.run(_SELECT_INSTANCE + "WHERE instance = :n", n=name)
                who = f"{now[0][2]} (epoch {now[0][1]})" if now else "nobody (no lease row)"
                raise FencedError(
                    f"fenced: instance {name} was claimed by {who}; "
                    f"this writer holds epoch {epoch}",
                    "run `waha-sync restore` again in this pod, or stop this writer",
                )
            cid = int(rows[0][0])
            for i in range(0, len(changed), PAGE):
                cols = _columns(changed[i : i + PAGE])
                tx.run(_RECORD_CHANGES, name=name, cid=cid, **cols)
            gone = 0
            for i in range(0, len(deleted), PAGE):
                dead = tx.run(
                    "UPDATE waha_sync_entries SET deleted = true, commit_id = :cid, "
                    "updated_at = now() WHERE instance = :n AND path = ANY(CAST(:p AS TEXT[])) "
                    "AND NOT deleted RETURNING path, size_bytes, mode, mtime_ns",
                    cid=cid,
                    n=name,
                    p=text_array(deleted[i : i + PAGE]),
                )
                if dead:
                    tx.run(_INSERT_VERSIONS, name=name, cid=cid, **_tombstones(dead))
                gone += len(dead)
            tx.run(
                "INSERT INTO waha_sync_commits (instance, id, epoch, holder, files_changed, "
                "files_deleted, bytes_raw) VALUES (:n, :cid, :e, :h, :fc, :fd, :b)",
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


def open_pg_store(params: ConnParams, chaos_40001_rate: float = 0.0) -> PgStore:
    """A store on a new connection (module-level, so it can be handed to other processes)."""
    return PgStore(Database(params, chaos_40001_rate=chaos_40001_rate))

"""The SQL that ``PgStore`` runs, in one place (PostgreSQL and CockroachDB alike).

Parameters are named, and a name means one thing in every statement (``PARAMETERS``
lists them all). Bulk parameters end in ``_list``: array literals
(``waha_sync.common.db.bulk``), one element per row, cast with
``CAST(:path_list AS TEXT[])`` and spread with ``unnest``; pg8000 sends parameters
untyped, so the server parses each literal once, in C. Result columns carry the names
``PgStore`` reads them by (``Tx.records``).
"""

# Every parameter name used below, and what it holds.
PARAMETERS: dict[str, str] = {
    "instance": "an instance's name (TEXT)",
    "holder": "who claims or commits: host, process and command (TEXT)",
    "epoch": "the instance's fencing epoch the writer holds (BIGINT)",
    "commit_id": "a commit number of the instance: the one being written, or the one "
    "a read is as of (BIGINT)",
    "last_commit": "the instance's last commit number, read in the same transaction (BIGINT)",
    "horizon": "GC's horizon commit: the last one made at or before now - retention (BIGINT)",
    "as_of": "a point in time a read is as of (TIMESTAMPTZ)",
    "path": "a file's path in the tree, relative, '/'-separated (TEXT)",
    "idx_from": "the first piece index of a window (BIGINT)",
    "idx_to": "the piece index just past a window (BIGINT, exclusive)",
    "after_path": "key cursor: rows whose path sorts after this (TEXT)",
    "after_commit_id": "key cursor: rows whose commit number is above this (BIGINT)",
    "after_idx": "key cursor: rows whose piece index is above this (BIGINT)",
    "after_sha256": "key cursor: rows whose SHA-256 (hex) sorts after this (TEXT)",
    "page_rows": "how many rows one page reads or deletes at most (INT)",
    "retention_seconds": "how long history stays restorable (FLOAT8 seconds)",
    "grace_seconds": "how long a blob marked in use is spared by GC (FLOAT8 seconds)",
    "database_id": "this database's random id (TEXT)",
    "files_changed": "files a commit added or changed (INT)",
    "files_deleted": "files a commit tombstoned (INT)",
    "bytes_raw": "raw (uncompressed) bytes of a commit's changed files (BIGINT)",
    "path_list": "paths (TEXT[])",
    "sha256_list": "SHA-256 digests: hex TEXT[] of blobs, raw BYTEA[] of pieces",
    "size_bytes_list": "raw sizes in bytes (BIGINT[])",
    "mode_list": "permission bits (INT[])",
    "mtime_ns_list": "modification times in ns since the epoch (BIGINT[])",
    "mime_list": "MIME types, NULL for none (TEXT[])",
    "piece_bytes_list": "piece sizes in bytes, NULL for a whole blob (INT[])",
    "commit_id_list": "commit numbers (BIGINT[])",
    "idx_list": "piece indexes (BIGINT[])",
    "codec_list": "codec names (TEXT[])",
    "stored_bytes_list": "stored (compressed) sizes in bytes (BIGINT[])",
    "chunks_list": "chunk counts of blobs (INT[])",
    "seq_list": "chunk numbers within a blob (INT[])",
    "data_list": "stored bytes of chunks or pieces (BYTEA[])",
}

DATABASE_ID = "SELECT id FROM waha_sync_database WHERE singleton"
MAKE_DATABASE_ID = """
INSERT INTO waha_sync_database (singleton, id) VALUES (true, :database_id)
ON CONFLICT (singleton) DO NOTHING
"""
# Rows of the lease table come back in ``Instance``'s field order and names.
INSTANCE = (
    "SELECT instance AS name, epoch, holder, last_commit, claimed_at FROM waha_sync_instances "
    "WHERE instance = :instance"
)
CLAIM = """
INSERT INTO waha_sync_instances AS i (instance, epoch, holder, claimed_at)
VALUES (:instance, 1, :holder, now())
ON CONFLICT (instance) DO UPDATE
    SET epoch = i.epoch + 1, holder = excluded.holder, claimed_at = excluded.claimed_at
RETURNING instance AS name, epoch, holder, last_commit, claimed_at
"""
# Fencing and numbering in one step: the row lock orders concurrent commits.
NEXT_COMMIT = """
UPDATE waha_sync_instances SET last_commit = last_commit + 1
WHERE instance = :instance AND epoch = :epoch RETURNING last_commit
"""
# The fields of a page row (a JSON array), in ``StoredEntry``'s field order: the
# statements below are written from this list and ``PgStore`` reads rows by it.
ENTRY_FIELDS = (
    "path",
    "sha256",
    "size_bytes",
    "mode",
    "mtime_ns",
    "mime",
    "codec",
    "stored_bytes",
    "updated_at",
    "piece_bytes",
    "commit_id",
)


def _entry_array(rows: str, *, absent: str = "") -> str:
    """``json_build_array`` of ``ENTRY_FIELDS``: from the blob row ``b`` for its columns,
    NULL for ``absent``, else from ``rows``."""
    blob = {"codec", "stored_bytes"}
    return (
        "json_build_array("
        + ", ".join(
            "NULL" if f == absent else f"b.{f}" if f in blob else f"{rows}.{f}"
            for f in ENTRY_FIELDS
        )
        + ")"
    )


# Pages come back as one JSON array (one row): parsing it is one json.loads in
# C, where a thousand rows would each cost the driver Python work (restart times:
# BENCHMARKS.md, "Sidecar restart with 100,000 known files").
LIVE_PAGE = f"""
SELECT coalesce(json_agg({_entry_array("e")} ORDER BY e.path), '[]')
FROM (SELECT * FROM waha_sync_entries
      WHERE instance = :instance AND NOT deleted AND path > :after_path
      ORDER BY path LIMIT :page_rows) AS e
LEFT JOIN waha_sync_blobs b ON b.sha256 = e.sha256
"""
# The newest version of each path at or before a commit; tombstones come back
# with a NULL sha256 so that paging still advances past them.
TREE_PAGE = f"""
SELECT coalesce(json_agg({_entry_array("t", absent="updated_at")} ORDER BY t.path), '[]')
FROM (SELECT DISTINCT ON (path) path, sha256, size_bytes, mode, mtime_ns, mime, piece_bytes,
             commit_id
      FROM waha_sync_versions
      WHERE instance = :instance AND commit_id <= :commit_id AND path > :after_path
      ORDER BY path, commit_id DESC LIMIT :page_rows) AS t
LEFT JOIN waha_sync_blobs b ON b.sha256 = t.sha256
"""
COMMIT_AT = """
SELECT max(id) FROM waha_sync_commits WHERE instance = :instance AND created_at <= :as_of
"""
# Reporting a blob as present also marks it in use, so GC spares it while the
# caller goes on to commit entries that refer to it.
KNOWN_BLOBS = """
UPDATE waha_sync_blobs SET used_at = now() WHERE sha256 = ANY(CAST(:sha256_list AS TEXT[]))
RETURNING sha256
"""
PUT_CHUNKS = """
INSERT INTO waha_sync_chunks (sha256, seq, data)
SELECT * FROM unnest(CAST(:sha256_list AS TEXT[]), CAST(:seq_list AS INT[]),
                     CAST(:data_list AS BYTEA[]))
ON CONFLICT (sha256, seq) DO NOTHING
"""
PUT_BLOBS = """
INSERT INTO waha_sync_blobs (sha256, size_bytes, codec, stored_bytes, chunks)
SELECT * FROM unnest(CAST(:sha256_list AS TEXT[]), CAST(:size_bytes_list AS BIGINT[]),
                     CAST(:codec_list AS TEXT[]), CAST(:stored_bytes_list AS BIGINT[]),
                     CAST(:chunks_list AS INT[]))
ON CONFLICT (sha256) DO UPDATE SET used_at = now()
"""
READ_CHUNKS = """
SELECT c.sha256, c.data FROM waha_sync_chunks c JOIN waha_sync_blobs b ON b.sha256 = c.sha256
WHERE c.sha256 = ANY(CAST(:sha256_list AS TEXT[])) AND c.seq < b.chunks
ORDER BY c.sha256, c.seq
"""
_CHANGES = """
SELECT * FROM unnest(CAST(:path_list AS TEXT[]), CAST(:sha256_list AS TEXT[]),
                     CAST(:size_bytes_list AS BIGINT[]), CAST(:mode_list AS INT[]),
                     CAST(:mtime_ns_list AS BIGINT[]), CAST(:mime_list AS TEXT[]),
                     CAST(:piece_bytes_list AS INT[]))
    AS u(path, sha, size, mode, mtime, mime, piece)
"""
# One statement writes the current state and the version history from the
# same parameters (sent once); CockroachDB supports data-modifying CTEs.
RECORD_CHANGES = f"""
WITH u AS ({_CHANGES}), cur AS (
    INSERT INTO waha_sync_entries AS e (instance, path, sha256, size_bytes, mode, mtime_ns,
        mime, piece_bytes, deleted, commit_id, first_uploaded_at, updated_at)
    SELECT :instance, path, sha, size, mode, mtime, mime, piece, false, :commit_id, now(), now()
    FROM u
    ON CONFLICT (instance, path) DO UPDATE SET
        sha256 = excluded.sha256, size_bytes = excluded.size_bytes, mode = excluded.mode,
        mtime_ns = excluded.mtime_ns, mime = excluded.mime, commit_id = excluded.commit_id,
        piece_bytes = excluded.piece_bytes,
        first_uploaded_at = CASE WHEN e.deleted THEN excluded.first_uploaded_at
                                 ELSE e.first_uploaded_at END,
        deleted = false, updated_at = excluded.updated_at
    RETURNING 1
)
INSERT INTO waha_sync_versions (instance, path, commit_id, sha256, size_bytes, mode, mtime_ns,
    mime, piece_bytes)
SELECT :instance, path, :commit_id, sha, size, mode, mtime, mime, piece FROM u
"""
RECORD_VERSIONS = f"""
INSERT INTO waha_sync_versions (instance, path, commit_id, sha256, size_bytes, mode, mtime_ns,
    mime, piece_bytes)
SELECT :instance, path, :commit_id, sha, size, mode, mtime, mime, piece FROM ({_CHANGES}) AS v
"""
TOMBSTONE = """
UPDATE waha_sync_entries SET deleted = true, commit_id = :commit_id, updated_at = now()
WHERE instance = :instance AND path = ANY(CAST(:path_list AS TEXT[])) AND NOT deleted
RETURNING path, size_bytes, mode, mtime_ns
"""
RECORD_COMMIT = """
INSERT INTO waha_sync_commits (instance, id, epoch, holder, files_changed, files_deleted,
    bytes_raw)
VALUES (:instance, :commit_id, :epoch, :holder, :files_changed, :files_deleted, :bytes_raw)
"""

# Pieces of large files (waha_sync.common.sync.pieces). A version's pieces are written
# before its commit, under the commit number it will get (last_commit + 1), each
# statement fenced like a commit: FOR SHARE holds off a claim until it is done, and
# once a claim is through, the epoch no longer matches and nothing is written.
FENCE_SHARE = """
SELECT last_commit FROM waha_sync_instances
WHERE instance = :instance AND epoch = :epoch FOR SHARE
"""
# Rows above the last commit belong to an upload that never committed (a crash, an
# outage, a fenced writer): the next upload clears them before writing its own.
DROP_UNCOMMITTED_PIECES = """
DELETE FROM waha_sync_pieces WHERE instance = :instance AND commit_id > :last_commit
"""
PUT_PIECES = """
INSERT INTO waha_sync_pieces (instance, path, idx, commit_id, sha256, codec, data)
SELECT :instance, :path, i, :commit_id, s, c, d
FROM unnest(CAST(:idx_list AS BIGINT[]), CAST(:sha256_list AS BYTEA[]),
            CAST(:codec_list AS TEXT[]), CAST(:data_list AS BYTEA[])) AS u(i, s, c, d)
ON CONFLICT (instance, path, idx, commit_id) DO UPDATE
    SET sha256 = excluded.sha256, codec = excluded.codec, data = excluded.data
"""
# Run inside every commit: rows at or above its number that no pieced entry of this
# commit wrote are leftovers of an upload that never committed.
DROP_FOREIGN_PIECES = """
DELETE FROM waha_sync_pieces
WHERE instance = :instance AND commit_id >= :commit_id
    AND NOT (commit_id = :commit_id AND path = ANY(CAST(:path_list AS TEXT[])))
"""
# The pieces of the version of a path at :commit_id with :idx_from <= idx < :idx_to: per index,
# the row of the highest commit at or before it. Windows of indexes, not LIMIT: the
# rows of a window come by primary key and are sorted in memory.
_PIECE_WINDOW = """
SELECT DISTINCT ON (idx) idx, {cols} FROM waha_sync_pieces
WHERE instance = :instance AND path = :path AND commit_id <= :commit_id
    AND idx >= :idx_from AND idx < :idx_to
ORDER BY idx, commit_id DESC
"""
PIECE_DIGESTS = _PIECE_WINDOW.format(cols="sha256")
PIECE_DATA = _PIECE_WINDOW.format(cols="sha256, codec, data")

# What each path costs in the database (stored, compressed bytes): its live version, and
# everything its retained history adds. Whole blobs may be shared by several paths (same
# content): each path counts them. Read every few minutes for /status and /metrics.
USAGE_BLOBS = """
SELECT u.path, sum(CASE WHEN u.live THEN b.stored_bytes ELSE 0 END) AS live_bytes,
       sum(b.stored_bytes) AS total_bytes
FROM (SELECT path, sha256, bool_or(live) AS live FROM (
          SELECT path, sha256, true AS live FROM waha_sync_entries
          WHERE instance = :instance AND NOT deleted AND piece_bytes IS NULL
          UNION ALL
          SELECT path, sha256, false FROM waha_sync_versions
          WHERE instance = :instance AND sha256 IS NOT NULL AND piece_bytes IS NULL) AS r
      GROUP BY path, sha256) AS u
JOIN waha_sync_blobs b ON b.sha256 = u.sha256
GROUP BY u.path
"""
# A piece row is live when it is the newest of its index and the path's live version is
# pieces that reach that far (every committed row of a path is at or before its version).
USAGE_PIECES = """
SELECT path, sum(CASE WHEN live THEN n ELSE 0 END) AS live_bytes, sum(n) AS total_bytes
FROM (
    SELECT p.path, length(p.data) AS n,
           e.piece_bytes IS NOT NULL AND p.idx * e.piece_bytes < e.size_bytes
               AND row_number() OVER (PARTITION BY p.path, p.idx ORDER BY p.commit_id DESC) = 1
               AS live
    FROM waha_sync_pieces p
    LEFT JOIN waha_sync_entries e ON e.instance = p.instance AND e.path = p.path
        AND NOT e.deleted
    WHERE p.instance = :instance
        AND p.commit_id <= (SELECT last_commit FROM waha_sync_instances WHERE instance = :instance)
) AS r
GROUP BY path
"""

# Garbage collection (waha_sync.common.sync.gc). The horizon commit is the last one
# made at or before now() - retention; every state from it on stays restorable.
GC_HORIZON = """
SELECT max(id) FROM waha_sync_commits
WHERE instance = :instance
    AND created_at <= now() - CAST(:retention_seconds AS FLOAT8) * INTERVAL '1 second'
"""
# One page of history at or before the horizon, in key order from a cursor.
GC_VERSION_PAGE = """
SELECT path, commit_id FROM waha_sync_versions
WHERE instance = :instance AND commit_id <= :horizon
    AND (path, commit_id) > (CAST(:after_path AS TEXT), CAST(:after_commit_id AS BIGINT))
ORDER BY path, commit_id LIMIT :page_rows
"""
_PAGE_KEYS = """
v.instance = :instance AND (v.path, v.commit_id) IN (
    SELECT * FROM unnest(CAST(:path_list AS TEXT[]), CAST(:commit_id_list AS BIGINT[])))
"""
# Versions before the horizon that a later version at or before it replaces.
GC_SUPERSEDED = f"""
DELETE FROM waha_sync_versions AS v
WHERE {_PAGE_KEYS} AND v.commit_id < :horizon AND EXISTS (
    SELECT 1 FROM waha_sync_versions w WHERE w.instance = v.instance AND w.path = v.path
    AND w.commit_id > v.commit_id AND w.commit_id <= :horizon)
RETURNING 1
"""
# A tombstone that is the only version left at or before the horizon says
# nothing a missing row would not (run after GC_SUPERSEDED: never resurrects).
GC_TOMBSTONES = f"""
DELETE FROM waha_sync_versions AS v
WHERE {_PAGE_KEYS} AND v.sha256 IS NULL AND v.commit_id <= :horizon AND NOT EXISTS (
    SELECT 1 FROM waha_sync_versions w WHERE w.instance = v.instance AND w.path = v.path
    AND w.commit_id <> v.commit_id AND w.commit_id <= :horizon)
RETURNING 1
"""
# Batches keyed by one column from a cursor; each returns (rows deleted, next cursor).
GC_ENTRIES = """
WITH d AS (
    DELETE FROM waha_sync_entries
    WHERE instance = :instance AND deleted AND commit_id <= :horizon AND path IN (
        SELECT path FROM waha_sync_entries
        WHERE instance = :instance AND deleted AND commit_id <= :horizon AND path > :after_path
        ORDER BY path LIMIT :page_rows)
    RETURNING path
)
SELECT count(*) AS deleted_rows, max(path) AS last_key FROM d
"""
GC_COMMITS = """
WITH d AS (
    DELETE FROM waha_sync_commits
    WHERE instance = :instance AND id < :horizon AND id IN (
        SELECT id FROM waha_sync_commits
        WHERE instance = :instance AND id < :horizon AND id > :after_commit_id
        ORDER BY id LIMIT :page_rows)
    RETURNING id
)
SELECT count(*) AS deleted_rows, max(id) AS last_key FROM d
"""
# Unused: no entry (live or tombstone) nor version of any instance refers to
# the blob, and no writer has relied on it within the grace period.
_UNUSED = """
b.used_at < now() - CAST(:grace_seconds AS FLOAT8) * INTERVAL '1 second'
AND NOT EXISTS (SELECT 1 FROM waha_sync_entries e WHERE e.sha256 = b.sha256)
AND NOT EXISTS (SELECT 1 FROM waha_sync_versions v WHERE v.sha256 = b.sha256)
"""
GC_BLOB_PAGE = f"""
SELECT b.sha256, b.chunks, ({_UNUSED}) AS unused FROM waha_sync_blobs AS b
WHERE b.sha256 > :after_sha256 ORDER BY b.sha256 LIMIT :page_rows
"""
# Checks again at delete time: a blob marked in use or referenced meanwhile stays.
GC_BLOBS = f"""
DELETE FROM waha_sync_blobs AS b
WHERE b.sha256 = ANY(CAST(:sha256_list AS TEXT[])) AND {_UNUSED}
RETURNING b.sha256, b.stored_bytes
"""
GC_CHUNKS = "DELETE FROM waha_sync_chunks WHERE sha256 = ANY(CAST(:sha256_list AS TEXT[]))"
# One page of piece rows at or before the horizon, in key order from a cursor.
GC_PIECE_PAGE = """
SELECT path, idx, commit_id FROM waha_sync_pieces
WHERE instance = :instance AND commit_id <= :horizon
    AND (path, idx, commit_id) > (CAST(:after_path AS TEXT), CAST(:after_idx AS BIGINT),
                                  CAST(:after_commit_id AS BIGINT))
ORDER BY path, idx, commit_id LIMIT :page_rows
"""
_PIECE_KEYS = """
p.instance = :instance AND (p.path, p.idx, p.commit_id) IN (
    SELECT * FROM unnest(CAST(:path_list AS TEXT[]), CAST(:idx_list AS BIGINT[]),
                         CAST(:commit_id_list AS BIGINT[])))
"""
# A piece row at or before the horizon is needed only as part of the version the path
# had at the horizon: it is dead when a later row at or before the horizon replaces it,
# or when that version is not stored as pieces of that size, or is shorter than the piece.
# (Versions after the horizon either rewrote every piece or build on that version.)
GC_PIECES = f"""
DELETE FROM waha_sync_pieces AS p
WHERE {_PIECE_KEYS} AND p.commit_id <= :horizon AND (
    EXISTS (SELECT 1 FROM waha_sync_pieces q WHERE q.instance = p.instance AND q.path = p.path
            AND q.idx = p.idx AND q.commit_id > p.commit_id AND q.commit_id <= :horizon)
    OR NOT EXISTS (
        SELECT 1 FROM (SELECT v.piece_bytes, v.size_bytes FROM waha_sync_versions v
                       WHERE v.instance = p.instance AND v.path = p.path
                           AND v.commit_id <= :horizon
                       ORDER BY v.commit_id DESC LIMIT 1) AS h
        WHERE h.piece_bytes IS NOT NULL AND p.idx * h.piece_bytes < h.size_bytes))
RETURNING length(p.data) AS freed_bytes
"""

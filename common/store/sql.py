"""The SQL that ``PgStore`` runs, in one place (PostgreSQL and CockroachDB alike).

Bulk parameters are array literals (``waha_sync.common.db.bulk``) cast with
``CAST(:p AS TYPE[])`` and spread with ``unnest``; pg8000 sends parameters
untyped, so the server parses each literal once, in C.
"""

DATABASE_ID = "SELECT id FROM waha_sync_database WHERE singleton"
MAKE_DATABASE_ID = """
INSERT INTO waha_sync_database (singleton, id) VALUES (true, :id) ON CONFLICT (singleton) DO NOTHING
"""
INSTANCE = (
    "SELECT instance, epoch, holder, last_commit, claimed_at FROM waha_sync_instances "
    "WHERE instance = :n"
)
CLAIM = """
INSERT INTO waha_sync_instances AS i (instance, epoch, holder, claimed_at)
VALUES (:n, 1, :h, now())
ON CONFLICT (instance) DO UPDATE
    SET epoch = i.epoch + 1, holder = excluded.holder, claimed_at = excluded.claimed_at
RETURNING instance, epoch, holder, last_commit, claimed_at
"""
# Fencing and numbering in one step: the row lock orders concurrent commits.
NEXT_COMMIT = """
UPDATE waha_sync_instances SET last_commit = last_commit + 1
WHERE instance = :n AND epoch = :e RETURNING last_commit
"""
# Pages come back as one JSON array (one row): parsing it is one json.loads in
# C, where a thousand rows would each cost the driver Python work (restart times:
# BENCHMARKS.md, "Sidecar restart with 100,000 known files").
LIVE_PAGE = """
SELECT coalesce(json_agg(json_build_array(e.path, e.sha256, e.size_bytes, e.mode, e.mtime_ns,
                                          e.mime, b.codec, b.stored_bytes, e.updated_at,
                                          e.piece_bytes, e.commit_id)
                         ORDER BY e.path), '[]')
FROM (SELECT * FROM waha_sync_entries
      WHERE instance = :name AND NOT deleted AND path > :after
      ORDER BY path LIMIT :lim) AS e
LEFT JOIN waha_sync_blobs b ON b.sha256 = e.sha256
"""
# The newest version of each path at or before a commit; tombstones come back
# with a NULL sha256 so that paging still advances past them.
TREE_PAGE = """
SELECT coalesce(json_agg(json_build_array(t.path, t.sha256, t.size_bytes, t.mode, t.mtime_ns,
                                          t.mime, b.codec, b.stored_bytes, NULL,
                                          t.piece_bytes, t.commit_id)
                         ORDER BY t.path), '[]')
FROM (SELECT DISTINCT ON (path) path, sha256, size_bytes, mode, mtime_ns, mime, piece_bytes,
             commit_id
      FROM waha_sync_versions
      WHERE instance = :name AND commit_id <= :cid AND path > :after
      ORDER BY path, commit_id DESC LIMIT :lim) AS t
LEFT JOIN waha_sync_blobs b ON b.sha256 = t.sha256
"""
COMMIT_AT = "SELECT max(id) FROM waha_sync_commits WHERE instance = :n AND created_at <= :w"
# Reporting a blob as present also marks it in use, so GC spares it while the
# caller goes on to commit entries that refer to it.
KNOWN_BLOBS = """
UPDATE waha_sync_blobs SET used_at = now() WHERE sha256 = ANY(CAST(:s AS TEXT[]))
RETURNING sha256
"""
PUT_CHUNKS = """
INSERT INTO waha_sync_chunks (sha256, seq, data)
SELECT * FROM unnest(CAST(:s AS TEXT[]), CAST(:q AS INT[]), CAST(:d AS BYTEA[]))
ON CONFLICT (sha256, seq) DO NOTHING
"""
PUT_BLOBS = """
INSERT INTO waha_sync_blobs (sha256, size_bytes, codec, stored_bytes, chunks)
SELECT * FROM unnest(CAST(:s AS TEXT[]), CAST(:z AS BIGINT[]), CAST(:c AS TEXT[]),
                     CAST(:b AS BIGINT[]), CAST(:n AS INT[]))
ON CONFLICT (sha256) DO UPDATE SET used_at = now()
"""
READ_CHUNKS = """
SELECT c.sha256, c.data FROM waha_sync_chunks c JOIN waha_sync_blobs b ON b.sha256 = c.sha256
WHERE c.sha256 = ANY(CAST(:s AS TEXT[])) AND c.seq < b.chunks
ORDER BY c.sha256, c.seq
"""
_CHANGES = """
SELECT * FROM unnest(CAST(:paths AS TEXT[]), CAST(:shas AS TEXT[]), CAST(:sizes AS BIGINT[]),
                     CAST(:modes AS INT[]), CAST(:mtimes AS BIGINT[]), CAST(:mimes AS TEXT[]),
                     CAST(:pieces AS INT[]))
    AS u(path, sha, size, mode, mtime, mime, piece)
"""
# One statement writes the current state and the version history from the
# same parameters (sent once); CockroachDB supports data-modifying CTEs.
RECORD_CHANGES = f"""
WITH u AS ({_CHANGES}), cur AS (
    INSERT INTO waha_sync_entries AS e (instance, path, sha256, size_bytes, mode, mtime_ns,
        mime, piece_bytes, deleted, commit_id, first_uploaded_at, updated_at)
    SELECT :name, path, sha, size, mode, mtime, mime, piece, false, :cid, now(), now() FROM u
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
SELECT :name, path, :cid, sha, size, mode, mtime, mime, piece FROM u
"""
RECORD_VERSIONS = f"""
INSERT INTO waha_sync_versions (instance, path, commit_id, sha256, size_bytes, mode, mtime_ns,
    mime, piece_bytes)
SELECT :name, path, :cid, sha, size, mode, mtime, mime, piece FROM ({_CHANGES}) AS v
"""
TOMBSTONE = """
UPDATE waha_sync_entries SET deleted = true, commit_id = :cid, updated_at = now()
WHERE instance = :n AND path = ANY(CAST(:p AS TEXT[])) AND NOT deleted
RETURNING path, size_bytes, mode, mtime_ns
"""
RECORD_COMMIT = """
INSERT INTO waha_sync_commits (instance, id, epoch, holder, files_changed, files_deleted,
    bytes_raw)
VALUES (:n, :cid, :e, :h, :fc, :fd, :b)
"""

# Pieces of large files (waha_sync.common.sync.pieces). A version's pieces are written
# before its commit, under the commit number it will get (last_commit + 1), each
# statement fenced like a commit: FOR SHARE holds off a claim until it is done, and
# once a claim is through, the epoch no longer matches and nothing is written.
FENCE_SHARE = """
SELECT last_commit FROM waha_sync_instances WHERE instance = :n AND epoch = :e FOR SHARE
"""
# Rows above the last commit belong to an upload that never committed (a crash, an
# outage, a fenced writer): the next upload clears them before writing its own.
DROP_UNCOMMITTED_PIECES = """
DELETE FROM waha_sync_pieces WHERE instance = :n AND commit_id > :c
"""
PUT_PIECES = """
INSERT INTO waha_sync_pieces (instance, path, idx, commit_id, sha256, codec, data)
SELECT :n, :p, i, :cid, s, c, d
FROM unnest(CAST(:i AS BIGINT[]), CAST(:s AS BYTEA[]), CAST(:c AS TEXT[]), CAST(:d AS BYTEA[]))
    AS u(i, s, c, d)
ON CONFLICT (instance, path, idx, commit_id) DO UPDATE
    SET sha256 = excluded.sha256, codec = excluded.codec, data = excluded.data
"""
# Run inside every commit: rows at or above its number that no pieced entry of this
# commit wrote are leftovers of an upload that never committed.
DROP_FOREIGN_PIECES = """
DELETE FROM waha_sync_pieces
WHERE instance = :n AND commit_id >= :cid
    AND NOT (commit_id = :cid AND path = ANY(CAST(:p AS TEXT[])))
"""
# The pieces of the version of a path at commit :cid with :lo <= idx < :hi: per index,
# the row of the highest commit at or before it. Windows of indexes, not LIMIT: the
# rows of a window come by primary key and are sorted in memory.
_PIECE_WINDOW = """
SELECT DISTINCT ON (idx) idx, {cols} FROM waha_sync_pieces
WHERE instance = :n AND path = :p AND commit_id <= :cid AND idx >= :lo AND idx < :hi
ORDER BY idx, commit_id DESC
"""
PIECE_DIGESTS = _PIECE_WINDOW.format(cols="sha256")
PIECE_DATA = _PIECE_WINDOW.format(cols="sha256, codec, data")

# What each path costs in the database (stored, compressed bytes): its live version, and
# everything its retained history adds. Whole blobs may be shared by several paths (same
# content): each path counts them. Read every few minutes for /status and /metrics.
USAGE_BLOBS = """
SELECT u.path, sum(CASE WHEN u.live THEN b.stored_bytes ELSE 0 END), sum(b.stored_bytes)
FROM (SELECT path, sha256, bool_or(live) AS live FROM (
          SELECT path, sha256, true AS live FROM waha_sync_entries
          WHERE instance = :n AND NOT deleted AND piece_bytes IS NULL
          UNION ALL
          SELECT path, sha256, false FROM waha_sync_versions
          WHERE instance = :n AND sha256 IS NOT NULL AND piece_bytes IS NULL) AS r
      GROUP BY path, sha256) AS u
JOIN waha_sync_blobs b ON b.sha256 = u.sha256
GROUP BY u.path
"""
# A piece row is live when it is the newest of its index and the path's live version is
# pieces that reach that far (every committed row of a path is at or before its version).
USAGE_PIECES = """
SELECT path, sum(CASE WHEN live THEN n ELSE 0 END), sum(n) FROM (
    SELECT p.path, length(p.data) AS n,
           e.piece_bytes IS NOT NULL AND p.idx * e.piece_bytes < e.size_bytes
               AND row_number() OVER (PARTITION BY p.path, p.idx ORDER BY p.commit_id DESC) = 1
               AS live
    FROM waha_sync_pieces p
    LEFT JOIN waha_sync_entries e ON e.instance = p.instance AND e.path = p.path
        AND NOT e.deleted
    WHERE p.instance = :n
        AND p.commit_id <= (SELECT last_commit FROM waha_sync_instances WHERE instance = :n)
) AS r
GROUP BY path
"""

# Garbage collection (waha_sync.common.sync.gc). The horizon commit is the last one
# made at or before now() - retention; every state from it on stays restorable.
GC_HORIZON = """
SELECT max(id) FROM waha_sync_commits
WHERE instance = :n AND created_at <= now() - CAST(:r AS FLOAT8) * INTERVAL '1 second'
"""
# One page of history at or before the horizon, in key order from a cursor.
GC_VERSION_PAGE = """
SELECT path, commit_id FROM waha_sync_versions
WHERE instance = :n AND commit_id <= :c
    AND (path, commit_id) > (CAST(:ap AS TEXT), CAST(:ac AS BIGINT))
ORDER BY path, commit_id LIMIT :lim
"""
_PAGE_KEYS = """
v.instance = :n AND (v.path, v.commit_id) IN (
    SELECT * FROM unnest(CAST(:p AS TEXT[]), CAST(:k AS BIGINT[])))
"""
# Versions before the horizon that a later version at or before it replaces.
GC_SUPERSEDED = f"""
DELETE FROM waha_sync_versions AS v
WHERE {_PAGE_KEYS} AND v.commit_id < :c AND EXISTS (
    SELECT 1 FROM waha_sync_versions w WHERE w.instance = v.instance AND w.path = v.path
    AND w.commit_id > v.commit_id AND w.commit_id <= :c)
RETURNING 1
"""
# A tombstone that is the only version left at or before the horizon says
# nothing a missing row would not (run after GC_SUPERSEDED: never resurrects).
GC_TOMBSTONES = f"""
DELETE FROM waha_sync_versions AS v
WHERE {_PAGE_KEYS} AND v.sha256 IS NULL AND v.commit_id <= :c AND NOT EXISTS (
    SELECT 1 FROM waha_sync_versions w WHERE w.instance = v.instance AND w.path = v.path
    AND w.commit_id <> v.commit_id AND w.commit_id <= :c)
RETURNING 1
"""
# Batches keyed by one column from a cursor; each returns (rows deleted, next cursor).
GC_ENTRIES = """
WITH d AS (
    DELETE FROM waha_sync_entries
    WHERE instance = :n AND deleted AND commit_id <= :c AND path IN (
        SELECT path FROM waha_sync_entries
        WHERE instance = :n AND deleted AND commit_id <= :c AND path > :after
        ORDER BY path LIMIT :lim)
    RETURNING path
)
SELECT count(*), max(path) FROM d
"""
GC_COMMITS = """
WITH d AS (
    DELETE FROM waha_sync_commits
    WHERE instance = :n AND id < :c AND id IN (
        SELECT id FROM waha_sync_commits WHERE instance = :n AND id < :c AND id > :after
        ORDER BY id LIMIT :lim)
    RETURNING id
)
SELECT count(*), max(id) FROM d
"""
# Unused: no entry (live or tombstone) nor version of any instance refers to
# the blob, and no writer has relied on it within the grace period.
_UNUSED = """
b.used_at < now() - CAST(:g AS FLOAT8) * INTERVAL '1 second'
AND NOT EXISTS (SELECT 1 FROM waha_sync_entries e WHERE e.sha256 = b.sha256)
AND NOT EXISTS (SELECT 1 FROM waha_sync_versions v WHERE v.sha256 = b.sha256)
"""
GC_BLOB_PAGE = f"""
SELECT b.sha256, b.chunks, ({_UNUSED}) FROM waha_sync_blobs AS b
WHERE b.sha256 > :after ORDER BY b.sha256 LIMIT :lim
"""
# Checks again at delete time: a blob marked in use or referenced meanwhile stays.
GC_BLOBS = f"""
DELETE FROM waha_sync_blobs AS b WHERE b.sha256 = ANY(CAST(:s AS TEXT[])) AND {_UNUSED}
RETURNING b.sha256, b.stored_bytes
"""
GC_CHUNKS = "DELETE FROM waha_sync_chunks WHERE sha256 = ANY(CAST(:s AS TEXT[]))"
# One page of piece rows at or before the horizon, in key order from a cursor.
GC_PIECE_PAGE = """
SELECT path, idx, commit_id FROM waha_sync_pieces
WHERE instance = :n AND commit_id <= :c
    AND (path, idx, commit_id) > (CAST(:ap AS TEXT), CAST(:ai AS BIGINT), CAST(:ac AS BIGINT))
ORDER BY path, idx, commit_id LIMIT :lim
"""
_PIECE_KEYS = """
p.instance = :n AND (p.path, p.idx, p.commit_id) IN (
    SELECT * FROM unnest(CAST(:kp AS TEXT[]), CAST(:ki AS BIGINT[]), CAST(:kc AS BIGINT[])))
"""
# A piece row at or before the horizon is needed only as part of the version the path
# had at the horizon: it is dead when a later row at or before the horizon replaces it,
# or when that version is not stored as pieces of that size, or is shorter than the piece.
# (Versions after the horizon either rewrote every piece or build on that version.)
GC_PIECES = f"""
DELETE FROM waha_sync_pieces AS p
WHERE {_PIECE_KEYS} AND p.commit_id <= :c AND (
    EXISTS (SELECT 1 FROM waha_sync_pieces q WHERE q.instance = p.instance AND q.path = p.path
            AND q.idx = p.idx AND q.commit_id > p.commit_id AND q.commit_id <= :c)
    OR NOT EXISTS (
        SELECT 1 FROM (SELECT v.piece_bytes, v.size_bytes FROM waha_sync_versions v
                       WHERE v.instance = p.instance AND v.path = p.path AND v.commit_id <= :c
                       ORDER BY v.commit_id DESC LIMIT 1) AS h
        WHERE h.piece_bytes IS NOT NULL AND p.idx * h.piece_bytes < h.size_bytes))
RETURNING length(p.data)
"""

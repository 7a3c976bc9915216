"""Versioned schema migrations, safe to run from several processes at once.

Each migration is a list of statements; each statement runs in a
transaction of its own (CockroachDB wants one DDL statement per
transaction) and is written to be idempotent (``IF NOT EXISTS``, ``OR
REPLACE``), so two processes migrating at the same moment both succeed.
Applied versions are recorded in ``waha_sync_migrations``. No advisory locks,
LISTEN/NOTIFY or large objects are used anywhere.

Tables (all prefixed ``waha_sync_``):

- ``instances``: one row per WAHA deployment: fencing epoch, holder, last commit number.
- ``blobs`` / ``chunks``: content addressed by the SHA-256 of the raw bytes,
  compressed with ``codec`` and split into chunks of at most 512 KiB;
  ``used_at`` is when a writer last relied on the blob (GC spares it for a while).
- ``commits``: numbered batches per instance; one push is one commit.
- ``entries``: the current state per (instance, path), deletions as tombstones.
- ``versions``: every version per (instance, path, commit) for restores as of a past time.
- ``pieces``: large files stored as pieces (``piece_bytes`` set on the entry or version):
  piece ``idx`` of ``path`` written by commit ``commit_id``: raw SHA-256, codec and the
  encoded bytes (at most 256 KiB raw, so a value stays under 512 KiB). A version
  records only the pieces that differ from the version before it; the whole list of a
  version at commit C is, per ``idx``, the row with the highest ``commit_id`` <= C (see
  ``waha_sync.common.sync.pieces``).
- ``database``: one row, this database's random id (restore markers record it).
- view ``waha_sync_files``: stable columns for operators' own SQL (live files only).
"""

from __future__ import annotations

from waha_sync.common.db.database import Database, Tx
from waha_sync.common.db.sqlstate import sqlstate
from waha_sync.common.errors import WahaSyncError

MIGRATIONS: list[tuple[int, str, list[str]]] = [
    (
        1,
        "initial schema",
        [
            """CREATE TABLE IF NOT EXISTS waha_sync_instances (
                instance TEXT PRIMARY KEY,
                epoch BIGINT NOT NULL DEFAULT 0,
                holder TEXT NOT NULL DEFAULT '',
                claimed_at TIMESTAMPTZ,
                last_commit BIGINT NOT NULL DEFAULT 0
            )""",
            """CREATE TABLE IF NOT EXISTS waha_sync_blobs (
                sha256 TEXT PRIMARY KEY,
                size_bytes BIGINT NOT NULL,
                codec TEXT NOT NULL,
                stored_bytes BIGINT NOT NULL,
                chunks INT NOT NULL,
                created_at TIMESTAMPTZ NOT NULL DEFAULT now()
            )""",
            """CREATE TABLE IF NOT EXISTS waha_sync_chunks (
                sha256 TEXT NOT NULL,
                seq INT NOT NULL,
                data BYTEA NOT NULL,
                PRIMARY KEY (sha256, seq)
            )""",
            """CREATE TABLE IF NOT EXISTS waha_sync_commits (
                instance TEXT NOT NULL,
                id BIGINT NOT NULL,
                epoch BIGINT NOT NULL,
                holder TEXT NOT NULL,
                created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
                files_changed INT NOT NULL,
                files_deleted INT NOT NULL,
                bytes_raw BIGINT NOT NULL,
                PRIMARY KEY (instance, id)
            )""",
            """CREATE TABLE IF NOT EXISTS waha_sync_entries (
                instance TEXT NOT NULL,
                path TEXT NOT NULL,
                sha256 TEXT,
                size_bytes BIGINT NOT NULL,
                mode INT NOT NULL,
                mtime_ns BIGINT NOT NULL,
                mime TEXT,
                deleted BOOLEAN NOT NULL DEFAULT false,
                commit_id BIGINT NOT NULL,
                first_uploaded_at TIMESTAMPTZ NOT NULL,
                updated_at TIMESTAMPTZ NOT NULL,
                PRIMARY KEY (instance, path)
            )""",
            """CREATE TABLE IF NOT EXISTS waha_sync_versions (
                instance TEXT NOT NULL,
                path TEXT NOT NULL,
                commit_id BIGINT NOT NULL,
                sha256 TEXT,
                size_bytes BIGINT NOT NULL,
                mode INT NOT NULL,
                mtime_ns BIGINT NOT NULL,
                mime TEXT,
                PRIMARY KEY (instance, path, commit_id)
            )""",
            """CREATE INDEX IF NOT EXISTS waha_sync_commits_created
                ON waha_sync_commits (instance, created_at)""",
            """CREATE INDEX IF NOT EXISTS waha_sync_versions_commit
                ON waha_sync_versions (instance, commit_id)""",
            """CREATE OR REPLACE VIEW waha_sync_files AS
                SELECT instance, path, size_bytes, sha256, updated_at
                FROM waha_sync_entries WHERE NOT deleted""",
        ],
    ),
    (
        2,
        "retention: blob use times, content reference indexes",
        [
            # Existing rows get the time of the migration, so GC's grace covers them.
            """ALTER TABLE waha_sync_blobs
                ADD COLUMN IF NOT EXISTS used_at TIMESTAMPTZ NOT NULL DEFAULT now()""",
            """CREATE INDEX IF NOT EXISTS waha_sync_entries_sha
                ON waha_sync_entries (sha256)""",
            """CREATE INDEX IF NOT EXISTS waha_sync_versions_sha
                ON waha_sync_versions (sha256)""",
        ],
    ),
    (
        3,
        "large files as pieces: piece rows per version, piece size on entries and versions",
        [
            # A piece is named and verified by the SHA-256 of its raw bytes, and stored in
            # its own row: a page-sized piece under a blob row and a chunk row of its own
            # would cost three rows of overhead per page.
            """CREATE TABLE IF NOT EXISTS waha_sync_pieces (
                instance TEXT NOT NULL,
                path TEXT NOT NULL,
                idx BIGINT NOT NULL,
                commit_id BIGINT NOT NULL,
                sha256 BYTEA NOT NULL,
                codec TEXT NOT NULL,
                data BYTEA NOT NULL,
                PRIMARY KEY (instance, path, idx, commit_id)
            )""",
            # Orphans of an interrupted upload are found by commit number.
            """CREATE INDEX IF NOT EXISTS waha_sync_pieces_commit
                ON waha_sync_pieces (instance, commit_id)""",
            # NULL: the version is one whole blob (every row written before this migration).
            """ALTER TABLE waha_sync_entries ADD COLUMN IF NOT EXISTS piece_bytes INT""",
            """ALTER TABLE waha_sync_versions ADD COLUMN IF NOT EXISTS piece_bytes INT""",
            # piece_bytes NULL: sha256 is the file's SHA-256; else that of its piece list.
            """CREATE OR REPLACE VIEW waha_sync_files AS
                SELECT instance, path, size_bytes, sha256, updated_at, piece_bytes
                FROM waha_sync_entries WHERE NOT deleted""",
        ],
    ),
    (
        4,
        "database identity: a random id restore markers record",
        [
            # One row (made on first use, Store.database_id): a marker names the database it
            # was written against, so a fresh database that happens to hold an instance of
            # the same name and epoch never takes it for its own.
            """CREATE TABLE IF NOT EXISTS waha_sync_database (
                singleton BOOLEAN PRIMARY KEY DEFAULT true CHECK (singleton),
                id TEXT NOT NULL,
                created_at TIMESTAMPTZ NOT NULL DEFAULT now()
            )""",
        ],
    ),
]

LATEST = MIGRATIONS[-1][0]
_ALREADY_EXISTS = {"42P07", "42701", "42710", "23505"}  # duplicate table/column/object, race
# A view may only gain columns (at the end): replacing a later migration's view with an
# earlier one's is refused with this code, which means the later one is already there.
_VIEW = "CREATE OR REPLACE VIEW"
_VIEW_HAS_MORE_COLUMNS = "42P16"


def _ddl(db: Database, sql: str) -> None:
    def apply(tx: Tx) -> None:
        tx.run(sql)

    try:
        db.transaction(apply)
    except Exception as exc:
        if sqlstate(exc) == _VIEW_HAS_MORE_COLUMNS and sql.lstrip().startswith(_VIEW):
            return  # a concurrent migrator already replaced it with a later migration's view
        # A concurrent migrator created the same object between our check and
        # our create; the statement is idempotent, so once more settles it.
        if sqlstate(exc) not in _ALREADY_EXISTS:
            raise
        db.transaction(apply)


def schema_version(db: Database) -> int:
    """The highest applied migration, 0 on an empty database."""

    def read(tx: Tx) -> int:
        exists = tx.value(
            "SELECT count(*) FROM information_schema.tables "
            "WHERE table_schema = current_schema() AND table_name = 'waha_sync_migrations'"
        )
        if not exists:
            return 0
        return int(tx.value("SELECT coalesce(max(version), 0) FROM waha_sync_migrations"))

    return db.transaction(read)


def migrate(db: Database) -> int:
    """Bring the schema to ``LATEST``; returns the version now in force."""
    current = schema_version(db)
    if current > LATEST:
        raise WahaSyncError(
            f"database: schema version {current} is newer than this waha-sync knows ({LATEST})",
            "upgrade waha-sync to the version that wrote it",
        )
    if current == LATEST:
        return current
    _ddl(
        db,
        """CREATE TABLE IF NOT EXISTS waha_sync_migrations (
            version INT PRIMARY KEY,
            name TEXT NOT NULL,
            applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
        )""",
    )
    for version, name, statements in MIGRATIONS:
        if version <= current:
            continue
        for sql in statements:
            _ddl(db, sql)

        def record(tx: Tx, version: int = version, name: str = name) -> None:
            tx.run(
                "INSERT INTO waha_sync_migrations (version, name) "
                "VALUES (:version, :migration_name) ON CONFLICT (version) DO NOTHING",
                version=version,
                migration_name=name,
            )

        db.transaction(record)
        db.log.info("schema: applied migration %d: %s", version, name)
    return LATEST

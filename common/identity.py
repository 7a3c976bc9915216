"""Which database this is: a random id made once and kept in the database itself.

Restore markers record it, so a marker can tell the database it was written
against from any other (a fresh database, another cluster) that happens to
hold an instance of the same name at the same epoch. The id lives in a
one-row table ``waha_sync_database``, created on first use (one DDL statement
in its own transaction, idempotent, so concurrent first uses are safe on
PostgreSQL and CockroachDB). A dump restored elsewhere keeps the id: it is
the same data, so markers against it stay valid.
"""

from __future__ import annotations

import secrets

from waha_sync.common.db import Database, Tx, sqlstate
from waha_sync.common.errors import WahaSyncError
from waha_sync.common.store import Store

_TABLE = """CREATE TABLE IF NOT EXISTS waha_sync_database (
    singleton BOOLEAN PRIMARY KEY DEFAULT true CHECK (singleton),
    id TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
)"""
_UNDEFINED_TABLE = "42P01"
_ALREADY_EXISTS = {"42P07", "23505"}


def _read(tx: Tx) -> str | None:
    rows = tx.run("SELECT id FROM waha_sync_database WHERE singleton")
    return str(rows[0][0]) if rows else None


def database_id(db: Database) -> str:
    """This database's id (32 hex digits), made on first use.

    Raises ``DatabaseUnavailable`` like every database call; 40001 is retried.
    """
    try:
        found = db.transaction(_read)
    except Exception as exc:
        if sqlstate(exc) != _UNDEFINED_TABLE:
            raise
        found = None
    if found is not None:
        return found

    def create(tx: Tx) -> None:
        tx.run(_TABLE)

    try:
        db.transaction(create)
    except Exception as exc:  # a concurrent first use created it meanwhile
        if sqlstate(exc) not in _ALREADY_EXISTS:
            raise
    made = secrets.token_hex(16)

    def insert(tx: Tx) -> None:
        tx.run(
            "INSERT INTO waha_sync_database (singleton, id) VALUES (true, :id) "
            "ON CONFLICT (singleton) DO NOTHING",
            id=made,
        )

    db.transaction(insert)
    found = db.transaction(_read)  # ours, or a concurrent first use's
    if found is None:
        raise WahaSyncError("database: waha_sync_database holds no id after creating one")
    return found


def store_database_id(store: Store) -> str:
    """The id of the database behind ``store``; "" for a store without one."""
    db = getattr(store, "db", None)
    return database_id(db) if isinstance(db, Database) else ""

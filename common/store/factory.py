"""The one way to reach the store: parsed connection parameters in, a ``PgStore`` out.

``open_store`` gives a ready store: connected (waiting for the database if asked) and,
unless told otherwise, with the schema migrated to this version. ``open_probe`` gives the
health check's store: short timeouts, its own session, no schema work. ``open_lazy_store``
gives a store that connects on first use (the sidecar's, which survive outages, and
restore's extra writers in other processes, to which it is handed by name); its user
applies the schema (``Store.ensure_schema``) when it starts.
"""

from __future__ import annotations

from dataclasses import replace

from waha_sync.common.db.database import Database
from waha_sync.common.db.url import ConnParams
from waha_sync.common.store.postgres import PgStore

PROBE_S = 5.0  # the health check's connect and I/O timeout, seconds


def open_store(
    params: ConnParams,
    component: str,
    *,
    chaos_40001_rate: float = 0.0,
    wait_seconds: float = 0.0,
    schema: bool = True,
) -> PgStore:
    """A connected store for ``component`` (the log prefix: ``sync``, ``restore``, ``cli``).

    Connects, retrying for up to ``wait_seconds`` (0: one attempt), then applies every
    migration this version knows unless ``schema`` is False (read-only commands that report
    the schema as they find it). Raises ``DatabaseUnavailable`` when the database does not
    answer in time, pg8000 errors from the migration.
    """
    db = Database(params, chaos_40001_rate=chaos_40001_rate, component=component)
    db.wait_until_ready(wait_seconds)
    store = PgStore(db)
    if schema:
        store.ensure_schema()
    return store


def open_probe(params: ConnParams, *, chaos_40001_rate: float = 0.0) -> PgStore:
    """The health check's store (no I/O yet): connect and I/O timeouts of at most
    ``PROBE_S`` seconds, logging as ``http``, on a session apart from the syncer's."""
    quick = replace(params, connect_timeout=min(params.connect_timeout or PROBE_S, PROBE_S))
    db = Database(quick, chaos_40001_rate=chaos_40001_rate, component="http", io_timeout=PROBE_S)
    return PgStore(db)


def open_lazy_store(params: ConnParams, chaos_40001_rate: float, component: str) -> PgStore:
    """A store that connects on first use (no I/O here). Module-level with positional
    arguments, so ``functools.partial`` of it can be handed to other processes."""
    return PgStore(Database(params, chaos_40001_rate=chaos_40001_rate, component=component))

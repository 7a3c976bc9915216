"""Thin handlers for the commands that write: push, restore, sidecar, gc."""

from __future__ import annotations

import argparse
import functools
import logging
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pg8000.exceptions

from waha_sync.common.config.settings import Settings
from waha_sync.common.db.database import Database, sqlstate
from waha_sync.common.db.schema import migrate
from waha_sync.common.db.url import ConnParams, parse_url
from waha_sync.common.errors import ConfigError
from waha_sync.common.logs import log_fields, register_secret
from waha_sync.common.store.postgres import PgStore, open_pg_store
from waha_sync.common.sync.gc import collect
from waha_sync.common.sync.push import push
from waha_sync.common.sync.scan import fmt_bytes
from waha_sync.common.sync.trees import Tree, trees
from waha_sync.common.words import plural

COMPONENT = {
    "push": "sync",
    "restore": "restore",
    "sidecar": "sync",
    "gc": "sync",
    "ls": "cli",
    "check": "cli",
    "up": "sync",
    "import-gridfs": "sync",
}
PROBE_S = 5.0  # the health check's connect and I/O timeout


def describe(exc: BaseException) -> str:
    """A one-line description of an exception, with SQLSTATE and message for database errors."""
    code = sqlstate(exc)
    if code is not None and isinstance(exc, pg8000.exceptions.DatabaseError):
        return f"database error {code}: {exc.args[0].get('M', '')}"
    return str(exc) or type(exc).__name__


def _params(url: str) -> ConnParams:
    """Parse a database URL (no I/O) and keep its password out of every log line."""
    params = parse_url(url)
    if params.password is not None:
        register_secret(params.password.get_secret_value())
    return params


def open_db(settings: Settings, component: str, wait: float) -> Database:
    """Validate the URL (before any I/O), then connect, waiting up to ``wait`` seconds."""
    params = _params(settings.require_database_url())
    db = Database(params, chaos_40001_rate=settings.chaos_40001_rate, component=component)
    db.wait_until_ready(wait)
    return db


def require_folder(path: Path, *, may_create: bool = False) -> None:
    """``--sessions-dir`` must be a folder (``may_create``: or not exist yet): else exit 2.

    One rule, checked before any I/O, for every command that uses the folder.
    """
    if path.is_dir() or (may_create and not path.exists() and not path.is_symlink()):
        return
    raise ConfigError(
        f"sessions_dir: not a directory (got {str(path)!r})",
        "--sessions-dir pointing at WAHA's sessions folder",
    )


def run_push(settings: Settings, args: argparse.Namespace) -> int:
    log = logging.getLogger("waha_sync.sync")
    require_folder(settings.sessions_dir)
    db = open_db(settings, "sync", settings.wait_seconds)
    migrate(db)
    out = push(PgStore(db), settings, force=args.force)
    r = out.report
    log.info(
        "push done: %d scanned, %d uploaded, %d unchanged, %d deleted, %d skipped; "
        "%s raw, %s stored; commit %s; %.2fs",
        out.scanned,
        r.files_uploaded,
        r.files_unchanged,
        r.files_deleted,
        len([s for s in r.skipped if not s.quiet]),
        fmt_bytes(r.raw_bytes),
        fmt_bytes(r.stored_bytes),
        r.commit_id if r.commit_id is not None else "none (nothing changed)",
        r.elapsed_seconds,
    )
    return 0


def run_sidecar(settings: Settings, args: argparse.Namespace) -> int:
    """Keep every tree in the database until SIGTERM (see ``waha_sync.sidecar.run``)."""
    from waha_sync.sidecar.run import Sidecar

    def open_store(tree: Tree) -> PgStore:
        return open_pg_store(_params(tree.database_url), settings.chaos_40001_rate, "sync")

    def open_probe(tree: Tree) -> Database:  # the health check's: short timeouts, its own session
        params = _params(tree.database_url)
        quick = replace(params, connect_timeout=min(params.connect_timeout or PROBE_S, PROBE_S))
        return Database(
            quick, chaos_40001_rate=settings.chaos_40001_rate, component="http", io_timeout=PROBE_S
        )

    return Sidecar(settings, open_store, open_probe, force=args.force).run()


def run_restore(settings: Settings, args: argparse.Namespace) -> int:
    for tree in trees(settings, restoring=True):
        with log_fields(tree=tree.label, instance=tree.instance):
            _restore_tree(tree.settings_for(settings), args, tree.label)
    return 0


def _restore_tree(settings: Settings, args: argparse.Namespace, label: str) -> None:
    from waha_sync.init.restore import restore  # the sidecar never needs it: keep RSS low

    log = logging.getLogger("waha_sync.restore")
    db = open_db(settings, "restore", settings.wait_seconds)
    migrate(db)
    another = functools.partial(open_pg_store, db.params, settings.chaos_40001_rate, "restore")
    r = restore(PgStore(db), settings, at=args.at, read_only=args.read_only, store_factory=another)
    if r.volume_newer:
        log.info(
            "restore done (%s): commit %d, volume kept as it is (%d local changes for the "
            "sidecar to ship); epoch %d; %.2fs",
            label,
            r.commit_id,
            r.local_changes,
            r.epoch,
            r.seconds,
        )
        return
    if r.commit_id == 0 and not r.displaced:
        return
    log.info(
        "restore done (%s): commit %d, %s (%d written, %d unchanged, %d displaced), %s; "
        "epoch %s; %.2fs",
        label,
        r.commit_id,
        plural(r.files, "file"),
        r.written,
        r.unchanged,
        len(r.displaced),
        fmt_bytes(r.bytes),
        r.epoch or "none (read-only)",
        r.seconds,
    )


def run_gc(settings: Settings, args: argparse.Namespace) -> int:
    for tree in trees(settings):
        one = tree.settings_for(settings)
        db = open_db(one, "sync", settings.wait_seconds)
        migrate(db)
        report = collect(PgStore(db), one.instance, timedelta(hours=settings.retention_hours))
        if not report.rows_deleted:  # collect logs its summary only when it deleted something
            logging.getLogger("waha_sync.sync").info(
                "gc done: instance %s: nothing to delete (history kept: %g hours); %.2fs",
                one.instance,
                settings.retention_hours,
                report.seconds,
            )
        db.close()
    return 0

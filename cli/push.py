"""``waha-sync push``: the sessions directory to the database as one commit."""

from __future__ import annotations

import argparse
import logging
from dataclasses import dataclass

from waha_sync.cli.command import DB, Command, add_force_flag
from waha_sync.common.config.settings import Settings
from waha_sync.common.logs import log_fields
from waha_sync.common.store.factory import open_store
from waha_sync.common.sync.push import push
from waha_sync.common.sync.scan import fmt_bytes

NAME = "push"
COMPONENT = "sync"
SUMMARY = "Upload the sessions directory to the database as one commit."
EXAMPLE = "waha-sync push --sessions-dir ./sessions"
DETAIL = (
    "Walks --sessions-dir (symlinks are not followed), snapshots SQLite databases "
    "consistently, skips invalid JSON and files over the limit (naming each), uploads new "
    "or changed files and records deletions. Refuses to push into an instance that already "
    "holds data from a directory without its restore marker, unless --force."
)
SETTINGS = (
    *DB,
    "wait_seconds",
    "sessions_dir",
    "instance",
    "max_file_bytes",
    "max_sqlite_bytes",
    "exclude",
    "workers",
    "local_db_dir",
)


@dataclass(frozen=True)
class Options:
    force: bool = False  # upload without this instance's restore marker


def options(args: argparse.Namespace) -> Options:
    return Options(force=args.force)


def run(settings: Settings, options: Options) -> int:
    """Push ``settings.sessions_dir`` (an existing folder) into ``settings.instance``; 0."""
    with log_fields(tree="sessions", instance=settings.instance):
        return _run(settings, options)


def _run(settings: Settings, options: Options) -> int:
    log = logging.getLogger(f"waha_sync.{COMPONENT}")
    store = open_store(
        settings.database(),
        COMPONENT,
        chaos_40001_rate=settings.chaos_40001_rate,
        wait_seconds=settings.wait_seconds,
    )
    out = push(store, settings, force=options.force)
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


COMMAND = Command(
    name=NAME,
    summary=SUMMARY,
    example=EXAMPLE,
    detail=DETAIL,
    settings=SETTINGS,
    component=COMPONENT,
    add_flags=add_force_flag,
    options=options,
    run=run,
    folder="existing",
    finds_local=True,
)

"""``waha-sync restore``: fill the sessions directory from the database (the init container)."""

from __future__ import annotations

import argparse
import functools
import logging
from dataclasses import dataclass
from datetime import datetime

from waha_sync.cli.command import DB, MEDIA, Command
from waha_sync.common.config.settings import Settings
from waha_sync.common.errors import ConfigError
from waha_sync.common.logs import log_fields
from waha_sync.common.store.factory import open_lazy_store, open_store
from waha_sync.common.sync.scan import fmt_bytes
from waha_sync.common.sync.trees import Tree, trees
from waha_sync.common.words import plural

NAME = "restore"
COMPONENT = "restore"
SUMMARY = "Fill the sessions directory from the database (the init container)."
EXAMPLE = "waha-sync restore --sessions-dir /app/.sessions"
DETAIL = (
    "Waits for the database, applies migrations, claims the instance. A volume that holds "
    "this instance's current marker (it was the last writer) is kept as it is; otherwise "
    "every stored file is written (temp file + rename, SHA-256 verified): identical local "
    "files are left alone, differing and unknown ones (SQLite -wal/-shm/-journal with their "
    "database) moved to .waha-sync/displaced/<UTC time>/. Writes the marker "
    ".waha-sync/restored.json on success."
)
SETTINGS = (
    *DB,
    "wait_seconds",
    "sessions_dir",
    "instance",
    "workers",
    "uid",
    "gid",
    "restore_media",
    *MEDIA,
    "local_db_dir",
    # A surviving volume is compared with the stored tree as the sidecar would.
    "max_file_bytes",
    "max_sqlite_bytes",
    "exclude",
    "displaced_retention_hours",
)


@dataclass(frozen=True)
class Options:
    at: datetime | None = None  # the tree as of this time (aware); None: the latest
    read_only: bool = False  # a copy for inspection: claims nothing


def add_flags(sub: argparse.ArgumentParser) -> None:
    sub.add_argument(
        "--at",
        type=_timestamp,
        metavar="TIMESTAMP",
        help="Restore the tree as of this ISO 8601 time (retained history).",
    )
    sub.add_argument(
        "--read-only",
        action="store_true",
        help="Restore a copy for inspection: claims nothing; no pushing from it.",
    )


def _timestamp(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text)
    except ValueError:  # a ConfigError passes through argparse: one line and a hint, exit 2
        raise ConfigError(
            f"at: not an ISO 8601 time (got {text!r})",
            "--at 2026-01-09T10:30:00Z (or 2026-01-09 for midnight, local time)",
        ) from None
    return value if value.tzinfo else value.astimezone()


def options(args: argparse.Namespace) -> Options:
    return Options(at=args.at, read_only=args.read_only)


def run(settings: Settings, options: Options) -> int:
    """Restore every tree (sessions, then media when it syncs); 0."""
    for tree in trees(settings, restoring=True):
        with log_fields(tree=tree.label, instance=tree.instance):
            _restore_tree(tree, settings, options)
    return 0


def _restore_tree(tree: Tree, settings: Settings, options: Options) -> None:
    from waha_sync.init.restore import restore  # the sidecar never needs it: keep RSS low

    log = logging.getLogger(f"waha_sync.{COMPONENT}")
    chaos = settings.chaos_40001_rate
    store = open_store(
        tree.database, COMPONENT, chaos_40001_rate=chaos, wait_seconds=settings.wait_seconds
    )
    another = functools.partial(open_lazy_store, tree.database, chaos, COMPONENT)
    r = restore(
        store,
        tree.settings_for(settings),
        at=options.at,
        read_only=options.read_only,
        store_factory=another,
    )
    if r.volume_newer:
        log.info(
            "restore done (%s): commit %d, volume kept as it is (%d local changes for the "
            "sidecar to ship); epoch %d; %.2fs",
            tree.label,
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
        tree.label,
        r.commit_id,
        plural(r.files, "file"),
        r.written,
        r.unchanged,
        len(r.displaced),
        fmt_bytes(r.bytes),
        r.epoch or "none (read-only)",
        r.seconds,
    )


COMMAND = Command(
    name=NAME,
    summary=SUMMARY,
    example=EXAMPLE,
    detail=DETAIL,
    settings=SETTINGS,
    component=COMPONENT,
    add_flags=add_flags,
    options=options,
    run=run,
    folder="may create",
    finds_local=True,
    media=True,
    claims=lambda settings, args: None if args.read_only else settings.instance,
)

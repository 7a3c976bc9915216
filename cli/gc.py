"""``waha-sync gc``: delete history older than the retention, and content nothing refers to."""

from __future__ import annotations

import argparse
import logging
from dataclasses import dataclass
from datetime import timedelta

from waha_sync.cli.command import DB, Command, no_flags
from waha_sync.common.config.settings import Settings
from waha_sync.common.logs import log_fields
from waha_sync.common.store.factory import open_store
from waha_sync.common.sync.gc import collect
from waha_sync.common.sync.trees import trees

NAME = "gc"
COMPONENT = "sync"
SUMMARY = "Delete history older than --retention-hours and content nothing refers to."
EXAMPLE = "waha-sync gc --retention-hours 24"
DETAIL = (
    "Keeps the live tree and every state from the retention horizon on (restore --at any "
    "later time gives the same tree); deletes older replaced versions, old tombstones and "
    "commit records, then stored content that no file or version of any instance refers "
    "to and that no writer used within the last hour. Works in small transactions, safe "
    "while pushes and restores run. The sidecar does this every --gc-interval-seconds."
)
SETTINGS = (
    *DB,
    "wait_seconds",
    "instance",
    "retention_hours",
    "media_storage",
    "media_database_url",
    "local_db_dir",
)


@dataclass(frozen=True)
class Options:
    """gc has no flags of its own: the retention is a setting."""


def options(_args: argparse.Namespace) -> Options:
    return Options()


def run(settings: Settings, _options: Options) -> int:
    """Collect every tree's instance (sessions, and media when it syncs); 0."""
    for tree in trees(settings):
        with log_fields(tree=tree.label, instance=tree.instance):
            store = open_store(
                tree.database,
                COMPONENT,
                chaos_40001_rate=settings.chaos_40001_rate,
                wait_seconds=settings.wait_seconds,
            )
            report = collect(store, tree.instance, timedelta(hours=settings.retention_hours))
            if not report.rows_deleted:  # collect logs its summary only when it deleted something
                logging.getLogger(f"waha_sync.{COMPONENT}").info(
                    "gc done: instance %s: nothing to delete (history kept: %g hours); %.2fs",
                    tree.instance,
                    settings.retention_hours,
                    report.seconds,
                )
            store.close()
    return 0


COMMAND = Command(
    name=NAME,
    summary=SUMMARY,
    example=EXAMPLE,
    detail=DETAIL,
    settings=SETTINGS,
    component=COMPONENT,
    add_flags=no_flags,
    options=options,
    run=run,
    finds_local=True,
)

"""``waha-sync sidecar``: keep the database equal to the sessions directory while WAHA runs."""

from __future__ import annotations

import argparse
from dataclasses import dataclass

from waha_sync.cli.command import DB, SIDECAR, Command, add_force_flag
from waha_sync.common.config.settings import Settings
from waha_sync.common.store.factory import open_lazy_store, open_probe
from waha_sync.common.store.postgres import PgStore
from waha_sync.common.sync.trees import Tree

NAME = "sidecar"
COMPONENT = "sync"
SUMMARY = "Keep the database equal to the sessions directory while WAHA runs."
EXAMPLE = "waha-sync sidecar --sessions-dir /app/.sessions"
DETAIL = (
    "Requires this instance's restore marker (unless --force), compares the tree with the "
    "database, then watches it with inotify and ships every change once it has been quiet "
    "for --debounce-seconds (at most --max-delay-seconds late), one commit per batch. "
    "Survives database outages; stops writing if another pod claims the instance. "
    "SIGTERM/SIGINT: final flush within --shutdown-timeout-seconds, exit 0."
)
SETTINGS = (*DB, *SIDECAR)


@dataclass(frozen=True)
class Options:
    force: bool = False  # upload without this instance's restore marker


def options(args: argparse.Namespace) -> Options:
    return Options(force=args.force)


def run(settings: Settings, options: Options) -> int:
    """Keep every tree in the database until SIGTERM (see ``waha_sync.sidecar.run``)."""
    from waha_sync.sidecar.run import Sidecar

    chaos = settings.chaos_40001_rate

    def store(tree: Tree) -> PgStore:  # connects on first use: the sidecar survives outages
        return open_lazy_store(tree.database, chaos, COMPONENT)

    def probe(tree: Tree) -> PgStore:
        return open_probe(tree.database, chaos_40001_rate=chaos)

    return Sidecar(settings, store, probe, force=options.force).run()


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
    media=True,
)

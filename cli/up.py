"""``waha-sync up``: on a laptop, restore then sync until Ctrl-C, on an embedded PostgreSQL.

How the other commands find that database when given no URL: ``local.py``.
"""

from __future__ import annotations

import argparse
import logging
import time
from dataclasses import dataclass
from pathlib import Path

from waha_sync.cli import restore, sidecar
from waha_sync.cli.command import DB, SIDECAR, Command, require_folder
from waha_sync.cli.local import HOLDER_WAIT_S, local_db_dir, socket_url
from waha_sync.common.config.settings import Settings
from waha_sync.common.errors import ConfigError

NAME = "up"
COMPONENT = "sync"
SUMMARY = "Run on a laptop: restore, then sync until Ctrl-C (embedded PostgreSQL without a URL)."
EXAMPLE = "waha-sync up"
DETAIL = (
    "For a laptop: with no database URL, starts an embedded PostgreSQL (durable, its data "
    "in --local-db-dir), restores the sessions folder (default: next to that data, printed) "
    "from it, then syncs it continuously. Ctrl-C ships what is pending, then stops the "
    "database. ls, check, push, gc and restore without a URL find this database by "
    "themselves (same --local-db-dir), running or not."
)
SETTINGS = (
    *DB,
    *SIDECAR,
    "wait_seconds",
    "uid",
    "gid",
    "restore_media",
    "local_db_dir",
    "displaced_retention_hours",
)

log = logging.getLogger(f"waha_sync.{COMPONENT}")


@dataclass(frozen=True)
class Options:
    local_port: int | None = None  # the embedded PostgreSQL's TCP port; None: a free one


def add_flags(sub: argparse.ArgumentParser) -> None:
    sub.add_argument(
        "--local-port",
        type=int,
        default=None,
        metavar="PORT",
        help="TCP port of the embedded PostgreSQL (default: a free one; other commands "
        "find it in the data folder).",
    )


def options(args: argparse.Namespace) -> Options:
    return Options(local_port=args.local_port)


def up_sessions_dir(settings: Settings) -> Path:
    """``up``'s sessions folder: the one given, else ``sessions`` beside the data folder."""
    if "sessions_dir" in settings.model_fields_set:
        return settings.sessions_dir.absolute()
    return local_db_dir(settings).parent / "sessions"


def run(settings: Settings, options: Options) -> int:
    """Restore, then the sidecar until Ctrl-C; with no database URL, on an embedded PostgreSQL."""
    sessions = up_sessions_dir(settings)
    require_folder(sessions, may_create=True)
    settings = settings.model_copy(update={"sessions_dir": sessions})
    if "host" not in settings.model_fields_set:  # a laptop's dashboard is its own
        settings = settings.model_copy(update={"host": "127.0.0.1"})
    if settings.database_url is not None:
        return _restore_then_sync(settings)
    from waha_sync.common.local.postgres import DataLock, LocalPostgres, running_port, stop_running

    folder = local_db_dir(settings)
    if folder.exists() and not folder.is_dir():
        raise ConfigError(
            f"local_db_dir: not a directory (got {str(folder)!r})",
            "--local-db-dir pointing at a folder of its own",
        )
    pg = LocalPostgres(folder, port=options.local_port)
    pg.init()
    lock = DataLock(pg.data_dir)
    deadline = time.monotonic() + HOLDER_WAIT_S
    while not lock.acquire("up"):
        holder = lock.holder()
        if holder.get("command") == "up" or time.monotonic() > deadline:
            pid = holder.get("pid", "?")
            what = (
                f"already running (pid {pid})"
                if holder.get("command") == "up"
                else f"in use by waha-sync {holder.get('command', '?')} (pid {pid})"
            )
            raise ConfigError(
                f"local_db_dir: {what} (got {str(pg.data_dir)!r})",
                "stop that one first (Ctrl-C in its terminal), or give this one another "
                "--local-db-dir",
            )
        time.sleep(0.1)  # a short command (ls, check, ...) holds it: wait for it
    try:
        if running_port(pg.data_dir) is not None:
            log.info("stopping a PostgreSQL left running in %s by an earlier run", pg.data_dir)
            stop_running(pg.data_dir)
        pg.start()
        lock.note("up", port=pg.port, instance=settings.instance)
        log.info(
            "no database URL given: embedded PostgreSQL in %s (port %d, durable); "
            "ls, check, push, gc and restore without a URL use it; from elsewhere: "
            "--database-url '%s'",
            pg.data_dir,
            pg.port,
            socket_url(pg.data_dir, pg.port),
        )
        settings = settings.with_database(pg.url())
        return _restore_then_sync(settings)
    finally:
        pg.stop()  # after the sidecar's final flush: sidecar.run returns only then
        lock.release()


def _restore_then_sync(settings: Settings) -> int:
    log.info("sessions folder: %s", settings.sessions_dir)
    settings.sessions_dir.mkdir(parents=True, exist_ok=True)
    return restore.run(settings, restore.Options()) or sidecar.run(settings, sidecar.Options())


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
    media=True,  # folder stays None: up picks its folder first, then checks it (see run)
)

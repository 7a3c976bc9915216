"""``waha-sync up`` on a laptop, and how the other commands find its embedded database.

``up`` with no database URL starts an embedded PostgreSQL over a data folder
(``--local-db-dir``, default ``$XDG_STATE_HOME/waha-sync/postgres``; as root
``/var/lib/waha-sync/postgres``) with PostgreSQL's durable defaults, in a
session of its own (a terminal's Ctrl-C reaches only ``up``, which ships what
is pending, then stops the database). Its sessions folder defaults to
``sessions`` next to that data folder, outside any checkout.

``ls``, ``check``, ``push``, ``gc`` and ``restore`` given no URL use that same
data folder: the server ``up`` runs if it runs (found through PostgreSQL's own
``postmaster.pid``), else they start it for themselves and stop it again. One
owner at a time holds the folder (``waha-sync.lock``, an ``flock``): a second
``up`` says ``already running (pid N)`` and exits 2.
"""

from __future__ import annotations

import argparse
import logging
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from pydantic import SecretStr

from waha_sync.cli.commands import COMPONENT, require_folder, run_restore, run_sidecar
from waha_sync.common.config.settings import Settings
from waha_sync.common.errors import ConfigError, WahaSyncError

log = logging.getLogger("waha_sync.sync")
HOLDER_WAIT_S = 30.0  # how long a command waits for another short command's hold


def state_dir() -> Path:
    """``$XDG_STATE_HOME/waha-sync`` (``~/.local/state/waha-sync``), or ``/var/lib/waha-sync``
    as root."""
    if os.geteuid() == 0:
        return Path("/var/lib/waha-sync")
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "waha-sync"


def local_db_dir(settings: Settings) -> Path:
    """Where ``up`` keeps its embedded PostgreSQL: the setting, else the user's state folder."""
    if settings.local_db_dir is not None:
        return settings.local_db_dir.absolute()
    return state_dir() / "postgres"


def up_sessions_dir(settings: Settings) -> Path:
    """``up``'s sessions folder: the one given, else ``sessions`` beside the data folder."""
    if "sessions_dir" in settings.model_fields_set:
        return settings.sessions_dir.absolute()
    return local_db_dir(settings).parent / "sessions"


def _socket_url(folder: Path, port: int) -> str:
    """A URL without a password (the data folder's Unix socket, trusted locally)."""
    return f"postgresql://postgres@/postgres?host={folder}&port={port}"


@contextmanager
def embedded_database(settings: Settings, command: str) -> Iterator[str]:
    """The URL of ``up``'s embedded database, for ``command`` run without a URL.

    Uses the server that runs on the data folder, or starts it (durable) for
    the command's duration. Raises ``ConfigError`` (``database_url: not set``)
    when ``up`` never ran there, ``WahaSyncError`` when another command holds
    the folder longer than ``HOLDER_WAIT_S``.
    """
    folder = local_db_dir(settings)
    say = logging.getLogger(f"waha_sync.{COMPONENT[command]}")
    if not (folder / "PG_VERSION").is_file():
        try:
            settings.require_database_url()
        except ConfigError as exc:  # "not set": name the other way, too
            raise ConfigError(
                f"{exc.message} (and `waha-sync up` keeps no database in {str(folder)!r})",
                f"{exc.hint}; or run `waha-sync up` (same --local-db-dir) first",
            ) from None
    from waha_sync.common.local.postgres import DataLock, LocalPostgres, running_port

    lock = DataLock(folder)
    deadline = time.monotonic() + HOLDER_WAIT_S
    while not lock.acquire(command):
        holder = lock.holder()
        port = running_port(folder)
        if holder.get("command") == "up" and port is not None:
            say.info(
                "no database URL given: using the embedded PostgreSQL of `waha-sync up` "
                "(pid %s) in %s",
                holder.get("pid", "?"),
                folder,
            )
            yield _socket_url(folder, port)
            return
        if time.monotonic() > deadline:
            raise WahaSyncError(
                f"local_db_dir: in use by waha-sync {holder.get('command', '?')} "
                f"(pid {holder.get('pid', '?')}) (got {str(folder)!r})",
                "wait for it to finish, or give --database-url",
            )
        time.sleep(0.1)
    try:
        port = running_port(folder)
        if port is not None:  # left running by an owner that is gone: use it as it is
            yield _socket_url(folder, port)
            return
        pg = LocalPostgres(folder)
        pg.start()
        lock.note(command, port=pg.port)
        say.info(
            "no database URL given: started the embedded PostgreSQL of `waha-sync up` in %s "
            "for this command",
            folder,
        )
        try:
            yield _socket_url(folder, pg.port)
        finally:
            pg.stop()
    finally:
        lock.release()


def run_up(settings: Settings, args: argparse.Namespace) -> int:
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
    pg = LocalPostgres(folder, port=args.local_port)
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
        lock.note("up", port=pg.port)
        log.info(
            "no database URL given: embedded PostgreSQL in %s (port %d, durable); "
            "ls, check, push, gc and restore without a URL use it; from elsewhere: "
            "--database-url '%s'",
            pg.data_dir,
            pg.port,
            _socket_url(pg.data_dir, pg.port),
        )
        settings = settings.model_copy(update={"database_url": SecretStr(pg.url())})
        return _restore_then_sync(settings)
    finally:
        pg.stop()  # after the sidecar's final flush: run_sidecar returns only then
        lock.release()


def _restore_then_sync(settings: Settings) -> int:
    log.info("sessions folder: %s", settings.sessions_dir)
    settings.sessions_dir.mkdir(parents=True, exist_ok=True)
    plain = argparse.Namespace(at=None, read_only=False, force=False)
    return run_restore(settings, plain) or run_sidecar(settings, plain)

"""How the commands find ``waha-sync up``'s embedded database (``up`` itself: ``up.py``).

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

import logging
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from waha_sync.common.config.settings import Settings
from waha_sync.common.errors import ConfigError, RefusedError, WahaSyncError

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


def socket_url(folder: Path, port: int) -> str:
    """A URL without a password (the data folder's Unix socket, trusted locally)."""
    return f"postgresql://postgres@/postgres?host={folder}&port={port}"


@contextmanager
def embedded_database(
    settings: Settings, command: str, component: str, *, claims: str | None = None
) -> Iterator[str]:
    """The URL of ``up``'s embedded database, for ``command`` run without a URL (it logs
    as ``component``; ``claims``: the instance it will claim, if any).

    Uses the server that runs on the data folder, or starts it (durable) for
    the command's duration. Raises ``ConfigError`` (``database_url: not set``)
    when ``up`` never ran there, ``RefusedError`` when a running ``up`` syncs the
    instance ``claims`` names (claiming it would fence ``up``), ``WahaSyncError`` when
    another command holds the folder longer than ``HOLDER_WAIT_S``.
    """
    folder = local_db_dir(settings)
    say = logging.getLogger(f"waha_sync.{component}")
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
            if claims is not None and holder.get("instance") == claims:
                raise RefusedError(
                    f"instance: `waha-sync up` (pid {holder.get('pid', '?')}) is syncing it; "
                    f"claiming it here would stop that sync (got {claims!r})",
                    f"waha-sync {command} --read-only --sessions-dir ./copy to look at the "
                    "stored tree, or stop `up` first (Ctrl-C in its terminal)",
                )
            say.info(
                "no database URL given: using the embedded PostgreSQL of `waha-sync up` "
                "(pid %s) in %s",
                holder.get("pid", "?"),
                folder,
            )
            yield socket_url(folder, port)
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
            yield socket_url(folder, port)
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
            yield socket_url(folder, pg.port)
        finally:
            pg.stop()
    finally:
        lock.release()

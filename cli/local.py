"""``waha-sync up``: everything on a laptop, on an embedded PostgreSQL if no URL is given."""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path

from pydantic import SecretStr

from waha_sync.commands import run_restore, run_sidecar
from waha_sync.common.config import Settings
from waha_sync.common.pgurl import parse_url


def local_db_dir(settings: Settings) -> Path:
    """Where ``up`` keeps its embedded PostgreSQL: the setting, else the user's state folder."""
    if settings.local_db_dir is not None:
        return settings.local_db_dir
    if os.geteuid() == 0:
        return Path("/var/lib/waha-sync/postgres")
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "waha-sync" / "postgres"


def run_up(settings: Settings, args: argparse.Namespace) -> int:
    """Restore, then the sidecar until Ctrl-C; with no database URL, on an embedded PostgreSQL."""
    from waha_sync.common.localpg import LocalPostgres

    log = logging.getLogger("waha_sync.sync")
    local = None
    if settings.database_url is None:
        local = LocalPostgres(local_db_dir(settings), port=args.local_port)
        local.start()
        log.info(
            "no database URL given: embedded PostgreSQL in %s at %s",
            local.data_dir,
            parse_url(local.url()).redacted(),
        )
        settings = settings.model_copy(update={"database_url": SecretStr(local.url())})
    try:
        settings.sessions_dir.mkdir(parents=True, exist_ok=True)
        plain = argparse.Namespace(at=None, read_only=False, force=False)
        return run_restore(settings, plain) or run_sidecar(settings, plain)
    finally:
        if local is not None:
            local.stop()

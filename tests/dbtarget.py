"""One fresh database for one test or benchmark, and how to reach it (no pytest needed).

The benchmarks in ``bench/`` use it too, so it must not import pytest or the tests' conftest.
"""

from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass(frozen=True)
class DbTarget:
    """One fresh database for one test, and how to reach it."""

    url: str
    mode: str
    chaos_rate: float

    def cli(self, *args: str) -> int:
        """Run the waha-sync command in this process against this database."""
        from waha_sync.cli.main import main

        saved = {k: os.environ.pop(k) for k in list(os.environ) if k.startswith("WAHA_SYNC_")}
        os.environ["WAHA_SYNC_DATABASE_URL"] = self.url
        os.environ["WAHA_SYNC_CHAOS_40001_RATE"] = str(self.chaos_rate)
        try:
            return main(list(args))
        finally:
            del os.environ["WAHA_SYNC_DATABASE_URL"], os.environ["WAHA_SYNC_CHAOS_40001_RATE"]
            os.environ.update(saved)

    def sql(self, statement: str, **params: object) -> list[list[object]]:
        """Run one statement directly (autocommit), bypassing waha-sync."""
        from waha_sync.common.db.connect import open_connection
        from waha_sync.common.db.url import parse_url

        conn = open_connection(parse_url(self.url))
        try:
            return conn.run(statement, **params) or []
        finally:
            conn.close()

    def env(self, **extra: str) -> dict[str, str]:
        """Environment for a waha-sync subprocess pointed at this database."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("WAHA_SYNC_")}
        env.pop("DATABASE_URL", None)
        env.pop("WHATSAPP_SESSIONS_POSTGRESQL_URL", None)
        for alias in ("WAHA_API_KEY", "WHATSAPP_API_KEY", "WAHA_DASHBOARD_USERNAME"):
            env.pop(alias, None)
        env.pop("WAHA_DASHBOARD_PASSWORD", None)
        env.update(WAHA_SYNC_DATABASE_URL=self.url, WAHA_SYNC_CHAOS_40001_RATE=str(self.chaos_rate))
        env.update(extra)
        return env

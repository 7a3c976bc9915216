"""Database targets: the test server (``Server``) and one fresh database on it (``DbTarget``).

``CHAOS_RATE`` is the fraction of statements that get SQLSTATE 40001 injected in the
``crdb-like`` mode. The benchmarks in ``bench/`` use this module too, so it must not import
pytest or the tests' conftest (the fixtures that make these live in ``tests/conftest.py``).
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

import pg8000.native

from waha_sync.common.local.postgres import LocalPostgres

CHAOS_RATE = 0.10


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


def backdate(db: DbTarget, cid: int, age_hours: float) -> int:
    """Date commit ``cid`` ``age_hours`` back, as if it had been made then."""
    sql = "UPDATE waha_sync_commits SET created_at = now() - CAST(:a AS INTERVAL) WHERE id = :c"
    db.sql(sql, a=f"{age_hours} hours", c=cid)
    return cid


def _with_db(url: str, database: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{database}"))


class Server:
    """Admin access to the test server: create databases, run SQL."""

    def __init__(self, url: str, local: LocalPostgres | None) -> None:
        self.url = url
        self.local = local

    def admin(self, database: str | None = None) -> pg8000.native.Connection:
        from waha_sync.common.db.connect import open_connection
        from waha_sync.common.db.url import parse_url

        url = _with_db(self.url, database) if database else self.url
        return open_connection(parse_url(url))

    def create_database(self, serializable: bool) -> str:
        name = f"t_{secrets.token_hex(6)}"
        conn = self.admin()
        try:
            conn.run(f"CREATE DATABASE {name}")
            if serializable:
                conn.run(
                    f"ALTER DATABASE {name} SET default_transaction_isolation TO 'serializable'"
                )
        finally:
            conn.close()
        return _with_db(self.url, name)

"""Database access: one connection, and a transaction helper that retries.

CockroachDB may abort any transaction with SQLSTATE 40001 and expects the
client to run the whole transaction again; PostgreSQL at SERIALIZABLE does
the same. ``Database.transaction`` reruns the function it is given on 40001
(bounded exponential backoff with full jitter) and, for idempotent work, on
a dropped connection too. Every write path in waha-sync goes through it.
"""

from __future__ import annotations

import contextlib
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import pg8000.exceptions
import pg8000.native

from waha_sync.common.db.connect import connection_uses_tls, open_connection
from waha_sync.common.db.url import ConnParams
from waha_sync.common.errors import DatabaseUnavailable
from waha_sync.common.words import plural

T = TypeVar("T")

RETRYABLE = {"40001", "40P01"}  # serialization failure, deadlock
_INJECT = "DO $$BEGIN RAISE EXCEPTION 'waha-sync chaos' USING ERRCODE = '40001'; END$$"


def sqlstate(exc: BaseException) -> str | None:
    """The SQLSTATE of a pg8000 database error, if it has one."""
    if isinstance(exc, pg8000.exceptions.DatabaseError) and exc.args:
        info = exc.args[0]
        if isinstance(info, dict):
            code = info.get("C")
            return str(code) if code else None
    return None


def server_kind(version: str) -> str:
    """``cockroachdb`` or ``postgresql``, from what ``SELECT version()`` returned."""
    return "cockroachdb" if version.lstrip().lower().startswith("cockroachdb") else "postgresql"


def is_connection_error(exc: BaseException) -> bool:
    """True when the connection itself broke (network, server shutdown)."""
    if isinstance(exc, pg8000.exceptions.InterfaceError | OSError | DatabaseUnavailable):
        return True
    code = sqlstate(exc)
    return code is not None and (code.startswith("08") or code in {"57P01", "57P02", "57P03"})


@dataclass
class RetryPolicy:
    """Bounded exponential backoff with full jitter."""

    attempts: int = 12
    base_seconds: float = 0.01
    cap_seconds: float = 1.0

    def delay(self, attempt: int) -> float:
        return random.uniform(0, min(self.cap_seconds, self.base_seconds * 2**attempt))  # noqa: S311


class Tx:
    """One open transaction; ``run`` executes a statement with named parameters."""

    def __init__(self, conn: pg8000.native.Connection, chaos_rate: float) -> None:
        self._conn = conn
        self._chaos = chaos_rate

    def run(self, sql: str, **params: Any) -> list[list[Any]]:
        if self._chaos and random.random() < self._chaos:  # noqa: S311
            self._conn.run(_INJECT)
        rows = self._conn.run(sql, **params)
        return rows if rows is not None else []


class Database:
    """A lazily (re)connected session with a PostgreSQL or CockroachDB server."""

    def __init__(
        self,
        params: ConnParams,
        *,
        chaos_40001_rate: float = 0.0,
        retry: RetryPolicy | None = None,
        component: str = "sync",
        io_timeout: float | None = 60.0,
    ) -> None:
        self.params = params
        self.io_timeout = io_timeout  # per socket read or write; None waits forever
        self.log = logging.getLogger(f"waha_sync.{component}")  # the caller's log prefix
        self.chaos_rate = chaos_40001_rate
        self.retry = retry or RetryPolicy()
        self._conn: pg8000.native.Connection | None = None
        self.kind = "unknown"
        self.version = ""
        self.tls = False
        self.retries = 0  # transactions rerun so far, for status and tests

    def connect(self) -> pg8000.native.Connection:
        """The open connection, connecting (and detecting the server) if needed."""
        if self._conn is None:
            conn = open_connection(self.params, io_timeout=self.io_timeout)
            try:
                version = str(conn.run("SELECT version()")[0][0])
            except pg8000.exceptions.Error as exc:
                conn.close()
                raise DatabaseUnavailable(f"database: cannot query the server ({exc})") from exc
            self.version = version
            self.kind = server_kind(version)
            self.tls = connection_uses_tls(conn)
            self._conn = conn
        return self._conn

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(pg8000.exceptions.Error, OSError):
                conn.close()

    def wait_until_ready(self, timeout: float) -> None:
        """Connect, retrying for up to ``timeout`` seconds, one log line per attempt."""
        deadline = time.monotonic() + timeout
        attempt = 0
        while True:
            attempt += 1
            try:
                self.connect()
                return
            except DatabaseUnavailable as exc:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise DatabaseUnavailable(
                        f"{exc.message} (gave up after {plural(attempt, 'attempt')} "
                        f"in {timeout:g}s)",
                        "check the URL and that the database is up; raise --wait-seconds",
                    ) from exc
                self.log.info("waiting for the database (attempt %d): %s", attempt, exc.message)
                time.sleep(min(1.0 + 0.5 * attempt, 5.0, left))

    def transaction(self, fn: Callable[[Tx], T], *, idempotent: bool = True) -> T:
        """Run ``fn`` in one transaction, rerunning it on 40001 and (if idempotent) disconnects.

        ``fn`` must be safe to call again from the start. Raises the last
        database error once the retry budget is spent, ``DatabaseUnavailable``
        when the connection cannot be re-established.
        """
        attempt = 0
        while True:
            conn = self.connect()
            committing = False
            try:
                conn.run("BEGIN")
                result = fn(Tx(conn, self.chaos_rate))
                committing = True
                Tx(conn, self.chaos_rate).run("COMMIT")
                return result
            except Exception as exc:
                code = sqlstate(exc)
                broken = is_connection_error(exc)
                if broken:
                    self.close()
                else:
                    self._rollback(conn)
                retry_ok = code in RETRYABLE or (broken and (idempotent or not committing))
                if not retry_ok or attempt + 1 >= self.retry.attempts:
                    if broken and not isinstance(exc, DatabaseUnavailable):
                        raise DatabaseUnavailable(f"database: connection lost ({exc})") from exc
                    raise
                attempt += 1
                self.retries += 1
                self.log.debug("retrying transaction (attempt %d, sqlstate %s)", attempt + 1, code)
                time.sleep(self.retry.delay(attempt))

    def _rollback(self, conn: pg8000.native.Connection) -> None:
        try:
            conn.run("ROLLBACK")
        except (pg8000.exceptions.Error, OSError):
            self.close()

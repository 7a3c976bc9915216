"""Database access: one connection, and a transaction helper that retries.

CockroachDB may abort any transaction with SQLSTATE 40001 and expects the
client to run the whole transaction again; PostgreSQL at SERIALIZABLE does
the same. ``Database.transaction`` reruns the function it is given on 40001
(``TRANSACTION_RETRY``) and, for idempotent work, on a dropped connection too.
Every write path in waha-sync goes through it. Statements take named
parameters (``:instance``; the names are listed in ``waha_sync.common.store.sql``)
and ``Tx`` reads result rows by column name (``Tx.records``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import logging
import random
import time
from collections.abc import Callable
from typing import Any, TypeVar, cast

import pg8000.exceptions
import pg8000.native

from waha_sync.common.db.connect import connection_uses_tls, open_connection
from waha_sync.common.db.retry import RetryPolicy
from waha_sync.common.db.sqlstate import RETRYABLE, sqlstate
from waha_sync.common.db.url import ConnParams
from waha_sync.common.errors import DatabaseUnavailable
from waha_sync.common.words import plural

__all__ = [
    "CONNECT_RETRY",
    "TRANSACTION_RETRY",
    "Database",
    "Tx",
    "is_connection_error",
    "server_kind",
]

T = TypeVar("T")
R = TypeVar("R")

# A transaction rerun on 40001 or a dropped connection: 12 tries, waits up to 20 ms, 40 ms, ...
# capped at 1 s (6.3 s of waiting at most).
TRANSACTION_RETRY = RetryPolicy(attempts=12, base_seconds=0.02, cap_seconds=1.0)
# Waiting for the database at start (``wait_until_ready``): until the caller's timeout,
# waits up to 1.5 s, 3 s, then 5 s each, one log line per try.
CONNECT_RETRY = RetryPolicy(attempts=None, base_seconds=1.5, cap_seconds=5.0)
_INJECT = "DO $$BEGIN RAISE EXCEPTION 'waha-sync chaos' USING ERRCODE = '40001'; END$$"


def server_kind(version: str) -> str:
    """``cockroachdb`` or ``postgresql``, from what ``SELECT version()`` returned."""
    return "cockroachdb" if version.lstrip().lower().startswith("cockroachdb") else "postgresql"


def is_connection_error(exc: BaseException) -> bool:
    """True when the connection itself broke (network, server shutdown)."""
    if isinstance(exc, pg8000.exceptions.InterfaceError | OSError | DatabaseUnavailable):
        return True
    code = sqlstate(exc)
    return code is not None and (code.startswith("08") or code in {"57P01", "57P02", "57P03"})


# (statement, column names) pairs whose names were checked once (Tx.named).
_NAMES_CHECKED: set[tuple[str, tuple[str, ...]]] = set()


@functools.cache
def _reader(make: Callable[..., R]) -> tuple[tuple[str, ...], Callable[[list[Any]], R]]:
    """(field names in order, row -> record) for a NamedTuple or dataclass ``make``.

    A NamedTuple is made from a row by ``tuple.__new__`` (C, no Python call per row).
    """
    named = getattr(make, "_fields", None)
    if named is not None and isinstance(make, type) and issubclass(make, tuple):
        return tuple(named), cast(Callable[[list[Any]], R], functools.partial(tuple.__new__, make))
    names = tuple(f.name for f in dataclasses.fields(make))  # type: ignore[arg-type]
    return names, lambda row: make(*row)


class Tx:
    """One open transaction; every method runs one statement with named parameters
    (``tx.run("... WHERE instance = :instance", instance=name)``)."""

    def __init__(self, conn: pg8000.native.Connection, chaos_rate: float) -> None:
        self._conn = conn
        self._chaos = chaos_rate

    def run(self, sql: str, /, **params: Any) -> list[list[Any]]:
        """The result rows, each a list of column values in select-list order."""
        if self._chaos and random.random() < self._chaos:  # noqa: S311
            self._conn.run(_INJECT)
        rows = self._conn.run(sql, **params)
        return rows if rows is not None else []

    def columns(self) -> tuple[str, ...]:
        """The column names of the last statement's result (empty if it returned none)."""
        return tuple(c["name"] for c in self._conn.columns or ())

    def records(self, sql: str, make: Callable[..., R], /, **params: Any) -> list[R]:
        """The result rows as ``make`` records (a NamedTuple or dataclass) read by name: the
        statement's column names must be ``make``'s field names, in order (checked the first
        time a statement returns rows, so it costs nothing per row). Raises ``TypeError`` if
        they differ.
        """
        fields, read = _reader(make)
        return list(map(read, self.named(sql, fields, **params)))

    def named(self, sql: str, names: tuple[str, ...], /, **params: Any) -> list[list[Any]]:
        """The result rows as ``run`` returns them, the statement's column names checked to be
        ``names`` (in order; the first time it returns rows): for hot paths that unpack each
        row into variables of those names. Raises ``TypeError`` if they differ."""
        rows = self.run(sql, **params)
        if rows and (sql, names) not in _NAMES_CHECKED:
            if (found := self.columns()) != names:
                statement = " ".join(sql.split())[:60]
                raise TypeError(f"expected the columns {names}, got {found} from: {statement}")
            _NAMES_CHECKED.add((sql, names))  # a statement's columns never change
        return rows

    def value(self, sql: str, /, **params: Any) -> Any:
        """The one value a one-column statement returned (its first row's); None if no row."""
        rows = self.run(sql, **params)
        return rows[0][0] if rows else None

    def values(self, sql: str, /, **params: Any) -> list[Any]:
        """The value of every row of a one-column statement, in order."""
        return [value for (value,) in self.run(sql, **params)]


class Database:
    """A lazily (re)connected session with a PostgreSQL or CockroachDB server."""

    def __init__(
        self,
        params: ConnParams,
        *,
        chaos_40001_rate: float = 0.0,
        retry: RetryPolicy = TRANSACTION_RETRY,
        component: str = "sync",
        io_timeout: float | None = 60.0,
    ) -> None:
        self.params = params
        self.io_timeout = io_timeout  # per socket read or write; None waits forever
        self.log = logging.getLogger(f"waha_sync.{component}")  # the caller's log prefix
        self.chaos_rate = chaos_40001_rate
        self.retry = retry
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

    def wait_until_ready(self, timeout: float, retry: RetryPolicy = CONNECT_RETRY) -> None:
        """Connect, retrying (``retry``) for up to ``timeout`` seconds, one log line per try.

        Raises ``DatabaseUnavailable`` naming the tries once the time is up.
        """
        deadline = time.monotonic() + timeout
        tries = 0
        while True:
            tries += 1
            try:
                self.connect()
                return
            except DatabaseUnavailable as exc:
                left = deadline - time.monotonic()
                if left <= 0 or not retry.may_retry(tries):
                    raise DatabaseUnavailable(
                        f"{exc.message} (gave up after {plural(tries, 'attempt')} in {timeout:g}s)",
                        "check the URL and that the database is up; raise --wait-seconds",
                    ) from exc
                self.log.info("waiting for the database (attempt %d): %s", tries, exc.message)
                time.sleep(min(retry.delay_seconds(tries), left))

    def transaction(self, fn: Callable[[Tx], T], *, idempotent: bool = True) -> T:
        """Run ``fn`` in one transaction, rerunning it on 40001 and (if idempotent) disconnects.

        ``fn`` must be safe to call again from the start. Raises the last
        database error once the retry budget is spent, ``DatabaseUnavailable``
        when the connection cannot be re-established.
        """
        tries = 0
        while True:
            tries += 1
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
                if not retry_ok or not self.retry.may_retry(tries):
                    if broken and not isinstance(exc, DatabaseUnavailable):
                        raise DatabaseUnavailable(f"database: connection lost ({exc})") from exc
                    raise
                self.retries += 1
                self.log.debug("retrying transaction (attempt %d, sqlstate %s)", tries + 1, code)
                time.sleep(self.retry.delay_seconds(tries))

    def _rollback(self, conn: pg8000.native.Connection) -> None:
        try:
            conn.run("ROLLBACK")
        except (pg8000.exceptions.Error, OSError):
            self.close()

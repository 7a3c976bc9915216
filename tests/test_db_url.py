"""Table-driven tests for the libpq URL parser and the password redaction."""

from __future__ import annotations

from typing import Any

import pytest

from waha_sync.common.db.url import SSLMODES, ConnParams, parse_url, redact_url
from waha_sync.common.errors import ConfigError

SECRET = "s3cr3t-Pa55"

DEFAULTS: dict[str, Any] = {
    "user": "alice",
    "host": "db.example.com",
    "port": 5432,
    "database": "alice",
    "unix_socket": None,
    "sslmode": "prefer",
    "sslrootcert": None,
    "sslcert": None,
    "sslkey": None,
    "connect_timeout": None,
    "application_name": None,
    "options": None,
}

GOOD: list[tuple[str, dict[str, Any]]] = [
    ("postgresql://alice@db.example.com", {}),
    ("postgres://alice@db.example.com", {}),
    ("POSTGRESQL://alice@db.example.com", {}),
    ("postgresql://alice@db.example.com:6543/app", {"port": 6543, "database": "app"}),
    ("postgresql://alice@db.example.com:/app", {"database": "app"}),
    ("postgresql://alice@db.example.com/", {}),
    ("postgresql://al%40ice@db.example.com/my%20db", {"user": "al@ice", "database": "my db"}),
    ("postgresql://alice@[::1]:5433/app", {"host": "::1", "port": 5433, "database": "app"}),
    ("postgresql://alice@[2001:db8::7]/app", {"host": "2001:db8::7", "database": "app"}),
    (
        "postgresql://postgres@/postgres?host=/tmp/pgdir",
        {
            "user": "postgres",
            "database": "postgres",
            "host": None,
            "unix_socket": "/tmp/pgdir/.s.PGSQL.5432",
        },
    ),
    (
        "postgresql://postgres@/postgres?host=/tmp/pgdir/&port=6000",
        {
            "user": "postgres",
            "database": "postgres",
            "host": None,
            "port": 6000,
            "unix_socket": "/tmp/pgdir/.s.PGSQL.6000",
        },
    ),
    (
        "postgresql://postgres@%2Fvar%2Frun%2Fpostgresql/app",
        {
            "user": "postgres",
            "database": "app",
            "host": None,
            "unix_socket": "/var/run/postgresql/.s.PGSQL.5432",
        },
    ),
    ("postgresql://alice@ignored?host=db.example.com", {}),
    ("postgresql://db.example.com?user=alice&dbname=app", {"database": "app"}),
    ("postgresql://db.example.com/app?user=alice&port=7000", {"database": "app", "port": 7000}),
    ("postgresql://alice@db.example.com?dbname=other%2Fdb", {"database": "other/db"}),
    *[(f"postgresql://alice@db.example.com?sslmode={m}", {"sslmode": m}) for m in SSLMODES],
    (
        "postgresql://alice@db.example.com?sslmode=verify-full&sslrootcert=/etc/ca.pem"
        "&sslcert=/c/client.crt&sslkey=/c/client.key",
        {
            "sslmode": "verify-full",
            "sslrootcert": "/etc/ca.pem",
            "sslcert": "/c/client.crt",
            "sslkey": "/c/client.key",
        },
    ),
    ("postgresql://alice@db.example.com?connect_timeout=10", {"connect_timeout": 10.0}),
    ("postgresql://alice@db.example.com?connect_timeout=1", {"connect_timeout": 2.0}),
    ("postgresql://alice@db.example.com?connect_timeout=0.5", {"connect_timeout": 2.0}),
    ("postgresql://alice@db.example.com?connect_timeout=2.5", {"connect_timeout": 2.5}),
    ("postgresql://alice@db.example.com?connect_timeout=0", {"connect_timeout": None}),
    (
        "postgresql://alice@db.example.com?application_name=waha%20sync",
        {"application_name": "waha sync"},
    ),
    (
        "postgresql://alice@db.example.com?options=--cluster%3Dmy-cluster-123",
        {"options": "--cluster=my-cluster-123"},
    ),
    (
        "postgresql://alice@db.example.com?options=-c%20statement_timeout%3D5s",
        {"options": "-c statement_timeout=5s"},
    ),
]


@pytest.mark.parametrize(("url", "changes"), GOOD)
def test_parse_good(url: str, changes: dict[str, Any]) -> None:
    p = parse_url(url)
    assert {k: getattr(p, k) for k in DEFAULTS} == {**DEFAULTS, **changes}
    assert p.password is None


@pytest.mark.parametrize(
    ("url", "password"),
    [
        (f"postgresql://alice:{SECRET}@db.example.com/app", SECRET),
        ("postgresql://alice:p%40ss%2Fw%3Ard@db.example.com/app", "p@ss/w:rd"),
        ("postgresql://alice:p@ss@db.example.com/app", "p@ss"),
        ("postgresql://alice:p/ss@db.example.com/app", "p/ss"),
        (f"postgresql://alice@db.example.com/app?password={SECRET}", SECRET),
        ("postgresql://alice:@db.example.com/app", None),
    ],
)
def test_password(url: str, password: str | None) -> None:
    p = parse_url(url)
    assert (p.user, p.host, p.database) == ("alice", "db.example.com", "app")
    got = p.password.get_secret_value() if p.password is not None else None
    assert got == password
    if password:
        assert password not in repr(p)
        assert password not in p.redacted()
        assert "***" in p.redacted()


BAD: list[tuple[str, str]] = [
    (f"mysql://alice:{SECRET}@db.example.com/app", "must start with postgresql://"),
    (f"alice:{SECRET}@db.example.com", "must start with postgresql://"),
    ("", "must start with postgresql://"),
    (f"postgresql://alice:{SECRET}@db.example.com:abc/app", "port must be a number"),
    (f"postgresql://alice:{SECRET}@db.example.com:0/app", "port must be a number"),
    (f"postgresql://alice:{SECRET}@db.example.com:70000/app", "port must be a number"),
    (f"postgresql://alice:{SECRET}@db.example.com/app?port=x", "port must be a number"),
    (
        f"postgresql://alice:{SECRET}@db.example.com/app?sslmod=require",
        "unknown parameter 'sslmod'",
    ),
    (f"postgresql://alice:{SECRET}@db.example.com/app?sslmode", "parameter 'sslmode' has no value"),
    (
        f"postgresql://alice:{SECRET}@db.example.com/app?sslmode=verify",
        "sslmode must be one of disable, allow, prefer, require, verify-ca, verify-full "
        "(got 'verify')",
    ),
    (f"postgresql://alice:{SECRET}@db.example.com/?connect_timeout=abc", "connect_timeout"),
    (f"postgresql://alice:{SECRET}@db.example.com/?connect_timeout=-1", "connect_timeout"),
    (f"postgresql://alice:{SECRET}@db.example.com/?connect_timeout=inf", "connect_timeout"),
    (f"postgresql://alice:{SECRET}@/app", "no host"),
    (f"postgresql://alice:{SECRET}@:5432/app", "no host"),
    (f"postgresql://:{SECRET}@db.example.com/app", "no user name"),
    (f"postgresql://alice:{SECRET}@[::1/app", "closing ']'"),
    (f"postgresql://alice:{SECRET}@[::1]x/app", "after IPv6 host"),
    (f"postgresql://alice:{SECRET}@h1,h2/app", "several hosts"),
    (f"postgresql://alice:{SECRET}@db.example.com/%ff", "not valid percent-encoded UTF-8"),
    # An unencoded '?' in the password: the parser must not echo any part of it.
    ("postgresql://alice:abc?def@db.example.com:x/app", "parameter"),
    ("postgresql://alice:ab?port=1@db.example.com/app", "port must be a number"),
]


@pytest.mark.parametrize(("url", "expected"), BAD)
def test_parse_bad(url: str, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_url(url)
    err = info.value
    assert err.message.startswith("database_url: ")
    assert expected in err.message
    assert err.hint
    assert err.render().count("Try: ") == 1
    for secret in (SECRET, "abc?def", "def", "ab?port=1", "1@", "'ab'"):
        assert secret not in err.render()


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (
            f"postgresql://alice:{SECRET}@db.example.com:6543/app?sslmode=require",
            "postgresql://alice:***@db.example.com:6543/app?sslmode=require",
        ),
        ("postgresql://alice@db.example.com/app", "postgresql://alice@db.example.com:5432/app"),
        (
            f"postgresql://alice@[::1]/app?password={SECRET}&options=--cluster%3Dc1",
            "postgresql://alice:***@[::1]:5432/app?options=--cluster%3Dc1",
        ),
        (
            "postgresql://postgres@/postgres?host=/tmp/pgdir&connect_timeout=5",
            "postgresql://postgres@/postgres?host=/tmp/pgdir&port=5432&connect_timeout=5",
        ),
    ],
)
def test_redacted(url: str, expected: str) -> None:
    p = parse_url(url)
    assert p.redacted() == expected
    again = parse_url(p.redacted())
    assert (again.user, again.host, again.port, again.database) == (
        p.user,
        p.host,
        p.port,
        p.database,
    )
    assert (again.unix_socket, again.options, again.sslmode) == (
        p.unix_socket,
        p.options,
        p.sslmode,
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            f"postgresql://alice:{SECRET}@db.example.com/app",
            "postgresql://alice:***@db.example.com/app",
        ),
        (
            f"postgres://alice:{SECRET}@db.example.com:5432/app?sslmode=require",
            "postgres://alice:***@db.example.com:5432/app?sslmode=require",
        ),
        (
            f"failed: postgresql://alice:{SECRET}@h/db (timeout)",
            "failed: postgresql://alice:***@h/db (timeout)",
        ),
        (
            f"postgresql://alice@h/db?sslmode=require&password={SECRET}&x=1",
            "postgresql://alice@h/db?sslmode=require&password=***&x=1",
        ),
        (f"host=h password={SECRET} dbname=x", "host=h password=*** dbname=x"),
        (f"host=h PASSWORD='{SECRET}' dbname=x", "host=h PASSWORD=*** dbname=x"),
        ("postgresql://alice:p@ss@h/db", "postgresql://alice:***@h/db"),
        ("postgresql://alice:pa?ss@h/db", "postgresql://alice:***@h/db"),
        ("postgresql://alice@h/db", "postgresql://alice@h/db"),
        ("no url here", "no url here"),
        ("", ""),
        ("://:@", "://:@"),
    ],
)
def test_redact_url(text: str, expected: str) -> None:
    assert redact_url(text) == expected


@pytest.mark.parametrize(
    "junk", ["postgresql://", "x://a:b", "\x00://:@/?", "a" * 10000, "ø://ø:ø@ø"]
)
def test_redact_url_never_raises(junk: str) -> None:
    assert isinstance(redact_url(junk), str)


def test_repr_hides_password() -> None:
    p = parse_url(f"postgresql://alice:{SECRET}@db.example.com/app")
    assert isinstance(p, ConnParams)
    assert SECRET not in repr(p)
    assert SECRET not in str(p)
    assert p.password is not None
    assert p.password.get_secret_value() == SECRET


def test_params_are_frozen() -> None:
    p = parse_url("postgresql://alice@db.example.com/app")
    with pytest.raises(AttributeError):
        p.port = 1  # type: ignore[misc]

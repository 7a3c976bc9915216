"""Open pg8000 connections from ``ConnParams`` with libpq's ``sslmode`` meanings.

The socket is created here (so ``connect_timeout`` covers the TCP connect, the
TLS handshake and authentication, and TCP keepalive is set), then handed to
pg8000. Every failure becomes one ``DatabaseUnavailable`` naming the server
address and the cause, never the password; the original exception is kept as
``__cause__``.
"""

from __future__ import annotations

import socket
import ssl

import pg8000.native
from pg8000.exceptions import DatabaseError, InterfaceError

from waha_sync.common.db.sqlstate import sqlstate
from waha_sync.common.db.url import ConnParams
from waha_sync.common.errors import DatabaseUnavailable

DEFAULT_CONNECT_TIMEOUT = 10.0
# SQLSTATE 28000: pg_hba.conf has no matching line (e.g. it demands hostssl).
HBA_REJECTED = "28000"
BAD_PASSWORD = "28P01"  # noqa: S105 - a SQLSTATE, not a password
_HOSTNAME_MISMATCH_CODES = (62, 64)  # X509_V_ERR_HOSTNAME_MISMATCH, _IP_ADDRESS_MISMATCH

# What to hand pg8000 as ssl_context: False = plain, an SSLContext = TLS required.
SslChoice = ssl.SSLContext | bool


def _where(p: ConnParams) -> str:
    if p.unix_socket is not None:
        return p.unix_socket
    host = p.host or ""
    return f"[{host}]:{p.port}" if ":" in host else f"{host}:{p.port}"


def _tls_context(p: ConnParams, *, verify: bool) -> ssl.SSLContext:
    """A client context; ``verify`` checks the chain (and the host for verify-full)."""
    if verify:
        cafile = None if p.sslrootcert in (None, "system") else p.sslrootcert
        try:
            ctx = ssl.create_default_context(cafile=cafile)
        except (OSError, ssl.SSLError) as exc:
            raise DatabaseUnavailable(
                f"database at {_where(p)}: cannot load sslrootcert {p.sslrootcert!r}: {exc}",
                "point sslrootcert at a readable PEM file with the server's CA certificate",
            ) from exc
        ctx.check_hostname = p.sslmode == "verify-full"
    else:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    if p.sslcert is not None:
        try:
            ctx.load_cert_chain(p.sslcert, p.sslkey)
        except (OSError, ssl.SSLError) as exc:
            raise DatabaseUnavailable(
                f"database at {_where(p)}: cannot load sslcert/sslkey {p.sslcert!r}: {exc}",
                "check the client certificate and key paths and permissions",
            ) from exc
    return ctx


def _make_socket(p: ConnParams, timeout: float) -> socket.socket:
    if p.unix_socket is not None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        try:
            sock.connect(p.unix_socket)
        except OSError:
            sock.close()
            raise
        return sock
    sock = socket.create_connection((p.host, p.port), timeout=timeout)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    # As libpq does: without it, multi-packet queries wait on delayed ACKs.
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    for name, value in (("TCP_KEEPIDLE", 30), ("TCP_KEEPINTVL", 10), ("TCP_KEEPCNT", 3)):
        if hasattr(socket, name):
            sock.setsockopt(socket.IPPROTO_TCP, getattr(socket, name), value)
    return sock


def _attempt(
    p: ConnParams, ssl_choice: SslChoice, timeout: float, io_timeout: float | None
) -> pg8000.native.Connection:
    sock = _make_socket(p, timeout)
    options = {"options": p.options} if p.options else None
    try:
        conn = pg8000.native.Connection(
            user=p.user,
            password=p.password.get_secret_value() if p.password is not None else None,
            database=p.database,
            host=p.host,
            port=p.port,
            sock=sock,
            ssl_context=ssl_choice,
            application_name=p.application_name,
            startup_params=options,
        )
    except BaseException:
        sock.close()
        raise
    conn._usock.settimeout(io_timeout)
    return conn


def _explain(p: ConnParams, exc: BaseException, timeout: float) -> tuple[str, str | None]:
    """(cause, hint) for a failed attempt, free of passwords and tracebacks."""
    root = exc.__cause__ if isinstance(exc, InterfaceError) and exc.__cause__ else exc
    if isinstance(root, ssl.SSLCertVerificationError):
        detail = (root.verify_message or "certificate verify failed").rstrip(".")
        if root.verify_code in _HOSTNAME_MISMATCH_CODES:
            return (
                f"TLS verification failed: host name mismatch ({detail})",
                "connect with a host name listed in the server certificate, "
                "or use sslmode=verify-ca",
            )
        return (
            f"TLS verification failed: certificate verify failed ({detail})",
            "set sslrootcert=/path/to/ca.crt to the CA that signed the server certificate",
        )
    if isinstance(root, ssl.SSLError):
        return f"TLS handshake failed: {root.reason or root}", None
    if isinstance(root, ConnectionRefusedError):
        return "connection refused", "check that PostgreSQL is running and listening there"
    if isinstance(root, TimeoutError):
        return f"timed out after {timeout:g}s", "check the host, port and firewall"
    if isinstance(root, socket.gaierror):
        return f"host name not found ({root.strerror})", "check the host in database_url"
    if isinstance(root, FileNotFoundError):
        return "no server socket there", "check the host= directory and port"
    if isinstance(root, OSError):
        return root.strerror or type(root).__name__, None
    if isinstance(root, DatabaseError) and root.args and isinstance(root.args[0], dict):
        fields = root.args[0]
        message, code = str(fields.get("M", "error")), sqlstate(root)
        if code == BAD_PASSWORD:
            return (
                f"authentication failed: {message}",
                "check the user name and password in database_url",
            )
        if code == HBA_REJECTED and "no encryption" in message:
            return f"server requires TLS: {message}", "use sslmode=require or stronger"
        return f"{message} (SQLSTATE {code})", None
    text = str(root)
    if "refuses SSL" in text:
        return (
            f"server refuses TLS (sslmode={p.sslmode})",
            "enable ssl on the server, or use sslmode=prefer if plain text is acceptable",
        )
    if text == "network error":
        return "the server closed the connection during the handshake", None
    return f"{type(root).__name__}: {text}", None


def _worth_retrying(exc: BaseException, choice: SslChoice) -> bool:
    """Whether the other half of ``allow``/``prefer`` might succeed after ``exc``."""
    if sqlstate(exc) == HBA_REJECTED:
        return True
    tls_failed = isinstance(exc, ssl.SSLError) or "refuses SSL" in str(exc)
    return tls_failed and choice is not False


def open_connection(p: ConnParams, *, io_timeout: float | None = 60.0) -> pg8000.native.Connection:
    """Connect as libpq would for ``p.sslmode``; raise ``DatabaseUnavailable`` on failure."""
    timeout = p.connect_timeout or DEFAULT_CONNECT_TIMEOUT
    plans: list[SslChoice]
    if p.unix_socket is not None or p.sslmode == "disable":
        plans = [False]
    elif p.sslmode == "allow":
        plans = [False, _tls_context(p, verify=False)]
    elif p.sslmode == "prefer":
        # Like libpq: plain text when the server refuses TLS or rejects us over it.
        plans = [_tls_context(p, verify=False), False]
    elif p.sslmode == "require" and p.sslrootcert is None:
        plans = [_tls_context(p, verify=False)]
    else:  # verify-ca, verify-full, or require with a root certificate
        plans = [_tls_context(p, verify=True)]
    error: BaseException | None = None
    for index, choice in enumerate(plans):
        try:
            return _attempt(p, choice, timeout, io_timeout)
        except Exception as exc:
            error = exc
            if index + 1 < len(plans) and _worth_retrying(exc, choice):
                continue
            break
    assert error is not None
    cause, hint = _explain(p, error, timeout)
    raise DatabaseUnavailable(f"cannot connect to database at {_where(p)}: {cause}", hint) from (
        error
    )


def connection_uses_tls(conn: pg8000.native.Connection) -> bool:
    """Whether ``conn`` talks TLS (pg8000 keeps the raw socket in ``_usock``)."""
    return isinstance(getattr(conn, "_usock", None), ssl.SSLSocket)

"""A small parser for libpq connection URLs (``postgresql://...``).

pg8000 takes keyword arguments only, so this module turns a URL into
``ConnParams``. It follows libpq's rules for the parts waha-sync supports:
percent-decoding, bracketed IPv6 hosts, a ``host=`` query parameter naming a
Unix-socket directory, and the TLS and startup parameters. Error messages
start with ``database_url:`` and never contain the password.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from urllib.parse import quote, unquote

import pydantic

from waha_sync.common.errors import ConfigError

SSLMODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")
SCHEMES = ("postgresql", "postgres")
PARAMS = (
    "host",
    "port",
    "user",
    "password",
    "dbname",
    "sslmode",
    "sslrootcert",
    "sslcert",
    "sslkey",
    "connect_timeout",
    "application_name",
    "options",
)
DEFAULT_PORT = 5432
EXAMPLE = "postgresql://USER:PASSWORD@HOST:5432/DATABASE?sslmode=verify-full"


@dataclass(frozen=True)
class ConnParams:
    """Everything needed to open one connection; the password is a ``SecretStr``."""

    user: str
    password: pydantic.SecretStr | None
    host: str | None
    port: int
    database: str
    unix_socket: str | None
    sslmode: str
    sslrootcert: str | None
    sslcert: str | None
    sslkey: str | None
    connect_timeout: float | None
    application_name: str | None
    options: str | None

    def redacted(self) -> str:
        """The URL rebuilt with the password shown as ``***``."""
        user = quote(self.user, safe="")
        auth = f"{user}:***@" if self.password is not None else f"{user}@"
        query: list[tuple[str, str]] = []
        if self.unix_socket is not None:
            netloc = ""
            query += [("host", self.unix_socket.rsplit("/", 1)[0]), ("port", str(self.port))]
        else:
            host = self.host or ""
            netloc = f"[{host}]" if ":" in host else host
            netloc += f":{self.port}"
        if self.sslmode != "prefer":
            query.append(("sslmode", self.sslmode))
        for name in ("sslrootcert", "sslcert", "sslkey", "application_name", "options"):
            value = getattr(self, name)
            if value is not None:
                query.append((name, value))
        if self.connect_timeout is not None:
            query.append(("connect_timeout", f"{self.connect_timeout:g}"))
        suffix = "&".join(f"{k}={quote(v, safe='/')}" for k, v in query)
        db = quote(self.database, safe="")
        return f"postgresql://{auth}{netloc}/{db}" + (f"?{suffix}" if suffix else "")


def _fail(problem: str, hint: str = EXAMPLE) -> ConfigError:
    return ConfigError(f"database_url: {problem}", hint)


def _decode(text: str, what: str) -> str:
    try:
        return unquote(text, errors="strict")
    except UnicodeDecodeError:
        raise _fail(f"{what} is not valid percent-encoded UTF-8") from None


def _got(text: str, show: bool) -> str:
    """`` (got 'text')``, or nothing when ``text`` might hold part of a password."""
    return (
        f" (got {text!r})"
        if show
        else " (special characters in the password must be percent-encoded)"
    )


def _got_scheme(text: str) -> str:
    """`` (got 'postgres//...')``: what stands where the scheme belongs, never a password."""
    head = re.match(r"[A-Za-z][A-Za-z0-9+.-]{0,30}(:?/{0,2})", text)
    if head is None:
        return " (got a text that does not start with a scheme)"
    return f" (got '{head.group(0)}...')"


def _port(text: str, show: bool = True) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise _fail(f"port must be a number from 1 to 65535{_got(text, show)}")
    return int(text)


def _timeout(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < 0:
        raise _fail(
            f"connect_timeout must be a number of seconds >= 0 (got {text!r})",
            "connect_timeout=10",
        )
    if value == 0:
        return None
    return max(value, 2.0)


def _split_authority(rest: str) -> tuple[str | None, str, str]:
    """What follows ``scheme://`` -> (userinfo or None, host[:port], path-and-query).

    The user info ends at the last ``@`` before the query, so unencoded ``@``
    and ``/`` in a password still parse (libpq wants them percent-encoded).
    """
    at = rest.rfind("@", 0, len(rest) if "?" not in rest else rest.index("?"))
    userinfo = rest[:at] if at >= 0 else None
    after = rest[at + 1 :]
    cut = min((i for i in (after.find("/"), after.find("?")) if i >= 0), default=len(after))
    return userinfo, after[:cut], after[cut:]


def _split_host(hostport: str, show: bool) -> tuple[str, str]:
    """``host[:port]`` or ``[v6]:port`` -> (host, port text); both may be empty."""
    if hostport.startswith("["):
        end = hostport.find("]")
        if end < 0:
            raise _fail(f"IPv6 host has no closing ']'{_got(hostport, show)}")
        host, rest = hostport[1:end], hostport[end + 1 :]
        if rest and not rest.startswith(":"):
            raise _fail(f"unexpected text after IPv6 host{_got(rest, show)}")
        return host, rest[1:]
    host, _, port = hostport.partition(":")
    return host, port


def _query(text: str, show: bool) -> dict[str, str]:
    params: dict[str, str] = {}
    for item in text.split("&"):
        if not item:
            continue
        raw_name, eq, raw_value = item.partition("=")
        name = _decode(raw_name, "a parameter name")
        if name not in PARAMS:
            shown = f" {name!r}" if show else ""
            raise _fail(
                f"unknown parameter{shown} (supported: {', '.join(PARAMS)})",
                "remove it, or check its spelling"
                if show
                else "percent-encode special characters in the password ('?' is %3F)",
            )
        if not eq:
            raise _fail(f"parameter {name!r} has no value", f"{name}=VALUE")
        params[name] = _decode(raw_value, f"parameter {name!r}")
    return params


def parse_url(url: str, field: str = "database_url") -> ConnParams:
    """Parse a ``postgresql://`` or ``postgres://`` URL; raise ``ConfigError`` if invalid.

    The error reads ``<field>: problem`` (``database_url`` unless another setting holds the
    URL) and never contains the password.
    """
    try:
        return _parse(url)
    except ConfigError as exc:
        if field == "database_url":
            raise
        message = field + exc.message.removeprefix("database_url")
        raise ConfigError(message, exc.hint) from None


def _parse(url: str) -> ConnParams:
    scheme, sep, rest = url.strip().partition("://")
    if not sep or scheme.lower() not in SCHEMES:
        raise _fail(f"must start with postgresql:// or postgres://{_got_scheme(url.strip())}")
    userinfo, hostport, tail = _split_authority(rest)
    # With no user info found, an '@' later on may mean a password holding '?':
    # then nothing from the host part is echoed in errors.
    show = userinfo is not None or "@" not in rest
    path, _, query_text = tail.partition("?")
    if "," in hostport:
        raise _fail(f"several hosts are not supported{_got(hostport, show)}", "give one host")
    raw_user, colon, raw_password = (userinfo or "").partition(":")
    user = _decode(raw_user, "the user name")
    password = _decode(raw_password, "the password") if colon else ""
    raw_host, port_text = _split_host(hostport, show)
    host = _decode(raw_host, "the host")
    database = _decode(path[1:], "the database name") if path else ""

    params = _query(query_text, show)
    host = params.get("host", host)
    port_text = params.get("port", port_text)
    user = params.get("user", user)
    password = params.get("password", password)
    database = params.get("dbname", database)

    port = _port(port_text, show) if port_text else DEFAULT_PORT
    if not user:
        raise _fail("no user name", EXAMPLE)
    if not host:
        raise _fail(
            "no host: give HOST[:PORT] after '@', or ?host=/socket/directory",
            EXAMPLE + "  or  postgresql://USER@/DATABASE?host=/var/run/postgresql",
        )
    sslmode = params.get("sslmode", "prefer")
    if sslmode not in SSLMODES:
        raise _fail(
            f"sslmode must be one of {', '.join(SSLMODES)} (got {sslmode!r})",
            "sslmode=verify-full (with sslrootcert=/path/to/ca.crt)",
        )
    timeout_text = params.get("connect_timeout", "")
    unix_socket = f"{host.rstrip('/')}/.s.PGSQL.{port}" if host.startswith("/") else None
    return ConnParams(
        user=user,
        password=pydantic.SecretStr(password) if password else None,
        host=None if unix_socket else host,
        port=port,
        database=database or user,
        unix_socket=unix_socket,
        sslmode=sslmode,
        sslrootcert=params.get("sslrootcert") or None,
        sslcert=params.get("sslcert") or None,
        sslkey=params.get("sslkey") or None,
        connect_timeout=_timeout(timeout_text) if timeout_text else None,
        application_name=params.get("application_name"),
        options=params.get("options") or None,
    )


_URLISH = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://\S*")
_PASSWORD_PARAM = re.compile(r"(?i)((?:^|[?&;\s])password\s*=\s*)('[^']*'|[^&\s]*)")


def _redact_one(match: re.Match[str]) -> str:
    token = match.group(0)
    head, _, rest = token.partition("://")
    userinfo, hostport, tail = _split_authority(rest)
    if userinfo is None and "@" in rest:  # maybe a password holding '?': hide more
        userinfo, _, after = rest.rpartition("@")
        hostport, tail = after, ""
    if userinfo is None or ":" not in userinfo:
        return token
    return f"{head}://{userinfo.split(':', 1)[0]}:***@{hostport}{tail}"


def redact_url(url: str) -> str:
    """Replace any password in ``url`` (or text containing URLs) with ``***``; never raises."""
    try:
        text = _URLISH.sub(_redact_one, str(url))
        return _PASSWORD_PARAM.sub(lambda m: m.group(1) + "***", text)
    except Exception:  # pragma: no cover - defensive: redaction must never fail
        return "<unparseable database_url>"

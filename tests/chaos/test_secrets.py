"""Secrets: every line waha-sync prints and every HTTP answer it gives, scanned.

A role with a real password (special characters, so the URL carries it
percent-encoded) owns the test database, an API key and a dashboard password
are set, and a representative set of commands runs in random order with
random log levels and formats: successes, ``--help``, every kind of failure
that has the URL or the key in hand (wrong password, unreachable host,
unknown database, malformed URLs, bad settings, TLS demanded of a server
without it, secret files), and two sidecars (one healthy, one whose database
refuses the password) whose every endpoint is asked with no key, a wrong one
and the right one. Every stdout/stderr line and every response (status
line, headers, body) is searched for the password, the key and the
dashboard password, plain and percent-encoded: 0 hits.

A second test searches every log file the run has left under pytest's base
folder by then (the other chaos scenarios' sidecar logs, when they ran
before this module) for the test server's own password.
"""

from __future__ import annotations

import base64
import random
import secrets
import time
from pathlib import Path
from urllib.parse import quote, quote_plus, urlsplit, urlunsplit

import pytest

from tests.chaos.conftest import Chaos
from tests.chaos.hostile import seeded, waha_sync
from tests.support.dbtarget import DbTarget, Server
from tests.support.podsim import Reply, SidecarProc


def _secret_role(db: DbTarget, rng: random.Random) -> tuple[str, str]:
    """A login role with a random password, owning the test database; (url, password)."""
    role = f"ws_{secrets.token_hex(4)}"
    password = "Pw" + secrets.token_urlsafe(10) + "".join(rng.choices("@:/?#%&+=!*$ ", k=5))
    db.sql(f"CREATE ROLE {role} LOGIN PASSWORD '{password}'")
    name = urlsplit(db.url).path.lstrip("/")
    db.sql(f"ALTER DATABASE {name} OWNER TO {role}")
    parts = urlsplit(db.url)
    netloc = f"{role}:{quote(password, safe='')}@{parts.hostname}:{parts.port}"
    return urlunsplit(parts._replace(netloc=netloc)), password


def _forms(*values: str) -> set[str]:
    out = set()
    for v in values:
        out |= {v, quote(v, safe=""), quote(v), quote_plus(v)}
    return out


class Scanner:
    """Everything seen, searched for every form of every secret."""

    def __init__(self, forms: set[str]) -> None:
        self.forms = forms
        self.outputs = 0
        self.hits: list[str] = []

    def scan(self, what: str, text: str) -> None:
        self.outputs += 1
        for form in self.forms:
            if form in text:
                self.hits.append(f"{what}: {form!r} in {text[:300]!r}")

    def reply(self, what: str, reply: Reply) -> None:
        head = "".join(f"{k}: {v}\n" for k, v in reply.headers.items())
        self.scan(what, f"{reply.status}\n{head}\n{reply.body.decode(errors='replace')}")


# name, arguments, environment, must succeed (None: either; a raw '@' or '/' may still parse)
Run = tuple[str, list[str], dict[str, str], bool | None]


def _commands(url: str, password: str, key: str, tmp: Path) -> list[Run]:
    """Every command run; an empty environment value removes that variable."""
    parts = urlsplit(url)
    user = parts.username or ""
    host_port = f"{parts.hostname}:{parts.port}"
    enc = quote(password, safe="")
    secrets_dir = tmp / "secret-files"
    secrets_dir.mkdir()
    (secrets_dir / "WAHA_SYNC_DATABASE_URL").write_text(url + "\n")
    (secrets_dir / "WAHA_SYNC_API_KEY").write_text(key + "\n")
    bad = {
        "wrong password": f"postgresql://{user}:{enc}x@{host_port}{parts.path}",
        "unreachable host": f"postgresql://{user}:{enc}@127.0.0.1:1/db?connect_timeout=1",
        "unknown database": f"postgresql://{user}:{enc}@{host_port}/no_such_db",
        "mysql scheme": f"mysql://{user}:{enc}@{host_port}/db",
        "port out of range": f"postgresql://{user}:{enc}@{parts.hostname}:99999/db",
        "bad sslmode": f"{url}?sslmode=sometimes",
        "TLS demanded": f"{url}?sslmode=require",
        "password not encoded": f"postgresql://{user}:{password}@{host_port}{parts.path}",
    }
    runs: list[Run] = [("restore", ["restore"], {}, True)]
    for name in ("push", "ls", "ls --json", "check", "gc"):
        runs.append((name, name.split(), {}, True))
    for name in ("push", "restore", "sidecar", "ls", "check", "gc", "up"):
        runs.append((f"{name} --help", [name, "--help"], {}, True))
    for why, bad_url in bad.items():
        for cmd in ("check", "restore"):
            env = {"WAHA_SYNC_DATABASE_URL": bad_url}
            ok = None if why == "password not encoded" else False
            runs.append((f"{cmd}: {why}", [cmd, "--wait-seconds", "0"], env, ok))
    query = f"postgresql://{user}@{host_port}{parts.path}?password={enc}"
    runs += [
        ("password in the query", ["ls"], {"WAHA_SYNC_DATABASE_URL": query}, True),
        ("url as a flag, bad setting", ["ls", "--database-url", url, "--workers", "0"], {}, False),
        ("url as a flag", ["check", "--database-url", bad["wrong password"]], {}, False),
        ("bad key", ["check"], {"WAHA_SYNC_API_KEY": f"sha512:{key}"}, False),
        ("dashboard password alone", ["check"], {"WAHA_DASHBOARD_USERNAME": ""}, False),
        (
            "secret files",
            ["check"],
            {"WAHA_SYNC_SECRETS_DIR": str(secrets_dir), "WAHA_SYNC_DATABASE_URL": ""},
            True,
        ),
    ]
    return runs


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def _ask_everything(
    side: SidecarProc, key: str, dash: tuple[str, str], scanner: Scanner
) -> dict[str, int]:
    """Every endpoint with every kind of credential; {what: status}, every answer scanned."""
    statuses: dict[str, int] = {}
    for path in ("/health", "/livez", "/status", "/metrics", "/", "/nope", "/status?x=1"):
        for label, headers in (
            ("no key", {}),
            ("wrong key", {"X_Api_Key": key[:-1]}),
            ("key", {"X_Api_Key": key}),
            ("dashboard", {"Authorization": _basic(*dash)}),
            ("wrong dashboard", {"Authorization": _basic(dash[0], dash[1] + "x")}),
        ):
            reply = side.get(path, **headers)
            statuses[f"{path} ({label})"] = reply.status
            scanner.reply(f"{path} ({label})", reply)
    return statuses


def _environment(
    url: str, key: str, dash: tuple[str, str], vol: Path, extra: dict[str, str]
) -> dict[str, str]:
    env = {
        "WAHA_SYNC_DATABASE_URL": url,
        "WAHA_SYNC_API_KEY": key,
        "WAHA_DASHBOARD_USERNAME": dash[0],
        "WAHA_DASHBOARD_PASSWORD": dash[1],
        "WAHA_SYNC_SESSIONS_DIR": str(vol),
        **extra,
    }
    return {k: v for k, v in env.items() if v}


def test_no_secret_in_any_output(plain_db: DbTarget, tmp_path: Path, chaos: Chaos) -> None:
    db = plain_db
    rng = seeded("secrets")
    tally = chaos.scenario("secrets: every output scanned")
    url, password = _secret_role(db, rng)
    key = "key-" + secrets.token_urlsafe(24)
    dash = ("admin", "dash-" + secrets.token_urlsafe(12))
    basic = base64.b64encode(f"{dash[0]}:{dash[1]}".encode()).decode()
    scanner = Scanner(_forms(password, key, dash[1]) | {basic})
    control = Scanner(scanner.forms)
    control.scan("control", f"{url} {key}")
    assert len(control.hits) >= 2, "the scanner must find the URL's password and the key"
    vol = tmp_path / "vol"
    (vol / "default" / "alice").mkdir(parents=True)
    (vol / "default" / "alice" / "creds.json").write_text('{"me": "alice"}')
    runs = _commands(url, password, key, tmp_path)
    first, rest = runs[:1], runs[1:] * int(chaos.size(1, 4))
    rng.shuffle(rest)  # the volume needs its marker first; the rest in any order
    for name, args, extra, ok in first + rest:
        looks = {"WAHA_SYNC_LOG_LEVEL": rng.choice(["DEBUG", "INFO", "WARNING"])}
        looks["WAHA_SYNC_LOG_FORMAT"] = rng.choice(["text", "json"])
        looks["WAHA_SYNC_CHAOS_40001_RATE"] = rng.choice(["0", "0.1"])  # retry lines too
        env = _environment(url, key, dash, vol, {**looks, **extra})
        proc = waha_sync(None, *args, timeout=60, **env)
        what = f"{name} ({' '.join(looks.values())})"
        scanner.scan(f"{what} stdout", proc.stdout)
        scanner.scan(f"{what} stderr", proc.stderr)
        problem = None
        if ok is not None and ok != (proc.returncode == 0):
            problem = f"{what} exited {proc.returncode}: {proc.stderr[-300:]}"
        tally.attempt(problem or (scanner.hits[-1] if scanner.hits else None))
    refused = url.replace(quote(password, safe=""), "nope")
    for label, side_url in (("healthy", url), ("refused", refused)):
        looks = {
            "WAHA_SYNC_LOG_LEVEL": "DEBUG",
            "WAHA_SYNC_LOG_FORMAT": rng.choice(["text", "json"]),
            "WAHA_SYNC_CHAOS_40001_RATE": "0.1",
            "WAHA_SYNC_SHUTDOWN_TIMEOUT_SECONDS": "1",  # the refused one cannot flush
        }
        env = _environment(side_url, key, dash, vol, looks)
        side = SidecarProc(db, vol, tmp_path / f"sidecar-{label}.log", **env).start()
        side.wait_http("/livez", 200, timeout=30)
        if label == "healthy":
            side.wait_for("in sync with the database")
            (vol / "default" / "alice" / "pre-key-1.json").write_text('{"k": 1}')
            side.wait_for("shipped")
        else:
            side.wait_for("cannot sync", timeout=30)
        time.sleep(2.2)  # a health check has seen the state
        got = _ask_everything(side, key, dash, scanner)
        wanted = {"/status (key)": 200, "/metrics (key)": 200, "/status (no key)": 401}
        wanted["/health (no key)"] = 200 if label == "healthy" else 503
        if label == "healthy":
            wanted["/ (dashboard)"] = 200
        wrong = {k: got[k] for k, v in wanted.items() if got[k] != v}
        code = side.term()
        scanner.scan(f"sidecar ({label}) log", side.log())
        problem = None if code == (0 if label == "healthy" else 1) else f"{label} exited {code}"
        problem = problem or (f"{label}: unexpected answers {wrong}" if wrong else None)
        tally.attempt(problem or (scanner.hits[-1] if scanner.hits else None))
    tally.figures["outputs scanned"] = str(scanner.outputs)
    tally.figures["hits"] = str(len(scanner.hits))
    assert not scanner.hits, "\n".join(scanner.hits[:5])
    tally.check()


def test_no_server_password_in_the_run_logs(
    pg_server: Server, tmp_path_factory: pytest.TempPathFactory, chaos: Chaos
) -> None:
    tally = chaos.scenario("secrets: log files of this run")
    password = urlsplit(pg_server.url).password or ""
    assert len(password) >= 4, "the test server's URL has no password to look for"
    forms = _forms(password)
    base = tmp_path_factory.getbasetemp()
    hits = 0
    for log in sorted(base.rglob("*.log")):
        if any((p / "PG_VERSION").exists() for p in log.parents if base in p.parents):
            continue  # a PostgreSQL server's own log, not ours
        text = log.read_text(errors="replace")
        found = [f for f in forms if f in text]
        hits += len(found)
        tally.attempt(f"{log}: {found}" if found else None)
    tally.figures["hits"] = str(hits)
    if tally.attempts == 0:
        tally.attempt(None)  # nothing ran before this test: nothing to find
    tally.check()

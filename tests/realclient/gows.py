"""GOWS session databases on whatsmeow's real schema, and a writer that behaves like whatsmeow.

``whatsmeow_schema`` gets the schema from whatsmeow itself: PyPI's ``neonize`` wheel ships a Go
library built from whatsmeow; a client started on a database path creates the schema there,
then fails to reach WhatsApp (offline). The result is cached; no schema text is kept here.
``make_gows_db`` fills a copy with realistic rows; ``GowsChurn`` writes to it from another
process, one whatsmeow-like transaction at a time. No pytest import: bench code uses it too.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import multiprocessing
import os
import random
import sqlite3
import subprocess
import sys
import time
from multiprocessing.connection import Connection
from multiprocessing.synchronize import Event
from pathlib import Path
from types import TracebackType
from typing import Any

NEONIZE_VERSION = "0.5.2"
WHATSMEOW_TABLES = 17  # the tables whatsmeow's schema v15 has, whatsmeow_version included
GOWS_BUSY_TIMEOUT_MS = 30000

# The client: neonize's NewClient on the given path, connecting (the schema is created before
# the network is tried; offline the connect fails, and we stop it once the schema exists).
_CLIENT = "import sys\nfrom neonize.client import NewClient\nNewClient(sys.argv[1]).connect()\n"


def _schema_ready(path: Path) -> bool:
    try:
        conn = sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True, timeout=1)
    except sqlite3.Error:
        return False
    try:
        tables = conn.execute(
            "SELECT count(*) FROM sqlite_master WHERE type='table' AND name LIKE 'whatsmeow_%'"
        ).fetchone()[0]
        if tables < WHATSMEOW_TABLES:
            return False
        return bool(conn.execute("SELECT count(*) FROM whatsmeow_version").fetchone()[0] > 0)
    except sqlite3.Error:
        return False
    finally:
        conn.close()


def whatsmeow_schema(cache_dir: Path, timeout: float = 90) -> Path:
    """A SQLite file holding whatsmeow's real (empty) schema, made by neonize on first use.

    Cached as ``cache_dir/whatsmeow-schema-neonize-<version>.db`` (a file lock keeps two
    callers from making it at once). Starts the neonize client on a scratch path, waits until
    all whatsmeow tables and the version row exist, kills the client (it is offline and would
    retry), and copies the database with SQLite's backup API. Raises RuntimeError if neonize is
    missing or the schema does not appear within ``timeout`` seconds.
    """
    cache_dir.mkdir(parents=True, exist_ok=True)
    final = cache_dir / f"whatsmeow-schema-neonize-{NEONIZE_VERSION}.db"
    with (cache_dir / ".whatsmeow-schema.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if _schema_ready(final):
            return final
        scratch = cache_dir / f"neonize-{os.getpid()}"
        scratch.mkdir(exist_ok=True)
        db = scratch / "whatsmeow.db"
        log = scratch / "client.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [sys.executable, "-c", _CLIENT, str(db)],
                cwd=scratch,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            deadline = time.monotonic() + timeout
            while not _schema_ready(db):
                if proc.poll() is not None and not _schema_ready(db):
                    tail = log.read_text(errors="replace")[-2000:]
                    raise RuntimeError(
                        f"neonize: exited {proc.returncode} before whatsmeow's schema existed"
                        f" (got {tail!r}). Try: pip install neonize=={NEONIZE_VERSION}"
                    )
                if time.monotonic() > deadline:
                    raise RuntimeError(f"neonize: no whatsmeow schema within {timeout} s")
                time.sleep(0.1)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, 9)
            proc.wait(10)
        tmp = final.with_suffix(".tmp")
        src = sqlite3.connect(db)
        dst = sqlite3.connect(tmp)
        src.backup(dst)
        dst.close()
        src.close()
        tmp.replace(final)
        for leftover in scratch.iterdir():
            leftover.unlink()
        scratch.rmdir()
        return final


def default_cache() -> Path:
    """Where the schema is cached unless a caller says: ``$XDG_CACHE_HOME/waha-sync-tests``."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "waha-sync-tests"


def open_like_gows(path: Path, busy_timeout_ms: int = GOWS_BUSY_TIMEOUT_MS) -> sqlite3.Connection:
    """A connection opened as GOWS opens its store: WAL, foreign keys on, busy timeout, and
    (``_txlock=immediate``) write transactions that take the write lock at ``BEGIN``: use
    ``BEGIN IMMEDIATE`` on this autocommit connection."""
    conn = sqlite3.connect(path, timeout=busy_timeout_ms / 1000, isolation_level=None)
    conn.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA foreign_keys=ON")
    return conn


# GOWS's own tables (its message store next to whatsmeow's), in our own words.
_GOWS_DDL = (
    "CREATE TABLE IF NOT EXISTS gows_messages (jid TEXT NOT NULL, id TEXT NOT NULL,"
    " timestamp TIMESTAMP NOT NULL, from_me BOOLEAN NOT NULL, is_real BOOLEAN NOT NULL DEFAULT"
    " TRUE, data TEXT NOT NULL, PRIMARY KEY (id))",
    "CREATE INDEX IF NOT EXISTS gows_messages_jid_ts ON gows_messages (jid, timestamp)",
    "CREATE INDEX IF NOT EXISTS gows_messages_ts ON gows_messages (timestamp)",
    "CREATE TABLE IF NOT EXISTS gows_chats (jid TEXT PRIMARY KEY, name TEXT,"
    " conversation_timestamp TIMESTAMP, data TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS gows_groups (id TEXT PRIMARY KEY, name TEXT, data TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS gows_chat_ephemeral_setting (id TEXT PRIMARY KEY,"
    " data TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS gows_labels (id TEXT PRIMARY KEY, data TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS gows_label_associations (jid TEXT NOT NULL, label_id TEXT"
    " NOT NULL, data TEXT NOT NULL, PRIMARY KEY (jid, label_id))",
)

_WORDS = (
    "ok", "thanks", "see", "you", "tomorrow", "meeting", "at", "the", "office", "call", "me",
    "later", "please", "send", "invoice", "photo", "document", "where", "are", "yes", "no",
    "maybe", "good", "morning", "night", "lunch", "price", "order", "delivery", "address",
    "tracking", "number", "confirmed", "cancelled", "payment", "received", "appointment",
)  # fmt: skip


def _b(rng: random.Random, n: int) -> bytes:
    return rng.randbytes(n)


def _jid(rng: random.Random) -> str:
    return f"{rng.randrange(10**10, 10**12)}@s.whatsapp.net"


def _message(rng: random.Random, chat: str, n: int, ts: int, from_me: bool) -> tuple[Any, ...]:
    mid = f"3EB0{n:08X}{rng.getrandbits(48):012X}"
    text = " ".join(rng.choice(_WORDS) for _ in range(rng.randrange(3, 40)))
    body: dict[str, Any] = {
        "Info": {
            "Chat": chat,
            "Sender": chat if not from_me else "me",
            "IsFromMe": from_me,
            "ID": mid,
            "Timestamp": ts,
            "PushName": rng.choice(_WORDS).title(),
            "Type": "text",
        },
        "Message": {"conversation": text},
    }
    if n % 7 == 0:  # media: keys and hashes, incompressible
        body["Message"] = {
            "imageMessage": {
                "url": "https://mmg.whatsapp.net/v/t62.7118-24/" + _b(rng, 24).hex(),
                "mediaKey": base64.b64encode(_b(rng, 32)).decode(),
                "fileSha256": base64.b64encode(_b(rng, 32)).decode(),
                "fileEncSha256": base64.b64encode(_b(rng, 32)).decode(),
                "jpegThumbnail": base64.b64encode(_b(rng, rng.randrange(600, 2400))).decode(),
                "caption": text,
            }
        }
    return (chat, mid, ts, from_me, True, json.dumps(body, separators=(",", ":")))


def _size(conn: sqlite3.Connection) -> int:
    pages = conn.execute("PRAGMA page_count").fetchone()[0]
    return int(pages) * int(conn.execute("PRAGMA page_size").fetchone()[0])


def make_gows_db(
    path: Path,
    target_bytes: int,
    seed: int = 0,
    page_size: int = 4096,
    cache_dir: Path | None = None,
) -> dict[str, int]:
    """Make a GOWS session database at ``path`` of about ``target_bytes`` bytes.

    whatsmeow's schema (``whatsmeow_schema(cache_dir)``, by default in ``default_cache()``)
    with ``page_size``, opened as GOWS does, then: one device, identity keys and sessions of its
    contacts, pre-keys (in batches of 50, older batches uploaded), sender keys, app-state sync
    keys, versions and mutation MACs, contacts, chat settings, message secrets, privacy tokens,
    the LID map, the NCT salt, event and retry buffers; GOWS's messages, chats, groups and
    labels; messages (and their secrets) are added until the file reaches ``target_bytes``.
    Checkpointed: the data is in the main file, the WAL is empty. Returns ``{table: rows}``
    for every table. Raises FileExistsError if ``path`` exists.
    """
    if path.exists():
        raise FileExistsError(f"path: already exists (got {path})")
    path.parent.mkdir(parents=True, exist_ok=True)
    schema = whatsmeow_schema(cache_dir or default_cache())
    src = sqlite3.connect(f"{schema.as_uri()}?mode=ro", uri=True)
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute(f"PRAGMA page_size={int(page_size)}")
    src.backup(conn)
    src.close()
    if conn.execute("PRAGMA page_size").fetchone()[0] != page_size:
        conn.execute(f"PRAGMA page_size={int(page_size)}")
        conn.execute("VACUUM")
    conn.close()
    conn = open_like_gows(path)
    conn.execute("PRAGMA synchronous=OFF")  # building only; GOWS itself runs NORMAL
    rng = random.Random(seed)
    for ddl in _GOWS_DDL:
        conn.execute(ddl)
    now = 1_760_000_000
    me = f"{rng.randrange(10**10, 10**12)}:{rng.randrange(1, 30)}@s.whatsapp.net"
    contacts = max(40, target_bytes // (256 * 1024))
    groups = max(5, contacts // 10)
    jids = [_jid(rng) for _ in range(contacts)]
    lids = [f"{rng.randrange(10**14, 10**15)}@lid" for _ in range(contacts)]
    group_ids = [f"120363{rng.randrange(10**11, 10**12)}@g.us" for _ in range(groups)]
    conn.execute("BEGIN IMMEDIATE")
    conn.execute(
        "INSERT INTO whatsmeow_device (jid, lid, registration_id, noise_key, identity_key,"
        " signed_pre_key, signed_pre_key_id, signed_pre_key_sig, adv_key, adv_details,"
        " adv_account_sig, adv_account_sig_key, adv_device_sig, platform, business_name,"
        " push_name, lid_migration_ts, companion_meta_nonce) VALUES"
        " (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
        (me, lids[0].replace("@", ":1@"), rng.randrange(1, 16380), _b(rng, 32), _b(rng, 32),
         _b(rng, 32), 1, _b(rng, 64), _b(rng, 32), _b(rng, 140), _b(rng, 64), _b(rng, 32),
         _b(rng, 64), "android", "", "waha-sync test", now, ""),
    )  # fmt: skip
    devices = [f"{j.split('@')[0]}:{d}" for j in jids for d in (0, rng.randrange(1, 25))]
    conn.executemany(
        "INSERT INTO whatsmeow_identity_keys VALUES (?,?,?)",
        [(me, addr, _b(rng, 32)) for addr in devices],
    )
    conn.executemany(
        "INSERT INTO whatsmeow_sessions VALUES (?,?,?)",
        [(me, addr, _b(rng, rng.randrange(600, 3000))) for addr in devices],
    )
    conn.executemany(
        "INSERT INTO whatsmeow_pre_keys VALUES (?,?,?,?)",
        [(me, k, _b(rng, 32), k <= 800) for k in range(1, 851)],  # batches of 50
    )
    conn.executemany(
        "INSERT INTO whatsmeow_sender_keys VALUES (?,?,?,?)",
        [
            (me, g, f"{j.split('@')[0]}:0", _b(rng, rng.randrange(150, 700)))
            for g in group_ids
            for j in rng.sample(jids, min(len(jids), 12))
        ],
    )
    key_ids = [_b(rng, 6) for _ in range(8)]
    conn.executemany(
        "INSERT INTO whatsmeow_app_state_sync_keys VALUES (?,?,?,?,?)",
        [(me, k, _b(rng, 32), now - i * 86400, _b(rng, 20)) for i, k in enumerate(key_ids)],
    )
    names = ("critical_block", "critical_unblock_low", "regular", "regular_high", "regular_low")
    conn.executemany(
        "INSERT INTO whatsmeow_app_state_version VALUES (?,?,?,?)",
        [(me, name, rng.randrange(10, 900), _b(rng, 128)) for name in names],
    )
    conn.executemany(
        "INSERT INTO whatsmeow_app_state_mutation_macs VALUES (?,?,?,?,?)",
        [(me, rng.choice(names), v, _b(rng, 32), _b(rng, 32)) for v in range(contacts * 6)],
    )
    conn.executemany(
        "INSERT INTO whatsmeow_contacts VALUES (?,?,?,?,?,?,?)",
        [
            (me, j, rng.choice(_WORDS).title(), " ".join(rng.sample(_WORDS, 2)).title(),
             rng.choice(_WORDS), "", "")
            for j in jids
        ],
    )  # fmt: skip
    conn.executemany(
        "INSERT INTO whatsmeow_chat_settings VALUES (?,?,?,?,?)",
        [(me, j, rng.choice((0, -1, now + 3600)), rng.random() < 0.1, rng.random() < 0.2)
         for j in jids[: contacts // 2] + group_ids],
    )  # fmt: skip
    conn.executemany(
        "INSERT INTO whatsmeow_privacy_tokens VALUES (?,?,?,?,?)",
        [(me, j, _b(rng, 24), now - rng.randrange(10**6), now) for j in jids[: contacts // 3]],
    )
    conn.executemany(
        "INSERT INTO whatsmeow_lid_map VALUES (?,?)", list(zip(lids, jids, strict=True))
    )
    conn.execute("INSERT INTO whatsmeow_nct_salt VALUES (?,?)", (me, _b(rng, 32)))
    conn.executemany(
        "INSERT INTO whatsmeow_event_buffer VALUES (?,?,?,?,?)",
        [(me, _b(rng, 32), _b(rng, 300), now, now) for _ in range(10)],
    )
    conn.executemany(
        "INSERT INTO whatsmeow_retry_buffer VALUES (?,?,?,?,?,?)",
        [(me, rng.choice(jids), f"3EB0{i:016X}", "proto", _b(rng, 200), now) for i in range(10)],
    )
    conn.executemany(
        "INSERT INTO gows_chats VALUES (?,?,?,?)",
        [(j, rng.choice(_WORDS).title(), now, json.dumps({"id": j, "unread": rng.randrange(9)}))
         for j in jids + group_ids],
    )  # fmt: skip
    conn.executemany(
        "INSERT INTO gows_groups VALUES (?,?,?)",
        [(g, f"group {i}", json.dumps({"JID": g, "Participants": rng.sample(jids, 8)}))
         for i, g in enumerate(group_ids)],
    )  # fmt: skip
    conn.executemany(
        "INSERT INTO gows_chat_ephemeral_setting VALUES (?,?)",
        [(j, json.dumps({"expiration": 86400})) for j in jids[:5]],
    )
    conn.executemany(
        "INSERT INTO gows_labels VALUES (?,?)",
        [(str(i), json.dumps({"name": w, "color": i})) for i, w in enumerate(_WORDS[:5])],
    )
    conn.executemany(
        "INSERT INTO gows_label_associations VALUES (?,?,?)",
        [(j, str(rng.randrange(5)), "{}") for j in jids[:10]],
    )
    conn.execute("COMMIT")
    chats = jids + group_ids
    n = 0
    while _size(conn) < target_bytes:
        batch, secrets = [], []
        for _ in range(2000):
            n += 1
            chat = chats[int(rng.paretovariate(1.2)) % len(chats)]  # a few busy chats
            row = _message(rng, chat, n, now - 10**7 + n * 13, rng.random() < 0.4)
            batch.append(row)
            if n % 3 == 0:
                secrets.append((me, chat, row[0] if not row[3] else me, row[1], _b(rng, 32)))
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany("INSERT INTO gows_messages VALUES (?,?,?,?,?,?)", batch)
        conn.executemany("INSERT INTO whatsmeow_message_secrets VALUES (?,?,?,?,?)", secrets)
        conn.execute("COMMIT")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    counts = table_counts(conn)
    conn.close()
    return counts


def table_counts(conn_or_path: sqlite3.Connection | Path) -> dict[str, int]:
    """``{table: rows}`` for every table of a database (a connection or a path, read-only)."""
    if isinstance(conn_or_path, Path):
        conn = sqlite3.connect(f"{conn_or_path.as_uri()}?mode=ro", uri=True)
        try:
            return table_counts(conn)
        finally:
            conn.close()
    names = [
        str(r[0])
        for r in conn_or_path.execute(
            "SELECT name FROM sqlite_master WHERE type='table' AND name NOT LIKE 'sqlite_%'"
            " ORDER BY name"
        )
    ]
    return {
        name: int(conn_or_path.execute(f'SELECT count(*) FROM "{name}"').fetchone()[0])
        for name in names
    }


def check_database(path: Path) -> dict[str, Any]:
    """``{"integrity": str, "foreign_key_violations": int, "tables": {table: rows}}`` of a
    database (opened read-only with foreign keys on). ``integrity`` is ``"ok"`` when sound."""
    conn = sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True)
    try:
        conn.execute("PRAGMA foreign_keys=ON")
        integrity = "; ".join(str(r[0]) for r in conn.execute("PRAGMA integrity_check"))
        violations = len(conn.execute("PRAGMA foreign_key_check").fetchall())
        return {"integrity": integrity, "foreign_key_violations": violations,
                "tables": table_counts(conn)}  # fmt: skip
    finally:
        conn.close()


def _churn_main(
    path: str,
    tx_per_second: float,
    busy_timeout_ms: int,
    burst: int,
    burst_every_s: float,
    seed: int,
    halt: Event,
    report: Connection,
) -> None:
    rng = random.Random(seed)
    counts: dict[str, int] = {"committed": 0, "errors": 0, "busy": 0, "messages": 0, "bursts": 0}
    kinds: dict[str, int] = {}
    conn = open_like_gows(Path(path), busy_timeout_ms)
    conn.execute("PRAGMA synchronous=NORMAL")
    me = str(conn.execute("SELECT jid FROM whatsmeow_device").fetchone()[0])
    sessions = [str(r[0]) for r in conn.execute("SELECT their_id FROM whatsmeow_sessions")]
    chats = [str(r[0]) for r in conn.execute("SELECT jid FROM gows_chats")] or [_jid(rng)]
    n = int(conn.execute("SELECT count(*) FROM gows_messages").fetchone()[0]) + 10**6
    now = int(time.time())
    interval = 1.0 / tx_per_second if tx_per_second > 0 else 0.0
    next_at = time.monotonic()
    next_burst = time.monotonic() + burst_every_s
    report.send("started")
    while not halt.is_set():
        size = burst if burst and time.monotonic() >= next_burst else 1
        try:
            conn.execute("BEGIN IMMEDIATE")
            for _ in range(size):
                n += 1
                chat = rng.choice(chats)
                row = _message(rng, chat, n, now + n, rng.random() < 0.4)
                conn.execute("INSERT INTO gows_messages VALUES (?,?,?,?,?,?)", row)
                conn.execute(
                    "UPDATE whatsmeow_sessions SET session=? WHERE our_jid=? AND their_id=?",
                    (_b(rng, rng.randrange(600, 3000)), me, rng.choice(sessions)),
                )
                conn.execute(
                    "INSERT INTO whatsmeow_message_secrets VALUES (?,?,?,?,?)",
                    (me, chat, chat, row[1], _b(rng, 32)),
                )
            conn.execute("COMMIT")
            counts["committed"] += 1
            counts["messages"] += size
            if size > 1:
                counts["bursts"] += 1
                next_burst = time.monotonic() + burst_every_s
        except sqlite3.Error as exc:
            counts["errors"] += 1
            kind = getattr(exc, "sqlite_errorname", type(exc).__name__)
            kinds[kind] = kinds.get(kind, 0) + 1
            if "BUSY" in kind or "LOCKED" in kind or "locked" in str(exc):
                counts["busy"] += 1
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
        if interval:
            next_at += interval
            delay = next_at - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            else:
                next_at = time.monotonic()
    conn.close()
    report.send({**counts, "error_kinds": kinds})


class GowsChurn:
    """whatsmeow-like writes to a GOWS database from a separate process (a real second writer).

    Each transaction (``BEGIN IMMEDIATE``, as GOWS's ``_txlock=immediate``) inserts one message
    into ``gows_messages``, updates one random ``whatsmeow_sessions`` row and inserts a
    ``whatsmeow_message_secrets`` row, at ``tx_per_second`` (0: as fast as it can). With
    ``burst`` > 0, every ``burst_every_s`` seconds one transaction carries ``burst`` messages
    (a history-sync batch). Errors (SQLITE_BUSY and others) are counted, never raised.
    ``stop()`` returns ``{"committed", "errors", "busy", "messages", "bursts": int,
    "error_kinds": {name: int}}``. Usable as a context manager (started on entry).
    """

    def __init__(
        self,
        path: Path,
        tx_per_second: float,
        busy_timeout_ms: int = GOWS_BUSY_TIMEOUT_MS,
        burst: int = 0,
        burst_every_s: float = 5.0,
        seed: int = 0,
    ) -> None:
        self.path = path
        self.params = (tx_per_second, busy_timeout_ms, burst, burst_every_s, seed)
        self._ctx = multiprocessing.get_context("spawn")
        self._halt = self._ctx.Event()
        self._proc: multiprocessing.process.BaseProcess | None = None
        self._conn: Connection | None = None
        self.result: dict[str, Any] | None = None

    def start(self, timeout: float = 60) -> GowsChurn:
        """Start the writer process; returns once it has opened the database."""
        ours, theirs = self._ctx.Pipe(duplex=False)
        self._conn = ours
        self._proc = self._ctx.Process(
            target=_churn_main,
            args=(str(self.path), *self.params, self._halt, theirs),
            daemon=True,
        )
        self._proc.start()
        theirs.close()
        if not ours.poll(timeout) or ours.recv() != "started":
            self._proc.kill()
            raise RuntimeError(f"GowsChurn: the writer did not start within {timeout} s")
        return self

    def stop(self, timeout: float = 60) -> dict[str, Any]:
        """Stop writing (the transaction under way completes); returns the counts."""
        assert self._proc is not None and self._conn is not None
        if self.result is not None:
            return self.result
        self._halt.set()
        if not self._conn.poll(timeout):
            self._proc.kill()
            raise RuntimeError(f"GowsChurn: the writer did not stop within {timeout} s")
        self.result = self._conn.recv()
        self._proc.join(10)
        return self.result

    def kill(self) -> None:
        """SIGKILL the writer (a crashed GOWS): whatever it had not committed is lost."""
        if self._proc is not None and self._proc.is_alive():
            self._proc.kill()
            self._proc.join(10)

    def __enter__(self) -> GowsChurn:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._proc is not None and self._proc.is_alive():
            try:
                self.stop()
            finally:
                self.kill()

"""A gows.db-like SQLite database and a whatsmeow-like writer, for the SQLite benchmark.

Stand-in for ``tests/realclient/gows.py`` with the same names and meaning, so
``bench_sqlite`` switches to it by changing its one import line:

- ``whatsmeow_schema(cache_dir) -> Path``: a file of SQL statements creating the tables.
  Written here from scratch to resemble what a WhatsApp multi-device client keeps (our
  device, Signal sessions, identity keys, pre-keys, sender keys, app-state keys, contacts,
  message secrets) plus a messages table as GOWS adds; not whatsmeow's own text.
- ``make_gows_db(path, target_bytes, seed=0, page_size=4096) -> dict[str, int]``: a new
  database in WAL mode of about ``target_bytes`` (a little more), rows per table returned.
  Keys are random bytes of their real sizes (32-byte keys, 64-byte signatures, Signal
  session records of 1-6 KiB); messages are protobuf-like bodies of mixed text and
  random bytes (media keys, hashes), 200 B to 3 KiB.
- ``GowsChurn(path, tx_per_second, busy_timeout_ms=30000, seed=0)``: a writer in a
  process of its own (``start()`` / ``stop() -> counts``) doing per transaction what a
  busy session does: one message insert, one random session-row update (a ratchet step:
  the record rewritten at a similar size) and one message-secret insert. Transactions are
  paced on a fixed schedule (``tx_per_second``); errors (``SQLITE_BUSY`` after the busy
  timeout included) are counted, not raised. The writer is a ``spawn`` process: the
  caller's main module must guard its work with ``if __name__ == "__main__"``.
"""

from __future__ import annotations

import multiprocessing
import random
import sqlite3
import time
from multiprocessing.connection import Connection
from multiprocessing.synchronize import Event
from pathlib import Path

SCHEMA_NAME = "gows-like-schema.sql"
SCHEMA = """
CREATE TABLE wm_device (
    jid TEXT PRIMARY KEY, lid TEXT, registration_id INTEGER NOT NULL,
    noise_priv BLOB NOT NULL, identity_priv BLOB NOT NULL, signed_prekey_priv BLOB NOT NULL,
    signed_prekey_id INTEGER NOT NULL, signed_prekey_sig BLOB NOT NULL, adv_secret BLOB NOT NULL,
    adv_details BLOB NOT NULL, adv_account_sig BLOB NOT NULL, adv_account_sig_key BLOB NOT NULL,
    adv_device_sig BLOB NOT NULL, platform TEXT NOT NULL, push_name TEXT NOT NULL
);
CREATE TABLE wm_identity (
    owner TEXT NOT NULL, address TEXT NOT NULL, pubkey BLOB NOT NULL,
    PRIMARY KEY (owner, address)
);
CREATE TABLE wm_prekey (
    owner TEXT NOT NULL, key_id INTEGER NOT NULL, privkey BLOB NOT NULL,
    uploaded INTEGER NOT NULL DEFAULT 0, PRIMARY KEY (owner, key_id)
);
CREATE TABLE wm_session (
    owner TEXT NOT NULL, address TEXT NOT NULL, record BLOB NOT NULL,
    PRIMARY KEY (owner, address)
);
CREATE TABLE wm_sender_key (
    owner TEXT NOT NULL, group_jid TEXT NOT NULL, sender TEXT NOT NULL, record BLOB NOT NULL,
    PRIMARY KEY (owner, group_jid, sender)
);
CREATE TABLE wm_appstate_key (
    owner TEXT NOT NULL, key_id BLOB NOT NULL, key_data BLOB NOT NULL, fingerprint BLOB NOT NULL,
    created INTEGER NOT NULL, PRIMARY KEY (owner, key_id)
);
CREATE TABLE wm_appstate_version (
    owner TEXT NOT NULL, name TEXT NOT NULL, version INTEGER NOT NULL, hash BLOB NOT NULL,
    PRIMARY KEY (owner, name)
);
CREATE TABLE wm_contact (
    owner TEXT NOT NULL, jid TEXT NOT NULL, first_name TEXT, full_name TEXT, push_name TEXT,
    business_name TEXT, PRIMARY KEY (owner, jid)
);
CREATE TABLE wm_message_secret (
    owner TEXT NOT NULL, chat TEXT NOT NULL, sender TEXT NOT NULL, message_id TEXT NOT NULL,
    secret BLOB NOT NULL, PRIMARY KEY (owner, chat, sender, message_id)
);
CREATE TABLE gows_message (
    chat TEXT NOT NULL, id TEXT NOT NULL, sender TEXT NOT NULL, from_me INTEGER NOT NULL,
    ts INTEGER NOT NULL, kind TEXT NOT NULL, body BLOB NOT NULL, PRIMARY KEY (chat, id)
);
CREATE INDEX gows_message_ts ON gows_message (chat, ts);
"""

OWNER = "15550000000:12@s.whatsapp.net"
_TEXT = (
    "ok yes no thanks see you tomorrow meeting call later today price order sent "
    "delivered where when how photo video location address please great good morning "
    "night hello hi bye love family work school payment invoice ticket number"
)
WORDS = _TEXT.split()
SECRET_EVERY = 4  # messages per message secret kept (those with reactions, polls, edits)
SHARES = {  # of the bytes before messages fill the rest
    "session": 0.09,
    "sender_key": 0.04,
    "contact": 0.02,
    "identity": 0.01,
}


def whatsmeow_schema(cache_dir: Path) -> Path:
    """Write (once) and return the schema file: SQL statements separated by ``;``."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    path = cache_dir / SCHEMA_NAME
    if not path.exists() or path.read_text() != SCHEMA:
        path.write_text(SCHEMA)
    return path


def _jid(rng: random.Random) -> str:
    return f"{rng.randrange(10**10, 10**12)}@s.whatsapp.net"


def _msg_id(rng: random.Random) -> str:
    return "3EB0" + rng.randbytes(10).hex().upper()


def _session_record(rng: random.Random) -> bytes:
    return rng.randbytes(rng.randint(1024, 6 * 1024))


def _body(rng: random.Random) -> bytes:
    """A protobuf-like message body: text that compresses, keys and hashes that do not."""
    text = " ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 120))).encode()
    media = rng.randbytes(rng.choice((0, 0, 0, 32, 32 + 32 + 32)))
    return b"\x0a" + len(text).to_bytes(2, "big") + text + media + rng.randbytes(24)


def _size(conn: sqlite3.Connection) -> int:
    pages = conn.execute("PRAGMA page_count").fetchone()[0]
    return int(pages) * int(conn.execute("PRAGMA page_size").fetchone()[0])


def make_gows_db(
    path: Path, target_bytes: int, seed: int = 0, page_size: int = 4096
) -> dict[str, int]:
    """Create ``path`` (must not exist) of about ``target_bytes``; rows per table.

    The database is left in WAL mode, checkpointed (an empty ``-wal``). Raises
    ``FileExistsError`` when ``path`` exists.
    """
    if path.exists():
        raise FileExistsError(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    conn = sqlite3.connect(path, isolation_level=None)
    counts: dict[str, int] = {}
    try:
        conn.execute(f"PRAGMA page_size = {page_size}")
        conn.execute("PRAGMA journal_mode = OFF")  # written in one go: no journal, no syncs
        conn.execute("PRAGMA synchronous = OFF")
        conn.executescript(SCHEMA)
        conn.execute("BEGIN")
        conn.execute(
            "INSERT INTO wm_device VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (OWNER, "1234567890:12@lid", rng.randrange(1 << 31), rng.randbytes(32),
             rng.randbytes(32), rng.randbytes(32), 1, rng.randbytes(64), rng.randbytes(32),
             rng.randbytes(180), rng.randbytes(64), rng.randbytes(32), rng.randbytes(64),
             "android", "Bench"),
        )  # fmt: skip
        conn.executemany(
            "INSERT INTO wm_prekey VALUES (?,?,?,?)",
            [(OWNER, i, rng.randbytes(32), int(i < 800)) for i in range(1, 813)],
        )
        conn.executemany(
            "INSERT INTO wm_appstate_key VALUES (?,?,?,?,?)",
            [(OWNER, rng.randbytes(6), rng.randbytes(32), rng.randbytes(40), 1700000000 + i)
             for i in range(60)],
        )  # fmt: skip
        conn.executemany(
            "INSERT INTO wm_appstate_version VALUES (?,?,?,?)",
            [(OWNER, n, rng.randrange(1000), rng.randbytes(128)) for n in
             ("critical_block", "critical_unblock_low", "regular", "regular_low", "regular_high")],
        )  # fmt: skip
        contacts = [_jid(rng) for _ in range(max(50, int(target_bytes * SHARES["contact"] / 120)))]
        conn.executemany(
            "INSERT OR IGNORE INTO wm_contact VALUES (?,?,?,?,?,?)",
            [(OWNER, j, rng.choice(WORDS).title(), f"{rng.choice(WORDS).title()} "
              f"{rng.choice(WORDS).title()}", rng.choice(WORDS), None) for j in contacts],
        )  # fmt: skip
        conn.executemany(
            "INSERT OR IGNORE INTO wm_identity VALUES (?,?,?)",
            [(OWNER, f"{j[:-15]}.0:{d}", rng.randbytes(33)) for j in contacts for d in (0, 1)],
        )
        n_sessions = max(20, int(target_bytes * SHARES["session"] / 3600))
        conn.executemany(
            "INSERT OR IGNORE INTO wm_session VALUES (?,?,?)",
            [(OWNER, f"{rng.choice(contacts)[:-15]}.0:{rng.randrange(1, 40)}",
              _session_record(rng)) for _ in range(n_sessions)],
        )  # fmt: skip
        groups = [
            f"{rng.randrange(10**17, 10**18)}@g.us" for _ in range(max(5, len(contacts) // 20))
        ]
        n_sender = max(20, int(target_bytes * SHARES["sender_key"] / 700))
        conn.executemany(
            "INSERT OR IGNORE INTO wm_sender_key VALUES (?,?,?,?)",
            [(OWNER, rng.choice(groups), f"{rng.choice(contacts)[:-15]}:0",
              rng.randbytes(rng.randint(300, 1100))) for _ in range(n_sender)],
        )  # fmt: skip
        conn.execute("COMMIT")
        # Messages (and the secrets of some) in time order, until the file is big enough.
        ts, chats = 1600000000, contacts + groups
        while (size := _size(conn)) < target_bytes:
            conn.execute("BEGIN")
            msgs, secrets = [], []
            for _ in range(max(50, min(2000, (target_bytes - size) // 700))):  # ~700 B each
                ts += rng.randint(1, 90)
                chat, mid = rng.choice(chats), _msg_id(rng)
                sender = rng.choice(contacts)
                kind = rng.choice(("text", "text", "text", "image", "reaction"))
                msgs.append((chat, mid, sender, int(rng.random() < 0.4), ts, kind, _body(rng)))
                if rng.randrange(SECRET_EVERY) == 0:
                    secrets.append((OWNER, chat, sender, mid, rng.randbytes(32)))
            conn.executemany("INSERT OR IGNORE INTO gows_message VALUES (?,?,?,?,?,?,?)", msgs)
            conn.executemany("INSERT OR IGNORE INTO wm_message_secret VALUES (?,?,?,?,?)", secrets)
            conn.execute("COMMIT")
        conn.execute("PRAGMA journal_mode = WAL")  # as GOWS opens it
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        for t in tables:
            counts[t] = int(conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0])
    finally:
        conn.close()
    return counts


def _churn(path: str, rate: float, busy_ms: int, seed: int, stop: Event, out: Connection) -> None:
    """The writer process: paced transactions until ``stop``; sends its counts."""
    rng = random.Random(seed)
    counts = {"transactions": 0, "messages": 0, "session_updates": 0, "secrets": 0,
              "errors": 0, "busy": 0}  # fmt: skip
    conn = sqlite3.connect(path, isolation_level=None, timeout=busy_ms / 1000)
    try:
        conn.execute(f"PRAGMA busy_timeout = {busy_ms}")
        conn.execute("PRAGMA synchronous = NORMAL")
        sessions = [r[0] for r in conn.execute("SELECT rowid FROM wm_session")]
        chats = [r[0] for r in conn.execute("SELECT jid FROM wm_contact")]
        ts = int(conn.execute("SELECT coalesce(max(ts), 0) FROM gows_message").fetchone()[0])
        out.send("ready")
        t0, i = time.monotonic(), 0
        while not stop.is_set():
            wait = t0 + i / rate - time.monotonic()
            if wait > 0 and stop.wait(wait):
                break
            i += 1
            chat, mid, ts = rng.choice(chats), _msg_id(rng), ts + 1
            try:
                conn.execute("BEGIN IMMEDIATE")
                conn.execute(
                    "INSERT OR IGNORE INTO gows_message VALUES (?,?,?,?,?,?,?)",
                    (chat, mid, chat, 0, ts, "text", _body(rng)),
                )
                conn.execute(
                    "UPDATE wm_session SET record = ? WHERE rowid = ?",
                    (_session_record(rng), rng.choice(sessions)),
                )
                conn.execute(
                    "INSERT OR IGNORE INTO wm_message_secret VALUES (?,?,?,?,?)",
                    (OWNER, chat, chat, mid, rng.randbytes(32)),
                )
                conn.execute("COMMIT")
            except sqlite3.Error as exc:
                counts["errors"] += 1
                counts["busy"] += "locked" in str(exc) or "busy" in str(exc)
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                continue
            counts["transactions"] += 1
            counts["messages"] += 1
            counts["session_updates"] += 1
            counts["secrets"] += 1
    finally:
        conn.close()
        out.send(counts)


class GowsChurn:
    """A whatsmeow-like writer on ``path`` in a process of its own (see the module doc)."""

    def __init__(
        self, path: Path, tx_per_second: float, busy_timeout_ms: int = 30000, seed: int = 0
    ) -> None:
        self.path = path
        self.rate = tx_per_second
        self.busy_ms = busy_timeout_ms
        self.seed = seed
        ctx = multiprocessing.get_context("spawn")
        self._stop = ctx.Event()
        self._recv, send = ctx.Pipe(duplex=False)
        self._proc = ctx.Process(
            target=_churn,
            args=(str(path), tx_per_second, busy_timeout_ms, seed, self._stop, send),
            daemon=True,
        )

    @property
    def pid(self) -> int | None:
        return self._proc.pid

    def start(self, timeout: float = 60) -> GowsChurn:
        """Start the writer; returns once it has opened the database (its clock starts then).
        Raises ``RuntimeError`` when it does not get there within ``timeout`` seconds."""
        self._proc.start()
        if not self._recv.poll(timeout) or self._recv.recv() != "ready":
            self._proc.kill()
            raise RuntimeError(f"churn writer did not start (exit {self._proc.exitcode})")
        return self

    def stop(self, timeout: float = 60) -> dict[str, int]:
        """Stop the writer; its counts (transactions, messages, session_updates, secrets,
        errors, busy). Raises ``RuntimeError`` when the process died without reporting."""
        self._stop.set()
        if not self._recv.poll(timeout):
            self._proc.kill()
            raise RuntimeError(f"churn writer gave no counts (exit {self._proc.exitcode})")
        counts: dict[str, int] = self._recv.recv()
        self._proc.join(timeout)
        return counts

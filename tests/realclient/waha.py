"""WAHA's own layout around its sessions: the main database, session folders, their config.

Layout (``WAHA_NAMESPACE`` = ``namespace``): ``{namespace}/waha.sqlite3`` (SQLite in WAL mode,
busy timeout 5000 ms; tables ``me``, ``session_worker``, ``api_key``) and one folder per session,
``{session namespace}/{session}/``, holding the engine's files and WAHA's
``.waha.session.config.json`` (written atomically: a temp file, then a rename). With
``WAHA_NAMESPACE=all`` the database lives in ``all/`` and every session in its own namespace.
WAHA's logout empties a session folder except its ``.waha.session.*`` files. The table columns
here are ours; what matters to waha-sync is a live WAL database beside the session folders.
No pytest import: bench code uses it too.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import sqlite3
import threading
import time
from pathlib import Path

WAHA_BUSY_TIMEOUT_MS = 5000
CONFIG_NAME = ".waha.session.config.json"

_DDL = (
    "CREATE TABLE IF NOT EXISTS me (id TEXT PRIMARY KEY, jid TEXT, lid TEXT,"
    " push_name TEXT, updated_at INTEGER NOT NULL)",
    "CREATE TABLE IF NOT EXISTS session_worker (id TEXT PRIMARY KEY, worker TEXT NOT NULL,"
    " status TEXT NOT NULL, config TEXT NOT NULL, updated_at INTEGER NOT NULL)",
    "CREATE TABLE IF NOT EXISTS api_key (id TEXT PRIMARY KEY, key_hash TEXT NOT NULL,"
    " session TEXT, is_active BOOLEAN NOT NULL, created_at INTEGER NOT NULL)",
)


def open_waha_db(path: Path) -> sqlite3.Connection:
    """A connection as WAHA opens ``waha.sqlite3``: WAL, busy timeout 5000 ms, autocommit."""
    conn = sqlite3.connect(path, timeout=WAHA_BUSY_TIMEOUT_MS / 1000, isolation_level=None)
    conn.execute(f"PRAGMA busy_timeout={WAHA_BUSY_TIMEOUT_MS}")
    conn.execute("PRAGMA journal_mode=WAL")
    return conn


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``path`` as write-file-atomic does: ``<name>.<number>`` beside it, fsync, rename."""
    tmp = path.with_name(f"{path.name}.{random.getrandbits(32)}")
    with tmp.open("wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    tmp.replace(path)


class WahaLayout:
    """One WAHA sessions directory: ``root`` is what WAHA calls ``/app/.sessions``."""

    def __init__(self, root: Path, namespace: str = "default") -> None:
        self.root = root
        self.namespace = namespace
        self.db_path = root / namespace / "waha.sqlite3"
        self.sessions: dict[str, Path] = {}

    def create(self, api_keys: int = 3) -> WahaLayout:
        """Create ``waha.sqlite3`` with its tables and ``api_keys`` keys; returns self."""
        self.db_path.parent.mkdir(parents=True, exist_ok=True)
        conn = open_waha_db(self.db_path)
        try:
            for ddl in _DDL:
                conn.execute(ddl)
            now = int(time.time())
            conn.executemany(
                "INSERT OR REPLACE INTO api_key VALUES (?,?,?,?,?)",
                [(f"key_{i}", os.urandom(64).hex(), None, True, now) for i in range(api_keys)],
            )
        finally:
            conn.close()
        return self

    def session_dir(self, name: str, session_namespace: str | None = None) -> Path:
        """``{session namespace}/{name}``; the namespace defaults to ``WAHA_NAMESPACE``, and
        must be given when that is ``all``."""
        ns = session_namespace or self.namespace
        if ns == "all":
            raise ValueError(f"session_namespace: required with WAHA_NAMESPACE=all (got {ns})")
        return self.root / ns / name

    def add_session(self, name: str, engine: str, session_namespace: str | None = None) -> Path:
        """Make the folder of session ``name``, write its config atomically and register it
        in ``session_worker`` and ``me``. Returns the folder (the engine writes into it)."""
        folder = self.session_dir(name, session_namespace)
        folder.mkdir(parents=True, exist_ok=True)
        config = {"name": name, "engine": engine.upper(), "config": {"metadata": {}}}
        write_atomic(folder / CONFIG_NAME, json.dumps(config, indent=2).encode())
        self.sessions[name] = folder
        conn = open_waha_db(self.db_path)
        try:
            now = int(time.time())
            conn.execute(
                "INSERT OR REPLACE INTO session_worker VALUES (?,?,?,?,?)",
                (name, "worker-1", "WORKING", json.dumps(config), now),
            )
            conn.execute(
                "INSERT OR REPLACE INTO me VALUES (?,?,?,?,?)",
                (name, f"{random.randrange(10**10, 10**12)}@c.us", None, name, now),
            )
        finally:
            conn.close()
        return folder

    def logout(self, name: str) -> list[str]:
        """WAHA's logout: delete everything in the session's folder except ``.waha.session.*``,
        and its ``me`` row. Returns the names deleted (sorted)."""
        folder = self.sessions[name]
        gone = []
        for entry in sorted(folder.iterdir()):
            if entry.name.startswith(".waha.session."):
                continue
            gone.append(entry.name)
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
        conn = open_waha_db(self.db_path)
        try:
            conn.execute("DELETE FROM me WHERE id = ?", (name,))
            conn.execute("UPDATE session_worker SET status = 'STOPPED' WHERE id = ?", (name,))
        finally:
            conn.close()
        return gone

    def rows(self) -> dict[str, int]:
        """``{table: rows}`` of ``waha.sqlite3`` (read-only)."""
        conn = sqlite3.connect(f"{self.db_path.as_uri()}?mode=ro", uri=True)
        try:
            return {
                t: int(conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0])
                for t in ("me", "session_worker", "api_key")
            }
        finally:
            conn.close()


class WahaDbWriter(threading.Thread):
    """WAHA's own writes to ``waha.sqlite3`` while it runs: session heartbeats, config saves.

    One autocommit statement at a time on a connection opened as WAHA does, ``rate`` per
    second, until ``stop()``; ``writes`` counts those that returned, ``errors`` the rest.
    """

    def __init__(self, layout: WahaLayout, rate: float = 50.0) -> None:
        super().__init__(daemon=True)
        self.layout = layout
        self.interval = 1.0 / rate
        self.writes = 0
        self.errors = 0
        self._halt = threading.Event()

    def run(self) -> None:
        conn = open_waha_db(self.layout.db_path)
        names = list(self.layout.sessions) or ["default"]
        try:
            while not self._halt.is_set():
                name = names[self.writes % len(names)]
                try:
                    conn.execute(
                        "UPDATE session_worker SET updated_at = ?, status = ? WHERE id = ?",
                        (time.time_ns(), "WORKING", name),
                    )
                    self.writes += 1
                except sqlite3.Error:
                    self.errors += 1
                time.sleep(self.interval)
        finally:
            conn.close()

    def stop(self) -> None:
        self._halt.set()
        self.join(10)

"""Generators for WAHA-like session trees, shared by the tests and bench/.

Layout as WAHA >= 2025 writes it: ``{ns}/waha.sqlite3`` (SQLite, WAL) and
``{ns}/{session}/`` per session; a NOWEB session holds ``creds.json`` and many
small ``pre-key-N.json``, ``session-*.json`` and ``app-state-sync-*.json``.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import random
import sqlite3
import threading
import time
from pathlib import Path


def _key(rng: random.Random, n: int = 32) -> str:
    return base64.b64encode(rng.randbytes(n)).decode()


def write_json(path: Path, obj: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=2))


def make_noweb_session(folder: Path, prekeys: int = 800, seed: int = 0) -> None:
    """A NOWEB (Baileys) session: creds.json plus key files, as Baileys names them."""
    rng = random.Random(seed)
    creds = {
        "noiseKey": {"private": _key(rng), "public": _key(rng)},
        "signedIdentityKey": {"private": _key(rng), "public": _key(rng)},
        "registrationId": rng.randint(1, 16380),
        "advSecretKey": _key(rng),
        "me": {"id": f"{rng.randint(10**10, 10**11)}:1@s.whatsapp.net", "name": "Test"},
        "account": {"details": _key(rng, 120), "accountSignature": _key(rng, 64)},
        "platform": "android",
    }
    write_json(folder / "creds.json", creds)
    for n in range(1, prekeys + 1):
        write_json(folder / f"pre-key-{n}.json", {"private": _key(rng), "public": _key(rng)})
    for n in range(prekeys // 20 + 1):
        write_json(
            folder / f"session-{rng.randint(10**10, 10**11)}.{n}.json",
            {"_sessions": {_key(rng, 33): {"registrationId": n, "chain": _key(rng, 200)}}},
        )
    for n in range(prekeys // 40 + 1):
        write_json(
            folder / f"app-state-sync-key-{_key(rng, 6).replace('/', '_')}.json",
            {"keyData": _key(rng), "fingerprint": {"rawId": n}, "timestamp": n},
        )


def make_sqlite(path: Path, rows: int = 100) -> None:
    """A SQLite database in WAL mode with some rows, like WAHA's waha.sqlite3 or gows.db."""
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("CREATE TABLE IF NOT EXISTS events (id INTEGER PRIMARY KEY, body TEXT)")
    conn.executemany("INSERT INTO events (body) VALUES (?)", [(f"row {i}",) for i in range(rows)])
    conn.commit()
    conn.close()


class SqliteWriter(threading.Thread):
    """Inserts one row per transaction into a WAL database until stopped.

    ``committed`` is the highest id whose COMMIT has returned.
    """

    def __init__(self, path: Path, rate_per_s: float = 200.0) -> None:
        super().__init__(daemon=True)
        self.path = path
        self.interval = 1.0 / rate_per_s
        self.committed = 0
        self._stop_event = threading.Event()

    def run(self) -> None:
        conn = sqlite3.connect(self.path, timeout=30)
        conn.execute("PRAGMA journal_mode=WAL")
        while not self._stop_event.is_set():
            cur = conn.execute("INSERT INTO events (body) VALUES (?)", ("x" * 200,))
            conn.commit()
            self.committed = int(cur.lastrowid or 0)
            time.sleep(self.interval)
        conn.close()

    def stop(self) -> None:
        self._stop_event.set()
        self.join(timeout=10)


def make_edge_cases(root: Path, outside: Path, max_bytes: int) -> dict[str, str]:
    """Awkward files; returns {relative path: expectation} ("stored" or "skipped")."""
    expect: dict[str, str] = {}
    deep = root / "default" / "a" / "b" / "c" / "d" / "e" / "f"
    deep.mkdir(parents=True, exist_ok=True)
    (deep / "deep.json").write_text('{"deep": true}')
    expect["default/a/b/c/d/e/f/deep.json"] = "stored"
    (root / "default" / "ünïcødé sessiön.json").write_text('{"name": "✓"}')
    expect["default/ünïcødé sessiön.json"] = "stored"
    (root / "default" / "with space.bin").write_bytes(os.urandom(3000))
    expect["default/with space.bin"] = "stored"
    (root / "default" / "empty.txt").write_bytes(b"")
    expect["default/empty.txt"] = "stored"
    secret = root / "default" / "private.key"
    secret.write_bytes(b"k" * 64)
    secret.chmod(0o600)
    expect["default/private.key"] = "stored"
    (root / "default" / "big.bin").write_bytes(os.urandom(max_bytes + 1))
    expect["default/big.bin"] = "skipped"
    outside.write_text("outside the tree")
    (root / "default" / "escape.json").symlink_to(outside)
    expect["default/escape.json"] = "skipped"
    return expect


def tree_digest(
    root: Path, ignore: tuple[str, ...] = (".waha-sync",)
) -> dict[str, tuple[str, int]]:
    """{relative path: (sha256, permission bits)} of every regular file, symlinks left out."""
    out: dict[str, tuple[str, int]] = {}
    for folder, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if d not in ignore]
        for name in files:
            path = Path(folder, name)
            if path.is_symlink():
                continue
            rel = path.relative_to(root).as_posix()
            out[rel] = (hashlib.sha256(path.read_bytes()).hexdigest(), path.stat().st_mode & 0o7777)
    return out

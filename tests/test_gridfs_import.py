"""``waha-sync import-gridfs``: real BSON dumps in GridFS's layout into the real database.

The dumps are written with pymongo's own ``bson`` exactly as ``mongodump`` lays a bucket
out (``<db>/fs.files.bson`` and ``<db>/fs.chunks.bson``, or ``.bson.gz`` for ``--gzip``);
every import is checked by restoring the instance and comparing bytes. No MongoDB server
can run here: the live path is tested against a closed port and against a tiny server
that speaks just enough of the wire protocol to refuse the login (``fake_mongo.py``).
"""

from __future__ import annotations

import gzip
import hashlib
import os
import random
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import bson
import pytest
from bson import ObjectId

from tests.support.dbtarget import DbTarget

SECRET = "m0ngo-Pa55word"
CHUNK = 255 * 1024  # GridFS's default chunk size
T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


@dataclass
class Upload:
    """One GridFS file document plus its chunks, and what to break in them."""

    filename: str
    data: bytes
    uploaded: datetime = T0
    chunk_size: int = CHUNK
    md5: bool = True
    drop: set[int] = field(default_factory=set)  # chunk numbers left out
    bad_md5: bool = False


def write_dump(root: Path, uploads: list[Upload], *, db: str = "waha", gz: bool = False) -> Path:
    """A mongodump folder holding bucket ``fs`` of database ``db``; chunks shuffled."""
    folder = root / db
    folder.mkdir(parents=True)
    files, chunks = [], []
    for up in uploads:
        oid = ObjectId()
        doc: dict[str, object] = {
            "_id": oid,
            "length": len(up.data),
            "chunkSize": up.chunk_size,
            "uploadDate": up.uploaded,
            "filename": up.filename,
        }
        if up.md5:
            summed = up.data + (b"x" if up.bad_md5 else b"")
            doc["md5"] = hashlib.md5(summed, usedforsecurity=False).hexdigest()
        files.append(doc)
        for n, start in enumerate(range(0, len(up.data), up.chunk_size)):
            if n not in up.drop:
                piece = up.data[start : start + up.chunk_size]
                chunks.append({"_id": ObjectId(), "files_id": oid, "n": n, "data": piece})
    random.Random(7).shuffle(chunks)  # a dump follows the collection's order, not n's
    for name, docs in (("fs.files", files), ("fs.chunks", chunks)):
        raw = b"".join(bson.encode(d) for d in docs)
        if gz:
            (folder / f"{name}.bson.gz").write_bytes(gzip.compress(raw))
        else:
            (folder / f"{name}.bson").write_bytes(raw)
    (folder / "fs.files.metadata.json").write_text('{"indexes": []}')  # as mongodump writes
    return root


def sqlite_file(path: Path, rows: int) -> bytes:
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE m (id INTEGER PRIMARY KEY, body TEXT)")
    conn.executemany("INSERT INTO m (body) VALUES (?)", [(f"message {i}",) for i in range(rows)])
    conn.commit()
    conn.close()
    return path.read_bytes()


def rows(path: Path) -> list[tuple[object, ...]]:
    conn = sqlite3.connect(path)
    try:
        return conn.execute("SELECT * FROM m ORDER BY id").fetchall()
    finally:
        conn.close()


def run_import(db: DbTarget, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    code = db.cli("import-gridfs", *args)
    return code, capsys.readouterr().out


def restored(db: DbTarget, into: Path, instance: str = "default") -> dict[str, bytes]:
    assert (
        db.cli("restore", "--read-only", "--instance", instance, "--sessions-dir", str(into)) == 0
    )
    return {
        str(p.relative_to(into)): p.read_bytes()
        for p in into.rglob("*")
        if p.is_file() and ".waha-sync" not in p.parts
    }


def test_newest_versions_verified_and_bad_files_refused(
    db: DbTarget, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    big = random.Random(1).randbytes(20 * 1024 * 1024)  # 20 MiB: 81 chunks
    gows = sqlite_file(tmp_path / "gows.db", 3000)
    newest = b'{"me": "alice", "v": 3}'
    uploads = [
        Upload("default/noweb/creds.json", b'{"me": "alice", "v": 1}', T0),
        Upload("default/noweb/creds.json", newest, T0 + timedelta(hours=2)),
        Upload("default/noweb/creds.json", b'{"me": "alice", "v": 2}', T0 + timedelta(hours=1)),
        Upload("default/noweb/pre-key-1.json", b'{"k": 1}', md5=False),  # md5 is optional
        Upload("gows/default/gows.db", gows, chunk_size=4096),
        Upload("media/big.bin", big),
        Upload(
            "default/noweb/app-state.json",
            b'{"a": "' + b"z" * 9000 + b'"}',
            chunk_size=4096,
            drop={1},
        ),
        Upload("default/noweb/old-version-fine.json", b"{}", T0),
        Upload(
            "default/noweb/old-version-fine.json",
            b'{"x": 1' + b"}" * 3,
            T0 + timedelta(1),
            drop={0},
        ),  # the newest is broken: refused, never an older one instead
        Upload("../escape.json", b'{"evil": true}'),
        Upload("default/../../../etc/cron.d/evil", b"* * * * * root true"),
        Upload("default/noweb/tampered.json", b'{"t": 1}', bad_md5=True),
        Upload("", b"{}"),
        Upload(".waha-sync/restored.json", b'{"i": "not our marker"}'),
    ]
    dump = write_dump(tmp_path / "dump", uploads)
    code, out = run_import(db, capsys, "--dump", str(dump), "--max-file-bytes", str(32 << 20))
    assert code == 1, out  # something was refused: the rest is committed, the exit says so
    assert "refused default/noweb/app-state.json: missing chunk n=1 of 3" in out
    assert "refused default/noweb/old-version-fine.json: missing chunk n=0 of 1" in out
    assert "refused ../escape.json: outside the sessions tree (contains '..')" in out
    assert "refused default/../../../etc/cron.d/evil: outside the sessions tree" in out
    assert "refused default/noweb/tampered.json: md5 " in out and "does not match" in out
    assert "refused (no name, _id " in out
    assert "refused .waha-sync/restored.json: .waha-sync/ is reserved for waha-sync" in out
    assert "imported media/big.bin (20.0 MiB)" in out
    assert "; 7 refused; 3 older versions ignored; commit " in out
    assert (
        not (tmp_path / "escape.json").exists() and not (tmp_path.parent / "escape.json").exists()
    )

    got = restored(db, tmp_path / "back")
    assert sorted(got) == [
        "default/noweb/creds.json",
        "default/noweb/pre-key-1.json",
        "gows/default/gows.db",
        "media/big.bin",
    ]
    assert got["default/noweb/creds.json"] == newest
    assert got["default/noweb/pre-key-1.json"] == b'{"k": 1}'
    assert got["media/big.bin"] == big
    # SQLite goes through push's snapshot (backup API + quick_check): same rows.
    assert rows(tmp_path / "back" / "gows/default/gows.db") == rows(tmp_path / "gows.db")
    stored = db.sql("SELECT count(*) FROM waha_sync_commits WHERE instance = 'default'")
    assert stored == [[1]]  # one commit


def test_gzip_dump_with_prefix_exits_0_and_force_rules(
    plain_db: DbTarget, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    files = {
        "default/noweb/creds.json": b'{"me": "bob"}',
        "default/noweb/session-1.json": b'{"s": 1}',
        "work/noweb/creds.json": b'{"me": "carol"}',
    }
    dump = write_dump(
        tmp_path / "dump",
        [Upload(f"/app/.sessions/{k}", v, chunk_size=5) for k, v in files.items()],
        db="seed",
        gz=True,
    )
    # An instance holding data is not overwritten without --force (exit 2, as push).
    seed = tmp_path / "seed"
    (seed / "old").mkdir(parents=True)
    (seed / "old" / "gone.json").write_text("{}")
    assert plain_db.cli("push", "--sessions-dir", str(seed)) == 0
    args = ("--dump", str(dump), "--strip-prefix", "/app/.sessions/")
    code, out = run_import(plain_db, capsys, *args)
    assert code == 2, out
    assert restored(plain_db, tmp_path / "kept") == {"old/gone.json": b"{}"}
    code, out = run_import(plain_db, capsys, *args, "--force")
    assert code == 0, out
    assert "3 files imported" in out and "0 refused" in out
    assert restored(plain_db, tmp_path / "back") == files  # the stored tree is replaced
    # Without the prefix every name is refused, and nothing is committed at all.
    code, out = run_import(
        plain_db, capsys, "--dump", str(dump), "--strip-prefix", "/x/", "--force"
    )
    assert code == 1 and out.count("does not start with --strip-prefix '/x/'") == 3, out
    assert restored(plain_db, tmp_path / "again") == files


def test_dump_usage_errors_exit_2(
    plain_db: DbTarget, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_import(plain_db, capsys, "--dump", str(tmp_path / "none"))[0] == 2
    write_dump(tmp_path / "two", [Upload("a.json", b"{}")], db="one")
    write_dump(tmp_path / "two", [Upload("a.json", b"{}")], db="other")
    assert run_import(plain_db, capsys, "--dump", str(tmp_path / "two"))[0] == 2
    code, out = run_import(plain_db, capsys, "--dump", str(tmp_path / "two"), "--db", "other")
    assert code == 0 and "imported a.json" in out, out
    assert run_import(plain_db, capsys, "--dump", str(tmp_path / "two"), "--bucket", "x")[0] == 2
    env_free = {k: v for k, v in os.environ.items() if k != "WHATSAPP_SESSIONS_MONGO_URL"}
    proc = subprocess.run(
        [sys.executable, "-m", "waha_sync.cli", "import-gridfs"],
        env={**env_free, "WAHA_SYNC_DATABASE_URL": plain_db.url},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2 and "no source" in proc.stderr, proc.stderr


def _cli(db: DbTarget, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "waha_sync.cli", "import-gridfs", *args],
        env=db.env(),
        capture_output=True,
        text=True,
        timeout=60,
    )


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # closed again when this returns


def test_live_refused_connection_exits_1(plain_db: DbTarget) -> None:
    began = time.monotonic()
    proc = _cli(plain_db, "--mongo-url", f"mongodb://waha:{SECRET}@127.0.0.1:{closed_port()}/waha")
    assert proc.returncode == 1, proc.stderr
    assert time.monotonic() - began < 30
    assert "mongo_url: cannot read from MongoDB (got 'mongodb://waha:***@127.0.0.1:" in proc.stderr
    assert "Connection refused" in proc.stderr
    assert SECRET not in proc.stderr + proc.stdout and "Traceback" not in proc.stderr


@pytest.fixture
def fake_mongo(tmp_path: Path) -> Iterator[int]:
    port_file = tmp_path / "mongo.port"
    server = subprocess.Popen(
        [sys.executable, str(Path(__file__).parent / "support" / "fake_mongo.py"), str(port_file)]
    )
    try:
        deadline = time.monotonic() + 20
        while not (port_file.exists() and port_file.read_text()):
            assert time.monotonic() < deadline and server.poll() is None
            time.sleep(0.05)
        yield int(port_file.read_text())
    finally:
        server.kill()
        server.wait(10)


def test_live_auth_error_exits_1(plain_db: DbTarget, fake_mongo: int) -> None:
    url = f"mongodb://waha:{SECRET}@127.0.0.1:{fake_mongo}/?authSource=admin"
    proc = _cli(plain_db, "--mongo-url", url, "--db", "waha")
    assert proc.returncode == 1, proc.stderr
    assert "mongo_url: authentication failed" in proc.stderr
    assert "Try: check the user, password and authSource in --mongo-url" in proc.stderr
    assert SECRET not in proc.stderr + proc.stdout and "Traceback" not in proc.stderr
    # No database named anywhere: a usage error before any connection.
    proc = _cli(plain_db, "--mongo-url", f"mongodb://127.0.0.1:{fake_mongo}/")
    assert proc.returncode == 2 and "db: no database named" in proc.stderr, proc.stderr


def test_seed_mongo_url_from_the_environment(plain_db: DbTarget, fake_mongo: int) -> None:
    url = f"mongodb://waha:{SECRET}@127.0.0.1:{fake_mongo}/waha"
    proc = subprocess.run(
        [sys.executable, "-m", "waha_sync.cli", "import-gridfs"],
        env=plain_db.env(WHATSAPP_SESSIONS_MONGO_URL=url),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 1 and "authentication failed" in proc.stderr, proc.stderr
    assert SECRET not in proc.stderr + proc.stdout

"""SqliteFollower against real SQLite writers in separate processes.

Each writer is a child Python process driven over stdin/stdout (one JSON
command per line), so it pauses at a known commit whenever the test wants to
compare the scratch copy with the source. The busy test runs for
``FOLLOW_BUSY_SECONDS`` (default 30) on a database of ``FOLLOW_BUSY_MIB``
(default 8); ``FOLLOW_BUSY_SECONDS=180 FOLLOW_BUSY_MIB=200`` is the long run
of issue 14 (not in the suite).
"""

from __future__ import annotations

import hashlib
import json
import os
import resource
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from waha_sync.common.sync.sqlite_follow import Snapshot, SqliteFollower
from waha_sync.common.sync.wal import read_header

WRITER = r"""
import json, os, random, sqlite3, sys, time
db, page_size = sys.argv[1], int(sys.argv[2])
con = sqlite3.connect(db, isolation_level=None, timeout=0)
con.execute("PRAGMA busy_timeout=0")
if page_size:
    con.execute(f"PRAGMA page_size={page_size}")
con.execute("PRAGMA journal_mode=WAL")
rnd = random.Random(7)
msg = [0]

def schema():
    con.executescript(
        "CREATE TABLE IF NOT EXISTS sessions(their_id TEXT PRIMARY KEY, session BLOB);"
        "CREATE TABLE IF NOT EXISTS messages(id TEXT PRIMARY KEY, chat TEXT, ts INT, data BLOB);"
        "CREATE INDEX IF NOT EXISTS messages_chat ON messages(chat, ts);"
    )
    msg[0] = con.execute("SELECT count(*) FROM messages").fetchone()[0]

def tx():
    con.execute("BEGIN IMMEDIATE")
    msg[0] += 1
    con.execute("INSERT INTO messages VALUES (?,?,?,?)",
                (f"m{msg[0]}", f"chat{rnd.randrange(200)}", msg[0],
                 rnd.randbytes(rnd.randrange(200, 1200))))
    con.execute("INSERT OR REPLACE INTO sessions VALUES (?,?)",
                (f"s{rnd.randrange(500)}", rnd.randbytes(rnd.randrange(300, 700))))
    con.execute("COMMIT")

def fill(mib):
    con.execute("BEGIN")
    while True:
        for _ in range(500):
            msg[0] += 1
            con.execute("INSERT INTO messages VALUES (?,?,?,?)",
                        (f"m{msg[0]}", f"chat{rnd.randrange(200)}", msg[0], rnd.randbytes(1000)))
        n = con.execute("PRAGMA page_count").fetchone()[0]
        if n * con.execute("PRAGMA page_size").fetchone()[0] >= mib * 1048576:
            break
    for i in range(500):
        con.execute("INSERT OR REPLACE INTO sessions VALUES (?,?)", (f"s{i}", rnd.randbytes(500)))
    con.execute("COMMIT")

for line in sys.stdin:
    cmd = json.loads(line)
    op = cmd["op"]
    out = {"ok": True}
    try:
        if op == "exec":
            con.executescript(cmd["script"])
        elif op == "query":
            out["rows"] = con.execute(cmd["sql"]).fetchall()
        elif op == "schema":
            schema()
        elif op == "fill":
            fill(cmd["mib"])
        elif op == "churn":
            for _ in range(cmd["n"]):
                tx()
        elif op == "busy":
            end, n, errors, first = time.monotonic() + cmd["seconds"], 0, 0, None
            while time.monotonic() < end:
                try:
                    tx()
                    n += 1
                except sqlite3.Error as exc:
                    errors += 1
                    first = first or repr(exc)
                    if con.in_transaction:
                        con.execute("ROLLBACK")
                time.sleep(cmd["pause"])
            out.update(tx=n, errors=errors, first=first)
        elif op == "kill":
            sys.stdout.write(json.dumps(out) + "\n")
            sys.stdout.flush()
            os._exit(0)  # no close: the WAL stays as a crash leaves it
        elif op == "quit":
            con.close()
            sys.stdout.write(json.dumps(out) + "\n")
            sys.stdout.flush()
            break
    except Exception as exc:
        out = {"ok": False, "error": repr(exc)}
    sys.stdout.write(json.dumps(out) + "\n")
    sys.stdout.flush()
"""


class Writer:
    """A SQLite writer in another process, paused between commands."""

    def __init__(self, db: Path, page_size: int = 0) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", WRITER, str(db), str(page_size)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    def do(self, op: str, **kw: Any) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps({"op": op, **kw}) + "\n")
        self.proc.stdin.flush()
        out: dict[str, Any] = json.loads(self.proc.stdout.readline())
        assert out["ok"], out
        return out

    def exec(self, script: str) -> None:
        self.do("exec", script=script)

    def query(self, sql: str) -> list[list[Any]]:
        rows: list[list[Any]] = self.do("query", sql=sql)["rows"]
        return rows

    def close(self) -> None:
        if self.proc.poll() is None:
            self.do("quit")
        self.proc.wait(timeout=30)


@pytest.fixture
def writer_factory(tmp_path: Path) -> Iterator[Any]:
    made: list[Writer] = []

    def make(name: str = "gows.db", page_size: int = 0) -> Writer:
        w = Writer(tmp_path / name, page_size)
        made.append(w)
        return w

    yield make
    for w in made:
        if w.proc.poll() is None:
            w.proc.kill()
        w.proc.wait(timeout=30)


def content(path: Path | str, scratch: bool = False) -> str:
    """A digest of the schema and every row of every table (the logical content)."""
    uri = f"{Path(path).absolute().as_uri()}?mode=ro" + ("&immutable=1" if scratch else "")
    con = sqlite3.connect(uri, uri=True)
    try:
        h = hashlib.sha256()
        tables = con.execute(
            "SELECT name, sql FROM sqlite_master WHERE type='table' ORDER BY name"
        ).fetchall()
        for name, sql in tables:
            h.update(repr((name, sql)).encode())
            for row in con.execute(f'SELECT * FROM "{name}" ORDER BY rowid'):
                h.update(repr(row).encode())
        h.update(repr(con.execute("SELECT type, name, sql FROM sqlite_master").fetchall()).encode())
        return h.hexdigest()
    finally:
        con.close()


def integrity(path: str) -> str:
    con = sqlite3.connect(f"{Path(path).absolute().as_uri()}?mode=ro&immutable=1", uri=True)
    try:
        return str(con.execute("PRAGMA integrity_check").fetchone()[0])
    finally:
        con.close()


def differing_pages(before: bytes, after: Path, page_size: int) -> set[int]:
    """1-based pages of ``after`` whose bytes differ from ``before`` (or are new)."""
    now = after.read_bytes()
    out = set()
    for i in range(len(now) // page_size):
        a = now[i * page_size : (i + 1) * page_size]
        if before[i * page_size : (i + 1) * page_size] != a:
            out.add(i + 1)
    return out


class Checker:
    """Takes snapshots and checks each against the source and the previous scratch."""

    def __init__(self, db: Path, scratch: Path) -> None:
        self.db, self.scratch = db, scratch
        self.f = SqliteFollower(str(db), str(scratch))
        self.acked: bytes = b""  # scratch bytes at the last acknowledged snapshot

    def snap(self, ack: bool = True) -> Snapshot:
        s = self.f.snapshot()
        assert s.path == str(self.scratch)
        assert self.scratch.stat().st_size == s.size_bytes
        assert s.size_bytes % s.page_size == 0
        assert content(self.scratch, scratch=True) == content(self.db)
        assert integrity(s.path) == "ok"
        if s.changed_pages is not None:
            assert not s.full
            missing = differing_pages(self.acked, self.scratch, s.page_size) - s.changed_pages
            assert not missing, f"changed pages not reported: {sorted(missing)[:20]}"
        if ack:
            self.f.acknowledge(s)
            self.acked = self.scratch.read_bytes()
        return s


def test_backup_reuses_open_read_transaction(tmp_path: Path, writer_factory: Any) -> None:
    """sqlite3_backup_step copies the snapshot of the source's open read transaction."""
    w = writer_factory()
    w.exec("CREATE TABLE t(x); INSERT INTO t VALUES (1);")
    src = sqlite3.connect(f"file:{tmp_path / 'gows.db'}?mode=ro", uri=True, isolation_level=None)
    src.execute("BEGIN")
    src.execute("SELECT count(*) FROM sqlite_master").fetchone()
    w.exec("INSERT INTO t VALUES (2); INSERT INTO t VALUES (3);")  # committed after our BEGIN
    dst = sqlite3.connect(tmp_path / "copy.db")
    src.backup(dst)
    assert src.in_transaction
    src.execute("COMMIT")
    assert dst.execute("SELECT count(*) FROM t").fetchone()[0] == 1
    dst.close()
    src.close()


@pytest.mark.parametrize("page_size", [1024, 4096, 65536])
def test_follows_writes_at_page_size(tmp_path: Path, writer_factory: Any, page_size: int) -> None:
    w = writer_factory(page_size=page_size)
    w.do("schema")
    w.do("churn", n=50)
    c = Checker(tmp_path / "gows.db", tmp_path / ".scratch")
    first = c.snap()
    assert first.full and first.changed_pages is None and first.page_size == page_size
    for _ in range(4):
        w.do("churn", n=30)
        w.exec("DELETE FROM messages WHERE rowid % 7 = 0;")
        s = c.snap()
        assert not s.full and c.f.last_kind in ("incremental", "bridged")
        assert s.changed_pages
    same = c.snap()
    assert not same.full and same.changed_pages == frozenset()
    c.f.close()
    assert not (tmp_path / ".scratch").exists()


def test_one_row_update_reports_few_pages(tmp_path: Path, writer_factory: Any) -> None:
    w = writer_factory()
    w.do("schema")
    w.do("fill", mib=4)
    c = Checker(tmp_path / "gows.db", tmp_path / ".scratch")
    s = c.snap()
    pages = s.size_bytes // s.page_size
    w.exec("UPDATE sessions SET session = x'0102' WHERE their_id = 's7';")
    s = c.snap()
    assert s.changed_pages is not None and 1 <= len(s.changed_pages) <= 4, s.changed_pages
    assert pages > 900


def test_unacknowledged_changes_accumulate(tmp_path: Path, writer_factory: Any) -> None:
    w = writer_factory()
    w.do("schema")
    w.do("fill", mib=2)
    c = Checker(tmp_path / "gows.db", tmp_path / ".scratch")
    c.snap()
    w.exec("UPDATE sessions SET session = x'01' WHERE their_id = 's1';")
    b = c.snap(ack=False)  # the caller's upload failed
    w.exec("UPDATE sessions SET session = x'02' WHERE their_id = 's400';")
    d = c.snap(ack=False)  # checked against the last acknowledged state
    assert b.changed_pages is not None and d.changed_pages is not None
    assert b.changed_pages < d.changed_pages
    c.f.acknowledge(b)  # an older one: what changed after it stays reported
    e = c.f.snapshot()
    assert e.changed_pages is not None and e.changed_pages <= d.changed_pages
    assert e.changed_pages  # the second update is still unacknowledged
    c.f.acknowledge(e)
    assert c.f.snapshot().changed_pages == frozenset()


def test_vacuum_shrink_and_growth(tmp_path: Path, writer_factory: Any) -> None:
    w = writer_factory()
    w.do("schema")
    w.do("fill", mib=3)
    w.exec("PRAGMA wal_autocheckpoint=0;")
    c = Checker(tmp_path / "gows.db", tmp_path / ".scratch")
    big = c.snap().size_bytes
    w.exec("VACUUM;")  # every page rewritten through the WAL
    c.snap()
    w.exec("DELETE FROM messages WHERE rowid % 4 != 0; VACUUM;")
    small = c.snap()
    assert small.size_bytes < big / 2 and not small.full
    w.do("churn", n=200)
    w.exec("INSERT INTO messages SELECT id || 'x', chat, ts, data FROM messages;")
    grown = c.snap()
    assert grown.size_bytes > small.size_bytes and not grown.full


@pytest.mark.parametrize("mode", ["FULL", "INCREMENTAL"])
def test_auto_vacuum(tmp_path: Path, writer_factory: Any, mode: str) -> None:
    w = writer_factory()
    w.exec(f"PRAGMA auto_vacuum={mode}; VACUUM; PRAGMA wal_autocheckpoint=0;")
    assert w.query("PRAGMA auto_vacuum") == [[1 if mode == "FULL" else 2]]
    w.do("schema")
    w.do("fill", mib=2)
    c = Checker(tmp_path / "gows.db", tmp_path / ".scratch")
    before = c.snap().size_bytes
    w.exec("DELETE FROM messages WHERE rowid % 3 != 0;")
    if mode == "INCREMENTAL":
        w.exec("PRAGMA incremental_vacuum(100);")
    after = c.snap()
    assert after.size_bytes < before and not after.full
    w.do("churn", n=100)
    w.exec("PRAGMA incremental_vacuum;" if mode == "INCREMENTAL" else "SELECT 1;")
    c.snap()


def test_checkpoint_restart_is_bridged(tmp_path: Path, writer_factory: Any) -> None:
    """RESTART between two snapshots, the new log shorter than our position: no full copy."""
    w = writer_factory()
    w.exec("PRAGMA wal_autocheckpoint=0;")
    w.do("schema")
    w.do("churn", n=300)
    c = Checker(tmp_path / "gows.db", tmp_path / ".scratch")
    c.snap()
    w.do("churn", n=20)  # old generation grows past our position
    w.query("PRAGMA wal_checkpoint(RESTART)")
    w.do("churn", n=3)  # new generation overwrites only the first frames
    s = c.snap()
    assert not s.full and c.f.last_kind == "bridged"
    # and the old generation ending exactly at our position
    w.query("PRAGMA wal_checkpoint(RESTART)")
    w.do("churn", n=2)
    s = c.snap()
    assert not s.full and c.f.last_kind == "bridged"


def test_checkpoint_restart_overwriting_our_position_is_full(
    tmp_path: Path, writer_factory: Any
) -> None:
    w = writer_factory()
    w.exec("PRAGMA wal_autocheckpoint=0;")
    w.do("schema")
    w.do("churn", n=10)
    c = Checker(tmp_path / "gows.db", tmp_path / ".scratch")
    c.snap()
    w.do("churn", n=5)
    w.query("PRAGMA wal_checkpoint(RESTART)")
    w.do("churn", n=100)  # the new generation wrote past our position
    s = c.snap()
    assert s.full and s.changed_pages is None


def test_checkpoint_truncate_is_full(tmp_path: Path, writer_factory: Any) -> None:
    w = writer_factory()
    w.exec("PRAGMA wal_autocheckpoint=0;")
    w.do("schema")
    w.do("churn", n=50)
    c = Checker(tmp_path / "gows.db", tmp_path / ".scratch")
    c.snap()
    w.do("churn", n=5)
    w.query("PRAGMA wal_checkpoint(TRUNCATE)")
    assert (tmp_path / "gows.db-wal").stat().st_size == 0
    idle = c.snap()  # empty log: the frames after our position are gone
    assert idle.full
    w.do("churn", n=2)
    s = c.snap()
    assert s.full  # a log that restarted from empty cannot be bridged


def test_truncate_then_short_new_log_is_full(tmp_path: Path, writer_factory: Any) -> None:
    """TRUNCATE dropped frames after our position; the new log ends before it: not bridged."""
    w = writer_factory()
    w.exec("PRAGMA wal_autocheckpoint=0;")
    w.do("schema")
    w.do("churn", n=100)
    c = Checker(tmp_path / "gows.db", tmp_path / ".scratch")
    c.snap()
    w.do("churn", n=10)  # checkpointed into the database, then the log is emptied
    w.query("PRAGMA wal_checkpoint(TRUNCATE)")
    w.do("churn", n=2)
    s = c.snap()  # content checked: a bridge would have lost the 10 transactions
    assert s.full


def test_autocheckpoint_between_snapshots(tmp_path: Path, writer_factory: Any) -> None:
    w = writer_factory()
    w.exec("PRAGMA wal_autocheckpoint=40;")
    w.do("schema")
    w.do("churn", n=20)
    c = Checker(tmp_path / "gows.db", tmp_path / ".scratch")
    c.snap()
    kinds = []
    for n in (3, 8, 15, 60, 5, 200, 2):
        w.do("churn", n=n)
        c.snap()
        kinds.append(c.f.last_kind)
    assert "bridged" in kinds and "incremental" in kinds, kinds


def _stage_torn(tmp_path: Path, writer_factory: Any) -> tuple[Path, Path, int, int]:
    """A crashed writer's log with transactions a, b, c (c spans several frames).

    Returns the database, its WAL, the WAL's size after a, and the frame size.
    """
    w = writer_factory()
    w.exec("PRAGMA wal_autocheckpoint=0; CREATE TABLE t(k TEXT, v BLOB);")
    w.exec("INSERT INTO t VALUES ('a', randomblob(100));")
    db, wal = tmp_path / "gows.db", tmp_path / "gows.db-wal"
    after_a = wal.stat().st_size
    w.exec("INSERT INTO t VALUES ('b', randomblob(100));")
    w.exec("INSERT INTO t VALUES ('c', randomblob(20000));")
    w.do("kill")  # no close: the WAL and its frames stay
    w.proc.wait(timeout=30)
    fd = os.open(wal, os.O_RDONLY)
    hdr = read_header(fd)
    os.close(fd)
    assert hdr is not None and wal.stat().st_size > after_a
    return db, wal, after_a, hdr.frame_bytes()


def _rows(path: str) -> list[str]:
    con = sqlite3.connect(f"{Path(path).absolute().as_uri()}?mode=ro&immutable=1", uri=True)
    try:
        return [r[0] for r in con.execute("SELECT k FROM t ORDER BY rowid")]
    finally:
        con.close()


@pytest.mark.parametrize("how", ["truncated", "garbage"])
def test_torn_last_frame(tmp_path: Path, writer_factory: Any, how: str) -> None:
    db, wal, after_a, frame = _stage_torn(tmp_path, writer_factory)
    shm = tmp_path / "gows.db-shm"
    last = wal.stat().st_size - frame  # the commit frame of transaction c
    if how == "truncated":
        os.truncate(wal, last + frame // 2)
    else:
        with wal.open("r+b") as fh:
            fh.seek(last + 16)
            fh.write(b"\xde\xad\xbe\xef\xde\xad\xbe\xef")  # its checksum
    torn = wal.read_bytes()
    shm.unlink()  # as after a reboot: SQLite recovers the index from the log
    f = SqliteFollower(str(db), str(tmp_path / ".scratch"))
    s = f.snapshot()  # a full sync replays only the intact commits
    assert s.full and _rows(s.path) == ["a", "b"] and integrity(s.path) == "ok"
    f.close()
    # incrementally: a follower that stood after a applies b, and none of c
    wal.write_bytes(torn[:after_a])
    shm.unlink()
    g = SqliteFollower(str(db), str(tmp_path / ".scratch"))
    g.acknowledge(first := g.snapshot())
    assert _rows(first.path) == ["a"]
    wal.write_bytes(torn)
    s = g.snapshot()
    assert not s.full and g.last_kind == "incremental"
    assert _rows(s.path) == ["a", "b"] and integrity(s.path) == "ok"
    assert s.changed_pages
    g.close()


def test_close_leaves_application_wal(tmp_path: Path, writer_factory: Any) -> None:
    """WAHA stopped with frames in its WAL; our read-only connection is the last: no checkpoint."""
    w = writer_factory()
    w.exec("PRAGMA wal_autocheckpoint=0;")
    w.do("schema")
    w.do("churn", n=40)
    w.do("kill")
    w.proc.wait(timeout=30)
    db, wal = tmp_path / "gows.db", tmp_path / "gows.db-wal"
    before = (db.read_bytes(), wal.read_bytes())
    assert len(before[1]) > 32
    f = SqliteFollower(str(db), str(tmp_path / ".scratch"))
    s = f.snapshot()
    assert content(s.path, scratch=True) != ""
    f.close()
    assert (db.read_bytes(), wal.read_bytes()) == before


def test_rollback_journal_database_is_copied_whole(tmp_path: Path) -> None:
    db = tmp_path / "noweb.sqlite3"
    con = sqlite3.connect(db, isolation_level=None)
    con.execute("CREATE TABLE t(x)")
    con.execute("INSERT INTO t VALUES (1)")
    f = SqliteFollower(str(db), str(tmp_path / ".scratch"))
    f.acknowledge(first := f.snapshot())
    assert first.full
    assert f.snapshot().changed_pages == frozenset()  # untouched file: nothing to copy
    con.execute("INSERT INTO t VALUES (2)")
    s = f.snapshot()
    assert s.full and _count(s.path) == 2
    con.close()
    f.close()


def _count(path: str) -> int:
    con = sqlite3.connect(f"{Path(path).absolute().as_uri()}?mode=ro&immutable=1", uri=True)
    try:
        return int(con.execute("SELECT count(*) FROM t").fetchone()[0])
    finally:
        con.close()


def test_errors(tmp_path: Path) -> None:
    f = SqliteFollower(str(tmp_path / "missing.db"), str(tmp_path / ".scratch"))
    with pytest.raises(FileNotFoundError):
        f.snapshot()
    bad = tmp_path / "bad.db"
    bad.write_bytes(b"not a database at all" * 100)
    g = SqliteFollower(str(bad), str(tmp_path / ".scratch"))
    with pytest.raises(sqlite3.Error):
        g.snapshot()
    g.close()
    g.close()  # never raises


def test_busy_writer_never_sees_busy(tmp_path: Path, writer_factory: Any) -> None:
    seconds = float(os.environ.get("FOLLOW_BUSY_SECONDS", "30"))
    mib = int(os.environ.get("FOLLOW_BUSY_MIB", "8"))
    w = writer_factory()
    w.do("schema")
    w.do("fill", mib=mib)
    db = tmp_path / "gows.db"
    f = SqliteFollower(str(db), str(tmp_path / ".scratch"))
    f.snapshot()
    w.proc.stdin.write(json.dumps({"op": "busy", "seconds": seconds, "pause": 0.005}) + "\n")  # type: ignore[union-attr]
    w.proc.stdin.flush()  # type: ignore[union-attr]
    kinds: dict[str, int] = {}
    cpu: dict[str, float] = {}
    reasons: dict[str, int] = {}
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        t0 = time.process_time()
        s = f.snapshot()
        f.acknowledge(s)
        kinds[f.last_kind] = kinds.get(f.last_kind, 0) + 1
        if s.full:
            reasons[f.last_reason] = reasons.get(f.last_reason, 0) + 1
        cpu[f.last_kind] = cpu.get(f.last_kind, 0.0) + time.process_time() - t0
        time.sleep(0.5)
    out = json.loads(w.proc.stdout.readline())  # type: ignore[union-attr]
    assert out["ok"] and out["errors"] == 0, out
    s = f.snapshot()
    assert content(s.path, scratch=True) == content(db) and integrity(s.path) == "ok"
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
    print(
        f"\nbusy: {seconds:.0f} s, {s.size_bytes / 2**20:.0f} MiB, writer {out['tx']} tx,"
        f" {out['errors']} errors; snapshots {kinds}; cpu s {cpu}; peak RSS {rss} MiB;"
        f" full syncs because {reasons}"
    )
    assert kinds.get("incremental", 0) + kinds.get("bridged", 0) > kinds.get("full", 0)
    f.close()


def test_incremental_costs_less_than_full(tmp_path: Path, writer_factory: Any) -> None:
    """CPU per snapshot: ~100 changed pages applied from the WAL vs a full copy.

    ``FOLLOW_MEASURE_MIB=150`` is the size issue 14 asks about (default 64).
    """
    mib = int(os.environ.get("FOLLOW_MEASURE_MIB", "64"))
    w = writer_factory()
    w.do("schema")
    w.do("fill", mib=mib)
    w.query("PRAGMA wal_checkpoint(TRUNCATE)")  # a short log: the full sync is the copy
    w.do("churn", n=1)
    db = tmp_path / "gows.db"
    f = SqliteFollower(str(db), str(tmp_path / ".scratch"))
    t0 = time.process_time()
    s = f.snapshot()
    full_cpu = time.process_time() - t0
    f.acknowledge(s)
    incr, changed = [], []
    for _ in range(5):
        w.do("churn", n=25)
        t0 = time.process_time()
        s = f.snapshot()
        incr.append(time.process_time() - t0)
        assert not s.full and s.changed_pages is not None
        changed.append(len(s.changed_pages))
        f.acknowledge(s)
    assert content(s.path, scratch=True) == content(db)
    incr.sort()
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
    print(
        f"\n{s.size_bytes / 2**20:.0f} MiB: full sync {full_cpu:.3f} CPU s; incremental"
        f" median {incr[2]:.4f} CPU s (max {incr[-1]:.4f}) for {changed} changed pages;"
        f" peak RSS of this process {rss} MiB"
    )
    assert incr[2] * 3 < full_cpu
    f.close()


def test_wal_checksum_equals_the_recurrence_sqlite_documents() -> None:
    """The vectorised checksum against the plain loop of the file format's description."""
    import random
    import struct

    from waha_sync.common.sync.wal import checksum

    def plain(data: bytes, s0: int, s1: int, big: bool) -> tuple[int, int]:
        for x0, x1 in struct.iter_unpack((">" if big else "<") + "2I", data):
            s0 = (s0 + x0 + s1) & 0xFFFFFFFF
            s1 = (s1 + x1 + s0) & 0xFFFFFFFF
        return s0, s1

    rng = random.Random(7)
    for size in (8, 24, 512 + 8, 4096 + 8, 65536 + 8):
        for big in (False, True):
            data = rng.randbytes(size)
            s0, s1 = rng.getrandbits(32), rng.getrandbits(32)
            assert checksum(data, s0, s1, big) == plain(data, s0, s1, big), (size, big)
    ones = b"\xff" * 4104  # every word at its largest: sums that wrap many times
    assert checksum(ones, 0xFFFFFFFF, 0xFFFFFFFF, False) == plain(ones, 2**32 - 1, 2**32 - 1, False)

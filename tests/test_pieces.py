"""Large SQLite databases stored as pieces: round trips, change cost, history, GC, crashes.

Real PostgreSQL (both modes), real SQLite writers, the real CLI; every database that is
restored is opened as WAHA opens it and compared row for row with the source.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import pytest

from tests.support.dbtarget import DbTarget, backdate
from tests.support.podsim import SidecarProc

MIB = 1024 * 1024


def fill(path: Path, mib: int, page_size: int = 4096, *, auto_vacuum: str = "NONE") -> None:
    """A WAL database of about ``mib`` MiB: a messages table plus a small sessions table."""
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA page_size={page_size}")
    conn.execute(f"PRAGMA auto_vacuum={auto_vacuum}")
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("CREATE TABLE sessions (id INTEGER PRIMARY KEY, record BLOB)")
    conn.execute("CREATE TABLE messages (id INTEGER PRIMARY KEY, chat TEXT, body BLOB)")
    conn.executemany(
        "INSERT INTO sessions VALUES (?, ?)", [(i, os.urandom(600)) for i in range(300)]
    )
    rows = mib * MIB // 1100
    for start in range(0, rows, 5000):
        conn.executemany(
            "INSERT INTO messages (chat, body) VALUES (?, ?)",
            [(f"chat{i % 50}", os.urandom(300) + b"m" * 700) for i in range(start, start + 5000)],
        )
        conn.commit()
    conn.commit()
    conn.close()


def content(path: Path) -> str:
    """A digest of every row of every table, opened as WAHA opens it (WAL, read-write)."""
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        h = hashlib.sha256()
        for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type='table' ORDER BY 1"):
            for row in conn.execute(f'SELECT * FROM "{name}" ORDER BY rowid'):
                h.update(repr(row).encode())
        return h.hexdigest()
    finally:
        conn.close()


def push(db: DbTarget, root: Path, *flags: str) -> int:
    assert db.cli("push", "--sessions-dir", str(root), *flags) == 0
    return int(str(db.sql("SELECT max(id) FROM waha_sync_commits")[0][0]))


def restore(db: DbTarget, out: Path, *flags: str) -> Path:
    assert db.cli("restore", "--read-only", "--sessions-dir", str(out), *flags) == 0
    return out


def committed_at(db: DbTarget, commit: int) -> datetime:
    when = db.sql("SELECT created_at FROM waha_sync_commits WHERE id = :c", c=commit)[0][0]
    assert isinstance(when, datetime)
    return when


def piece_rows(db: DbTarget, commit: int | None = None) -> int:
    if commit is None:
        return int(str(db.sql("SELECT count(*) FROM waha_sync_pieces")[0][0]))
    q = "SELECT count(*) FROM waha_sync_pieces WHERE commit_id = :c"
    return int(str(db.sql(q, c=commit)[0][0]))


@pytest.mark.parametrize("page_size", [1024, 4096, 65536])
def test_round_trip_per_page_size(db: DbTarget, tmp_path: Path, page_size: int) -> None:
    root = tmp_path / "s"
    gows = root / "gows" / "alice" / "gows.db"
    fill(gows, 3, page_size)
    push(db, root)
    out = restore(db, tmp_path / "out")
    assert content(out / "gows" / "alice" / "gows.db") == content(gows)
    assert not (out / "gows" / "alice" / "gows.db-wal").exists()
    pieces = piece_rows(db)
    assert pieces == -(-gows.stat().st_size // max(page_size, 4096))


def test_one_row_change_uploads_only_the_pieces_it_touches(db: DbTarget, tmp_path: Path) -> None:
    root = tmp_path / "s"
    gows = root / "gows.db"
    fill(gows, 8)
    first = push(db, root)
    total = piece_rows(db, first)
    assert total >= 2000
    conn = sqlite3.connect(gows)
    conn.execute("UPDATE sessions SET record = ? WHERE id = 150", (os.urandom(600),))
    conn.commit()
    conn.close()
    second = push(db, root)
    assert second == first + 1
    changed = piece_rows(db, second)
    assert 1 <= changed <= 3, changed  # the leaf page, perhaps its parent and page 1
    out = restore(db, tmp_path / "out")
    assert content(out / "gows.db") == content(gows)
    # Nothing changed: no commit, no piece.
    assert push(db, root) == second


def test_vacuum_shrink_growth_and_history(db: DbTarget, tmp_path: Path) -> None:
    root = tmp_path / "s"
    gows = root / "gows.db"
    fill(gows, 4, auto_vacuum="INCREMENTAL")
    states = {push(db, root): content(gows)}
    conn = sqlite3.connect(gows)
    conn.execute("DELETE FROM messages WHERE id % 2 = 0")
    conn.commit()
    conn.execute("PRAGMA incremental_vacuum")
    conn.commit()
    conn.close()
    states[push(db, root)] = content(gows)
    conn = sqlite3.connect(gows)
    conn.execute("VACUUM")  # every page moves, and the file shrinks
    conn.close()
    small = gows.stat().st_size
    states[push(db, root)] = content(gows)
    fill_more = sqlite3.connect(gows)
    fill_more.executemany(
        "INSERT INTO messages (chat, body) VALUES ('grow', ?)", [(os.urandom(900),)] * 6000
    )
    fill_more.commit()
    fill_more.close()
    states[push(db, root)] = content(gows)
    assert (root / "gows.db").stat().st_size > small
    # Every version stays restorable exactly, by commit time.
    for commit, want in states.items():
        out = restore(db, tmp_path / f"at{commit}", "--at", committed_at(db, commit).isoformat())
        assert content(out / "gows.db") == want, commit


def test_application_checkpoint_between_ships(db: DbTarget, tmp_path: Path) -> None:
    root = tmp_path / "s"
    gows = root / "gows.db"
    fill(gows, 2)
    app = sqlite3.connect(gows)  # stays open, as WAHA's connection does
    app.execute("INSERT INTO messages (chat, body) VALUES ('a', x'00')")
    app.commit()
    push(db, root)
    app.execute("INSERT INTO messages (chat, body) VALUES ('b', x'01')")
    app.commit()
    app.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # the WAL starts over
    app.execute("INSERT INTO messages (chat, body) VALUES ('c', x'02')")
    app.commit()
    push(db, root)
    out = restore(db, tmp_path / "out")
    assert content(out / "gows.db") == content(gows)
    app.close()


def test_torn_last_wal_frame_is_left_for_later(db: DbTarget, tmp_path: Path) -> None:
    """A WAL whose last frame is cut short: the committed state before it is stored."""
    root = tmp_path / "s"
    gows = root / "gows.db"
    fill(gows, 1)
    app = sqlite3.connect(gows)
    app.execute("PRAGMA wal_autocheckpoint=0")
    app.execute("INSERT INTO messages (chat, body) VALUES ('kept', x'01')")
    app.commit()
    want = content(gows)
    app.execute("INSERT INTO messages (chat, body) VALUES ('torn', x'02')")
    app.commit()
    wal = gows.with_name("gows.db-wal")
    page = 4096 + 24
    # Copy the database and a WAL cut in the middle of its last frame: a writer killed mid-write.
    torn_root = tmp_path / "torn"
    torn_root.mkdir()
    (torn_root / "gows.db").write_bytes(gows.read_bytes())
    data = wal.read_bytes()
    (torn_root / "gows.db-wal").write_bytes(data[: len(data) - page // 2])
    app.close()
    push(db, torn_root)
    out = restore(db, tmp_path / "out")
    assert content(out / "gows.db") == want


def test_sigkill_mid_upload_leaves_orphans_that_the_next_upload_clears(
    db: DbTarget, tmp_path: Path
) -> None:
    from waha_sync.common.db.connect import open_connection
    from waha_sync.common.db.database import Database
    from waha_sync.common.db.schema import migrate
    from waha_sync.common.db.url import parse_url

    root = tmp_path / "s"
    gows = root / "gows.db"
    fill(gows, 16)
    migrate(Database(parse_url(db.url)))
    blocker = open_connection(parse_url(db.url))
    blocker.run("BEGIN")
    blocker.run("LOCK TABLE waha_sync_commits IN EXCLUSIVE MODE")  # the commit will wait
    proc = subprocess.Popen(
        [sys.executable, "-m", "waha_sync.cli", "push", "--sessions-dir", str(root)],
        env=db.env(WAHA_SYNC_CHAOS_40001_RATE="0"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        want = -(-gows.stat().st_size // 4096)
        while piece_rows(db) < want and time.monotonic() < deadline:
            time.sleep(0.05)
        assert proc.poll() is None, proc.communicate()[1]
        assert piece_rows(db) == want  # every piece, and no commit yet
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    finally:
        blocker.run("ROLLBACK")
        blocker.close()
    assert db.sql("SELECT count(*) FROM waha_sync_commits")[0][0] == 0
    conn = sqlite3.connect(gows)
    conn.execute("DELETE FROM messages WHERE id > 100")  # the next version is much shorter
    conn.commit()
    conn.execute("VACUUM")
    conn.close()
    push(db, root)  # nothing was committed: the instance is still empty
    assert piece_rows(db) == -(-gows.stat().st_size // 4096)  # the orphans are gone
    out = restore(db, tmp_path / "out")
    assert content(out / "gows.db") == content(gows)


def test_gc_folds_history_into_the_horizon_version(db: DbTarget, tmp_path: Path) -> None:
    setup = dataclasses.replace(db, chaos_rate=min(db.chaos_rate, 0.05))
    root = tmp_path / "s"
    gows = root / "gows.db"
    fill(gows, 2)
    commits = []
    for i in range(4):
        conn = sqlite3.connect(gows)
        conn.execute("UPDATE sessions SET record = ? WHERE id < 40", (os.urandom(600),))
        conn.execute("INSERT INTO messages (chat, body) VALUES (?, ?)", (f"n{i}", os.urandom(500)))
        conn.commit()
        conn.close()
        commits.append(push(setup, root))
        if i == 2:
            third = content(gows)
    for c, age in zip(commits, (300, 250, 200, 0), strict=True):
        backdate(db, c, age)
    live = -(-gows.stat().st_size // 4096)
    before = piece_rows(db)
    assert before > live
    assert db.cli("gc", "--retention-hours", "168") == 0
    after = piece_rows(db)
    # The horizon version (commit 3) is whole; only the last commit's changes are extra.
    assert live <= after < before
    assert after - live <= piece_rows(db, commits[-1])
    out = restore(db, tmp_path / "out")
    assert content(out / "gows.db") == content(gows)
    horizon = restore(db, tmp_path / "horizon", "--at", committed_at(db, commits[2]).isoformat())
    assert content(horizon / "gows.db") == third


@pytest.mark.slow
def test_large_database_round_trip(plain_db: DbTarget, tmp_path: Path) -> None:
    """256 MiB through push and restore (one mode: the 40001 paths are covered above)."""
    db = plain_db
    root = tmp_path / "s"
    gows = root / "gows" / "big" / "gows.db"
    fill(gows, 256)
    push(db, root)
    out = restore(db, tmp_path / "out")
    assert content(out / "gows" / "big" / "gows.db") == content(gows)


def test_status_and_metrics_show_stored_and_history_bytes(db: DbTarget, tmp_path: Path) -> None:
    root = tmp_path / "s"
    gows = root / "gows" / "alice" / "gows.db"
    fill(gows, 2)
    (root / "gows" / "alice" / "note.json").write_text('{"v": 1}')
    push(db, root)
    conn = sqlite3.connect(gows)
    conn.execute("UPDATE sessions SET record = ? WHERE id < 100", (os.urandom(600),))
    conn.commit()
    conn.close()
    (root / "gows" / "alice" / "note.json").write_text('{"v": 2}')
    push(db, root)
    restored = tmp_path / "pod"
    assert db.cli("restore", "--sessions-dir", str(restored)) == 0
    side = SidecarProc(db, restored, tmp_path / "side.log").start().ready()
    try:
        deadline = time.monotonic() + 30
        while True:
            sessions = json.loads(side.get("/status").body)["trees"][0]["sessions"]
            if sessions and sessions[0]["history_bytes"] is not None:
                break
            assert time.monotonic() < deadline, sessions
            time.sleep(0.2)
        session = sessions[0]
        assert session["name"] == "gows/alice"
        assert session["stored_bytes"] > 0 and session["history_bytes"] > 0, session
        total = db.sql("SELECT sum(length(data)) FROM waha_sync_pieces")[0][0]
        blobs = db.sql("SELECT sum(stored_bytes) FROM waha_sync_blobs")[0][0]
        assert session["stored_bytes"] + session["history_bytes"] == int(str(total)) + int(
            str(blobs)
        )
        metrics = side.get("/metrics").body.decode()
        assert (
            f'waha_sync_session_history_bytes{{session="gows/alice",tree="sessions"}} '
            f"{float(session['history_bytes'])}" in metrics
        ), metrics
    finally:
        side.stop_ok()


def test_sidecar_ships_a_busy_database_by_its_changed_pages(db: DbTarget, tmp_path: Path) -> None:
    """A writer with no busy timeout keeps writing while the sidecar ships: no error, every
    commit the writer made before the final flush is in the restored database."""
    root = tmp_path / "s"
    gows = root / "gows" / "bob" / "gows.db"
    fill(gows, 8)
    push(db, root)
    pod = tmp_path / "pod"
    assert db.cli("restore", "--sessions-dir", str(pod)) == 0
    live = pod / "gows" / "bob" / "gows.db"
    side = SidecarProc(db, pod, tmp_path / "side.log").start().ready()
    writer = subprocess.Popen(
        [sys.executable, "-c", _BUSY_WRITER, str(live), "6"],
        stdout=subprocess.PIPE,
        text=True,
    )
    out, _ = writer.communicate(timeout=60)
    errors, last = (int(x) for x in out.split())
    assert errors == 0
    side.stop_ok()
    want = content(live)
    out_dir = restore(db, tmp_path / "out")
    got = out_dir / "gows" / "bob" / "gows.db"
    assert content(got) == want
    conn = sqlite3.connect(got)
    assert conn.execute("SELECT max(id) FROM messages").fetchone()[0] == last
    conn.close()
    shipped = db.sql("SELECT count(*) FROM waha_sync_commits")[0][0]
    assert int(str(shipped)) >= 3  # the push, changes while writing, the final flush


# A whatsmeow-like writer: one message insert and one random session update per transaction,
# 30 per second, busy timeout 0 (any SQLITE_BUSY is counted); prints errors and the last id.
_BUSY_WRITER = """
import os, random, sqlite3, sys, time
conn = sqlite3.connect(sys.argv[1], timeout=0, isolation_level=None)
conn.execute("PRAGMA busy_timeout=0")
errors, last, end = 0, 0, time.monotonic() + float(sys.argv[2])
while time.monotonic() < end:
    try:
        conn.execute("BEGIN IMMEDIATE")
        cur = conn.execute("INSERT INTO messages (chat, body) VALUES ('x', ?)", (os.urandom(700),))
        conn.execute("UPDATE sessions SET record = ? WHERE id = ?",
                     (os.urandom(600), random.randrange(300)))
        conn.execute("COMMIT")
        last = cur.lastrowid
    except sqlite3.OperationalError:
        errors += 1
        conn.execute("ROLLBACK") if conn.in_transaction else None
    time.sleep(1 / 30)
print(errors, last)
"""

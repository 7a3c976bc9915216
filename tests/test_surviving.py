"""Restore into a volume that survived (a named volume, a PVC, a Render disk).

Real restore and sidecar processes against the real PostgreSQL, and real SQLite
writers in processes of their own, SIGKILLed to leave what a crash leaves: a
``-wal`` with committed frames never checkpointed, or a hot ``-journal``.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from tests.chaos.committed import stored, write_json
from tests.support.dbtarget import DbTarget
from tests.support.podsim import SidecarProc
from tests.support.wahatree import make_noweb_session, make_sqlite, tree_digest
from waha_sync.common.local.postgres import LocalPostgres

GOWS = "gows/s/gows.db"
SIDE = ("-wal", "-shm", "-journal")

# Commits ``count`` rows one by one in WAL mode with checkpoints off, then waits to be killed:
# the rows are committed, and only in the -wal.
WAL_WRITER = r"""
import sqlite3, sys, time
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("PRAGMA journal_mode=WAL")
conn.execute("PRAGMA wal_autocheckpoint=0")
for i in range(int(sys.argv[2])):
    conn.execute("INSERT INTO events (body) VALUES (?)", (f"wal {i}",))
print("ready", flush=True)
time.sleep(600)
"""
# Rewrites every row in one transaction of a rollback-journal database with a tiny cache, so
# changed pages spill into the database file; killed before COMMIT: a hot -journal.
JOURNAL_WRITER = r"""
import sqlite3, sys, time
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("PRAGMA cache_size=2")
conn.execute("BEGIN")
conn.execute("UPDATE events SET body = hex(randomblob(300))")
print("ready", flush=True)
time.sleep(600)
"""


def killed_writer(code: str, path: Path, *args: str) -> None:
    """Run a SQLite writer in its own process and SIGKILL it once it says it is ready."""
    proc = subprocess.Popen([sys.executable, "-c", code, str(path), *args], stdout=subprocess.PIPE)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline() == b"ready\n"
    finally:
        proc.kill()
        proc.wait(10)


def opened_as_waha(path: Path) -> tuple[str, int | None]:
    """(integrity check, rows) of the database as a writer opens it, journals and all."""
    try:
        conn = sqlite3.connect(path)
        try:
            check = str(conn.execute("PRAGMA integrity_check").fetchone()[0])
            return check, int(conn.execute("SELECT count(*) FROM events").fetchone()[0])
        finally:
            conn.close()
    except sqlite3.DatabaseError as exc:
        return str(exc), None


def copy_opened(folder: Path, rel: str, into: Path) -> tuple[str, int | None]:
    """Open a displaced database together with its displaced side files (in a copy)."""
    into.mkdir()
    for suffix in ("", *SIDE):
        if (folder / (rel + suffix)).exists():
            shutil.copy2(folder / (rel + suffix), into / ("db" + suffix))
    return opened_as_waha(into / "db")


def rewrite(path: Path) -> None:
    """Another pod's change: rows deleted, a table created, VACUUM."""
    conn = sqlite3.connect(path)
    conn.execute("DELETE FROM events WHERE id % 2 = 0")
    conn.execute("CREATE TABLE contacts (jid TEXT PRIMARY KEY)")
    conn.execute("INSERT INTO contacts VALUES ('123@s.whatsapp.net')")
    conn.commit()
    conn.execute("VACUUM")
    conn.close()


def restore(db: DbTarget, root: Path, *args: str, **env: str) -> tuple[int, str]:
    """``waha-sync restore`` as a process of its own: (exit code, log)."""
    proc = subprocess.run(
        [sys.executable, "-m", "waha_sync.cli", "restore", "--sessions-dir", str(root), *args],
        env=db.env(**env),
        capture_output=True,
        text=True,
        timeout=180,
    )
    return proc.returncode, proc.stdout + proc.stderr


def restored_ok(db: DbTarget, root: Path, *args: str) -> str:
    code, out = restore(db, root, *args)
    assert code == 0, out
    return out


def wait_until(what: Callable[[], bool], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not what():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.05)


def marker(root: Path) -> dict[str, object]:
    return dict(json.loads((root / ".waha-sync" / "restored.json").read_text()))


def epoch(db: DbTarget) -> int:
    return int(str(db.sql("SELECT epoch FROM waha_sync_instances")[0][0]))


def commits(db: DbTarget) -> int:
    return int(str(db.sql("SELECT count(*) FROM waha_sync_commits")[0][0]))


def displaced(root: Path) -> list[Path]:
    base = root / ".waha-sync" / "displaced"
    return sorted(base.iterdir()) if base.is_dir() else []


def beside(root: Path, rel: str) -> list[str]:
    return [s for s in SIDE if (root / (rel + s)).exists()]


def test_own_newer_state_is_kept_and_shipped(db: DbTarget, tmp_path: Path) -> None:
    """Input 1: a sidecar killed before its debounce; the restart's restore keeps the newer
    file and the local deletion, and the next sidecar ships both."""
    root = tmp_path / "vol"
    restored_ok(db, root)
    slow = {"WAHA_SYNC_DEBOUNCE_SECONDS": "1", "WAHA_SYNC_MAX_DELAY_SECONDS": "10"}
    side = SidecarProc(db, root, tmp_path / "one.log", **slow).start().ready()
    creds, key = "noweb/s1/creds.json", "noweb/s1/pre-key-1.json"
    v1 = write_json(root / creds, {"v": 1})
    k1 = write_json(root / key, {"k": 1})
    wait_until(lambda: stored(db).get(creds) == v1 and stored(db).get(key) == k1)
    v2 = write_json(root / creds, {"v": 2})
    (root / key).unlink()
    time.sleep(0.2)
    side.kill()
    assert stored(db)[creds] == v1, "the change must still be unshipped for this test"
    before = epoch(db)

    out = restored_ok(db, root)
    assert json.loads((root / creds).read_text()) == {"v": 2}
    assert not (root / key).exists(), "a local deletion must not be resurrected"
    assert "volume is newer than the database: 2 local changes kept; the sidecar ships them" in out
    assert "written" not in out and displaced(root) == []
    assert marker(root)["epoch"] == epoch(db) == before + 1

    again = SidecarProc(db, root, tmp_path / "two.log").start().ready()
    now = stored(db)
    assert now[creds] == v2 and key not in now
    again.stop_ok()


def test_foreign_wal_is_displaced_with_its_database(db: DbTarget, tmp_path: Path) -> None:
    """Input 2: volume A's -wal (committed frames of a killed writer) never meets the
    database that another pod changed and pushed; the pair is kept aside, readable."""
    src = tmp_path / "src"
    make_sqlite(src / GOWS, rows=50)
    write_json(src / "gows/s/meta.json", {"a": 1})
    assert db.cli("push", "--sessions-dir", str(src)) == 0
    vol_a, vol_b = tmp_path / "a", tmp_path / "b"
    restored_ok(db, vol_a)
    killed_writer(WAL_WRITER, vol_a / GOWS, "30")
    assert (vol_a / (GOWS + "-wal")).stat().st_size > 0
    restored_ok(db, vol_b)  # another pod takes the instance over
    rewrite(vol_b / GOWS)
    assert db.cli("push", "--sessions-dir", str(vol_b)) == 0

    out = restored_ok(db, vol_a)
    assert opened_as_waha(vol_a / GOWS) == ("ok", 25)
    assert beside(vol_a, GOWS) == []
    conn = sqlite3.connect(vol_a / GOWS)
    assert conn.execute("SELECT jid FROM contacts").fetchall() == [("123@s.whatsapp.net",)]
    conn.close()
    [folder] = displaced(vol_a)
    assert sorted(p.name for p in (folder / "gows/s").iterdir()) == [
        "gows.db",
        "gows.db-shm",
        "gows.db-wal",
    ]
    assert copy_opened(folder, GOWS, tmp_path / "kept") == ("ok", 80)
    assert f"displaced local file (now in .waha-sync/displaced/{folder.name}): {GOWS}" in out

    side = SidecarProc(db, vol_a, tmp_path / "a.log").start().ready()
    body = side.get("/status").json()["trees"][0]["displaced"]
    assert body["files"] == 3 and body["newest"] == f".waha-sync/displaced/{folder.name}"
    assert GOWS + "-wal" in body["paths"]
    side.stop_ok()
    check = tmp_path / "check"
    assert db.cli("restore", "--read-only", "--sessions-dir", str(check)) == 0
    assert opened_as_waha(check / GOWS) == ("ok", 25)


def test_stale_wal_beside_an_unchanged_database_never_wins(db: DbTarget, tmp_path: Path) -> None:
    """Input 2, second form: the main file equals the stored one; the stale frames must not
    win, and the sidecar must not ship them back as the new truth."""
    src = tmp_path / "src"
    make_sqlite(src / GOWS, rows=50)
    write_json(src / "gows/s/meta.json", {"a": 1})
    assert db.cli("push", "--sessions-dir", str(src)) == 0
    vol_a, vol_b = tmp_path / "a", tmp_path / "b"
    restored_ok(db, vol_a)
    killed_writer(WAL_WRITER, vol_a / GOWS, "30")
    restored_ok(db, vol_b)
    write_json(vol_b / "gows/s/meta.json", {"a": 2})  # the database file itself unchanged
    assert db.cli("push", "--sessions-dir", str(vol_b)) == 0

    restored_ok(db, vol_a)
    assert opened_as_waha(vol_a / GOWS) == ("ok", 50)
    assert beside(vol_a, GOWS) == []
    [folder] = displaced(vol_a)
    assert copy_opened(folder, GOWS, tmp_path / "kept") == ("ok", 80)
    before = commits(db)
    side = SidecarProc(db, vol_a, tmp_path / "a.log").start().ready()
    side.stop_ok()
    check = tmp_path / "check"
    assert db.cli("restore", "--read-only", "--sessions-dir", str(check)) == 0
    assert opened_as_waha(check / GOWS) == ("ok", 50)
    assert commits(db) == before


def test_restore_at_a_past_time_rolls_the_wal_back(db: DbTarget, tmp_path: Path) -> None:
    """Input 3: 20 rows pushed at T, 100 more only in the -wal; ``--at T`` gives 20 rows."""
    src, root = tmp_path / "src", tmp_path / "vol"
    make_sqlite(src / GOWS, rows=20)
    assert db.cli("push", "--sessions-dir", str(src)) == 0
    time.sleep(0.05)
    at = datetime.now(UTC)
    time.sleep(0.05)
    restored_ok(db, root)  # the database file as stored; the writer adds only to the -wal
    killed_writer(WAL_WRITER, root / GOWS, "100")
    assert copy_opened(root, GOWS, tmp_path / "before") == ("ok", 120)  # (a copy: opening
    # the volume's own file would checkpoint the -wal into it)

    out = restored_ok(db, root, "--at", at.isoformat())
    assert opened_as_waha(root / GOWS) == ("ok", 20)
    assert beside(root, GOWS) == []
    assert "the database's tree wins (a restore as of a past time)" in out
    [folder] = displaced(root)
    assert copy_opened(folder, GOWS, tmp_path / "kept") == ("ok", 120)


def _rollback_db(path: Path, rows: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode=DELETE")
    conn.execute("CREATE TABLE events (id INTEGER PRIMARY KEY, body TEXT)")
    conn.executemany("INSERT INTO events (body) VALUES (?)", [("r" * 200,)] * rows)
    conn.commit()
    conn.close()


def test_hot_journal_of_a_rollback_database(plain_db: DbTarget, tmp_path: Path) -> None:
    """A hot -journal left by a killed writer never rolls another generation's pages into
    the restored database; kept aside with its database, it still rolls that one back."""
    db, rel = plain_db, "noweb/s/store.sqlite"
    src = tmp_path / "src"
    _rollback_db(src / rel, 2000)
    assert db.cli("push", "--sessions-dir", str(src)) == 0
    vol_a, vol_b = tmp_path / "a", tmp_path / "b"
    restored_ok(db, vol_a)
    restored_ok(db, vol_b)
    rewrite(vol_b / rel)
    assert db.cli("push", "--sessions-dir", str(vol_b)) == 0
    killed_writer(JOURNAL_WRITER, vol_a / rel)
    assert (vol_a / (rel + "-journal")).stat().st_size > 0
    assert (vol_a / rel).read_bytes() != (src / rel).read_bytes(), "pages must have spilled"

    restored_ok(db, vol_a)
    assert opened_as_waha(vol_a / rel) == ("ok", 1000)
    assert beside(vol_a, rel) == []
    [folder] = displaced(vol_a)
    assert copy_opened(folder, rel, tmp_path / "kept") == ("ok", 2000)  # rolled back


def test_shm_without_wal(plain_db: DbTarget, tmp_path: Path) -> None:
    """A -shm alone goes with its database when the database wins, and stays untouched
    beside it when the volume is newer."""
    db = plain_db
    src = tmp_path / "src"
    make_sqlite(src / GOWS, rows=10)
    assert db.cli("push", "--sessions-dir", str(src)) == 0
    vol = tmp_path / "vol"
    restored_ok(db, vol)
    restored_ok(db, tmp_path / "other")  # the volume's claim is superseded
    shm = vol / (GOWS + "-shm")
    shm.write_bytes(b"\x01" * 32768)

    restored_ok(db, vol)
    assert beside(vol, GOWS) == []
    [folder] = displaced(vol)
    assert (folder / (GOWS + "-shm")).read_bytes() == b"\x01" * 32768
    assert (folder / GOWS).exists(), "the database goes with its side file"
    assert opened_as_waha(vol / GOWS) == ("ok", 10)

    shm.write_bytes(b"\x02" * 32768)
    inode = (vol / GOWS).stat().st_ino
    out = restored_ok(db, vol)  # now the volume's marker is current: it is newer
    assert "volume is newer than the database" in out
    assert shm.read_bytes() == b"\x02" * 32768 and (vol / GOWS).stat().st_ino == inode
    assert displaced(vol) == [folder]


def test_restart_while_the_database_is_down(
    stoppable_db: tuple[LocalPostgres, DbTarget], tmp_path: Path
) -> None:
    """Changes made during an outage survive a pod restart during it: the restore waits for
    the database, keeps the volume, and the sidecar ships them once it is back."""
    local, db = stoppable_db
    root = tmp_path / "vol"
    restored_ok(db, root)
    make_noweb_session(root / "noweb" / "s", prekeys=10)
    side = SidecarProc(db, root, tmp_path / "one.log").start().ready()
    wait_until(lambda: len(stored(db)) == len(tree_digest(root)))
    local.stop()
    want_a = write_json(root / "noweb/s/creds.json", {"during": "outage"})
    want_b = write_json(root / "noweb/s/new.json", {"new": True})
    (root / "noweb/s/pre-key-3.json").unlink()
    side.wait_for("cannot sync")
    side.kill()
    proc = subprocess.Popen(
        [sys.executable, "-m", "waha_sync.cli", "restore", "--sessions-dir", str(root)],
        env=db.env(WAHA_SYNC_WAIT_SECONDS="120"),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    time.sleep(3)
    assert proc.poll() is None, "restore must wait for the database"
    local.start()
    out, _ = proc.communicate(timeout=180)
    assert proc.returncode == 0, out
    assert json.loads((root / "noweb/s/creds.json").read_text()) == {"during": "outage"}
    assert not (root / "noweb/s/pre-key-3.json").exists()
    assert "volume is newer than the database: 3 local changes kept" in out
    again = SidecarProc(db, root, tmp_path / "two.log").start().ready()
    now = stored(db)
    assert now["noweb/s/creds.json"] == want_a and now["noweb/s/new.json"] == want_b
    assert "noweb/s/pre-key-3.json" not in now
    assert {k: v[0] for k, v in tree_digest(root).items()} == now
    again.stop_ok()


def test_two_restores_racing_into_one_volume(db: DbTarget, tmp_path: Path) -> None:
    """Two restores into one volume take turns: one moves the differing files aside and
    writes the stored tree, the other finds its marker current; the result is the stored
    tree, one displaced folder, and a marker a sidecar accepts."""
    src = tmp_path / "src"
    make_noweb_session(src / "noweb" / "s", prekeys=200)
    assert db.cli("push", "--sessions-dir", str(src)) == 0
    vol = tmp_path / "vol"
    restored_ok(db, vol)
    restored_ok(db, tmp_path / "other")
    write_json(vol / "noweb/s/creds.json", {"stale": True})
    write_json(vol / "noweb/s/unknown.json", {"x": 1})
    cmd = [sys.executable, "-m", "waha_sync.cli", "restore", "--sessions-dir", str(vol)]
    procs = [
        subprocess.Popen(
            cmd, env=db.env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        for _ in range(2)
    ]
    outs = [p.communicate(timeout=180)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    assert tree_digest(vol) == tree_digest(src)
    assert marker(vol)["epoch"] == epoch(db)
    [folder] = displaced(vol)
    assert sorted(p.name for p in (folder / "noweb/s").iterdir()) == ["creds.json", "unknown.json"]
    assert sum("the database's tree wins" in o for o in outs) == 1, outs
    assert sum("volume is newer than the database: 0 local changes" in o for o in outs) == 1
    before = commits(db)
    side = SidecarProc(db, vol, tmp_path / "side.log").start().ready()
    side.stop_ok()
    assert commits(db) == before


def test_markers_that_cannot_prove_their_database(plain_db: DbTarget, tmp_path: Path) -> None:
    """A marker without a database id (older waha-sync) or with another database's id is never
    taken for the last writer: the database wins; a sidecar refuses the foreign one."""
    db = plain_db
    src = tmp_path / "src"
    make_noweb_session(src / "noweb" / "s", prekeys=5)
    assert db.cli("push", "--sessions-dir", str(src)) == 0
    vol = tmp_path / "vol"
    restored_ok(db, vol)
    path = vol / ".waha-sync" / "restored.json"
    assert len(str(marker(vol)["database"])) == 32
    for change, why in (
        (lambda m: m.pop("database"), "does not name its database"),
        (lambda m: m.update(database="0" * 32), "was written against another database"),
    ):
        m = marker(vol)
        change(m)
        path.write_text(json.dumps(m))
        write_json(vol / "noweb/s/creds.json", {"newer": "?"})
        out = restored_ok(db, vol)
        assert tree_digest(vol) == tree_digest(src)
        assert f"the database's tree wins (the marker {why}" in out
    assert len(displaced(vol)) == 2
    m = marker(vol)
    m.update(database="0" * 32)
    path.write_text(json.dumps(m))
    side = SidecarProc(db, vol, tmp_path / "side.log").start()
    assert side.wait(60) == 2
    assert "belongs to another database" in side.log()


def test_displaced_files_are_pruned_after_the_retention(plain_db: DbTarget, tmp_path: Path) -> None:
    db = plain_db
    vol = tmp_path / "vol"
    restored_ok(db, vol)
    base = vol / ".waha-sync" / "displaced"
    old, recent = (
        base / "20000101T000000.000000Z",
        base / datetime.now(UTC).strftime("%Y%m%dT%H%M%S.%fZ"),
    )
    for folder in (old, recent):
        write_json(folder / "noweb/s/creds.json", {"old": str(folder)})
    out = restored_ok(db, vol, "--displaced-retention-hours", "24")
    assert "deleted displaced files of .waha-sync/displaced/20000101T000000.000000Z" in out
    assert not old.exists() and (recent / "noweb/s/creds.json").exists()
    summary = json.loads((vol / ".waha-sync" / "displaced.json").read_text())
    assert summary["files"] == 1 and summary["newest"].endswith(recent.name)

"""The sidecar as a real process beside WAHA-like writers, against the real database."""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import time
from pathlib import Path

import pytest

from tests.support.dbtarget import DbTarget
from tests.support.podsim import (
    BaileysWriter,
    SidecarProc,
    assert_same_tree,
    child_pid,
    stored_tree,
)
from tests.support.wahatree import SqliteWriter, make_noweb_session, make_sqlite
from waha_sync.common.local.postgres import LocalPostgres


def _restored(db: DbTarget, root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    assert db.cli("restore", "--sessions-dir", str(root)) == 0
    return root


def _stored_paths(db: DbTarget) -> dict[str, str]:
    rows = db.sql("SELECT path, sha256 FROM waha_sync_entries WHERE NOT deleted")
    return {str(p): str(s) for p, s in rows}


def _wait_stored(db: DbTarget, check: object, timeout: float = 30) -> dict[str, str]:
    deadline = time.monotonic() + timeout
    while True:
        got = _stored_paths(db)
        if check(got):  # type: ignore[operator]
            return got
        assert time.monotonic() < deadline, f"database never reached the expected state: {got}"
        time.sleep(0.1)


def test_pod_ships_churn_and_flushes_on_sigterm(db: DbTarget, tmp_path: Path) -> None:
    root = _restored(db, tmp_path / "vol")
    make_noweb_session(root / "default" / "alice", prekeys=100)
    make_sqlite(root / "default" / "bob" / "gows.db", rows=50)
    side = SidecarProc(db, root, tmp_path / "sidecar.log").start().ready()
    writer = BaileysWriter(root / "default" / "alice", files=100)
    sqlw = SqliteWriter(root / "default" / "bob" / "gows.db", rate_per_s=200)
    writer.start()
    sqlw.start()
    time.sleep(4)
    writer.stop()
    sqlw.stop()
    side.stop_ok()
    log = side.log()
    assert "SIGTERM received: final flush" in log
    assert "sessions: stopped; every change is in the database" in log
    assert sqlw.committed > 200  # the writer really wrote while the sidecar watched
    stored = stored_tree(db, tmp_path / "check")
    assert_same_tree(root, stored, sqlite_files=("default/bob/gows.db",))
    commits = db.sql("SELECT count(*) FROM waha_sync_commits")[0][0]
    assert isinstance(commits, int) and commits >= 3  # shipped while running, not only at exit


def test_sigkill_at_random_moments_converges(db: DbTarget, tmp_path: Path) -> None:
    root = _restored(db, tmp_path / "vol")
    make_sqlite(root / "default" / "bob" / "gows.db", rows=10)
    writer = BaileysWriter(root / "default" / "alice", files=150, seed=7)
    sqlw = SqliteWriter(root / "default" / "bob" / "gows.db", rate_per_s=200)
    writer.start()
    sqlw.start()
    rng = random.Random(3)
    side = SidecarProc(db, root, tmp_path / "sidecar.log")
    kills = 12
    for i in range(kills):
        side.start()
        time.sleep(rng.uniform(0.2, 2.5))  # at start-up, mid-comparison, mid-ship, idle
        side.kill()
        stored_tree(db, tmp_path / f"after-kill-{i}")  # every committed state is whole
    side.start().ready()
    time.sleep(1)
    writer.stop()
    sqlw.stop()
    side.stop_ok()
    assert_same_tree(root, stored_tree(db, tmp_path / "final"), ("default/bob/gows.db",))


def test_sigterm_right_after_a_write_is_durable(db: DbTarget, tmp_path: Path) -> None:
    root = _restored(db, tmp_path / "vol")
    side = SidecarProc(db, root, tmp_path / "sidecar.log").start().ready()
    (root / "default" / "s1").mkdir(parents=True)
    (root / "default" / "s1" / "creds.json").write_text('{"me": "last words"}')
    side.stop_ok()
    assert "final flush of" in side.log()
    got = stored_tree(db, tmp_path / "check")
    assert json.loads((got / "default" / "s1" / "creds.json").read_text()) == {"me": "last words"}


def test_refuses_a_volume_that_was_not_restored(plain_db: DbTarget, tmp_path: Path) -> None:
    root = tmp_path / "vol"
    root.mkdir()
    (root / "creds.json").write_text("{}")
    side = SidecarProc(plain_db, root, tmp_path / "a.log").start()
    assert side.wait() == 2
    assert "refusing to upload" in side.log() and "Try: run `waha-sync restore`" in side.log()
    assert plain_db.cli("restore", "--read-only", "--sessions-dir", str(tmp_path / "ro")) == 0
    side = SidecarProc(plain_db, tmp_path / "ro", tmp_path / "b.log").start()
    assert side.wait() == 2
    assert "read-only restore" in side.log()
    assert plain_db.sql("SELECT count(*) FROM waha_sync_commits")[0][0] == 0


def test_second_restore_fences_the_first_sidecar(db: DbTarget, tmp_path: Path) -> None:
    first = _restored(db, tmp_path / "pod1")
    side = SidecarProc(db, first, tmp_path / "pod1.log").start().ready()
    (first / "a.json").write_text('{"from": "pod1"}')
    _wait_stored(db, lambda got: "a.json" in got)
    _restored(db, tmp_path / "pod2")  # a new pod takes the instance over (epoch 2)
    commits_before = db.sql("SELECT count(*) FROM waha_sync_commits")[0][0]
    (first / "b.json").write_text('{"from": "pod1, after being superseded"}')
    assert side.wait(30) == 1
    assert "[SYNC] fenced: instance default was claimed by" in side.log()
    assert "(epoch 2)" in side.log()
    assert db.sql("SELECT count(*) FROM waha_sync_commits")[0][0] == commits_before
    assert "b.json" not in _stored_paths(db)
    blobs = db.sql("SELECT count(*) FROM waha_sync_blobs")[0][0]
    assert blobs == 1  # not even the content of b.json was uploaded


def test_folders_moves_and_wal_writes_ship(plain_db: DbTarget, tmp_path: Path) -> None:
    db = plain_db
    root = _restored(db, tmp_path / "vol")
    make_noweb_session(root / "default" / "old", prekeys=5)
    side = SidecarProc(db, root, tmp_path / "sidecar.log").start().ready()
    new = root / "default" / "new" / "deep"
    new.mkdir(parents=True)  # files written right after mkdir, before any watch can exist
    for i in range(20):
        (new / f"pre-key-{i}.json").write_text(json.dumps({"i": i}))
    _wait_stored(db, lambda got: sum(p.startswith("default/new/deep/") for p in got) == 20)
    outside = tmp_path / "elsewhere"
    (root / "default" / "old").rename(outside)  # moved out: its files are gone
    _wait_stored(db, lambda got: not any(p.startswith("default/old/") for p in got))
    outside.rename(root / "default" / "back")  # moved in: shipped
    _wait_stored(db, lambda got: "default/back/creds.json" in got)
    gows = root / "default" / "g" / "gows.db"
    make_sqlite(gows, rows=1)
    conn = sqlite3.connect(gows)  # one open connection: writes reach only the -wal file
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA wal_autocheckpoint=0")
    first = _wait_stored(db, lambda got: "default/g/gows.db" in got)["default/g/gows.db"]
    conn.execute("INSERT INTO events (body) VALUES ('written to the WAL only')")
    conn.commit()
    _wait_stored(db, lambda got: got.get("default/g/gows.db") not in (None, first))
    conn.close()
    side.stop_ok()


def test_database_outage_loses_nothing(
    stoppable_db: tuple[LocalPostgres, DbTarget], tmp_path: Path
) -> None:
    local, db = stoppable_db
    root = _restored(db, tmp_path / "vol")
    side = SidecarProc(db, root, tmp_path / "sidecar.log").start().ready()
    writer = BaileysWriter(root / "default" / "alice", files=60, rate=100)
    writer.start()
    time.sleep(1.5)
    local.stop()
    time.sleep(2)  # writes go on while the database is down...
    side.wait_for("cannot sync")
    writer.stop()  # ...and stop before it returns: only the kept paths can ship them
    for i in range(5):
        (root / "default" / "alice" / f"during-outage-{i}.json").write_text(f'{{"i": {i}}}')
    (root / "default" / "alice" / "creds.json").unlink()
    time.sleep(2)
    local.start()
    side.wait_for("syncing again after")
    stored = {str(r[0]) for r in db.sql("SELECT path FROM waha_sync_entries WHERE NOT deleted")}
    assert "default/alice/during-outage-4.json" in stored  # before any final flush
    assert "default/alice/creds.json" not in stored
    side.stop_ok()
    log = side.log()
    assert log.count("cannot sync") == 1 and log.count("syncing again") == 1
    lines = log.splitlines()
    catch_up = lines[next(i for i, x in enumerate(lines) if "syncing again" in x) - 1]
    assert "commit" in catch_up and " 1 changed path:" not in catch_up  # one catch-up commit
    assert_same_tree(root, stored_tree(db, tmp_path / "check"))


def test_sidecar_as_pid_1_flushes_on_sigterm(plain_db: DbTarget, tmp_path: Path) -> None:
    root = _restored(plain_db, tmp_path / "vol")
    side = SidecarProc(plain_db, root, tmp_path / "sidecar.log")
    side.prefix = ["unshare", "--pid", "--fork", "--kill-child"]
    side.start().ready()
    assert side.proc is not None
    pid1 = child_pid(side.proc.pid)
    status = Path(f"/proc/{pid1}/status").read_text().splitlines()
    nspid = next(line for line in status if line.startswith("NSpid:")).split()
    assert nspid[-1] == "1"  # it really is PID 1 in its namespace
    (root / "late.json").write_text('{"late": true}')
    os.kill(pid1, signal.SIGTERM)
    assert side.wait() == 0
    assert "late.json" in _stored_paths(plain_db)


@pytest.mark.parametrize("watches", [3])
def test_watch_limit_falls_back_to_rescans(
    plain_db: DbTarget, tmp_path: Path, watches: int
) -> None:
    root = _restored(plain_db, tmp_path / "vol")
    for name in ("a", "b", "c", "d", "e"):
        (root / "default" / name).mkdir(parents=True)
    side = SidecarProc(plain_db, root, tmp_path / "sidecar.log")
    limit = f'echo {watches} > /proc/sys/user/max_inotify_watches && exec "$@"'
    side.prefix = ["unshare", "--user", "--map-root-user", "sh", "-c", limit, "sh"]
    side.start().ready()
    assert "sysctl -w fs.inotify.max_user_watches" in side.log()
    for name in ("a", "b", "c", "d", "e"):
        (root / "default" / name / "creds.json").write_text(json.dumps({"session": name}))
    _wait_stored(plain_db, lambda got: sum(p.endswith("/creds.json") for p in got) == 5)
    side.stop_ok()


def test_shutdown_is_bounded_and_a_second_signal_aborts(plain_db: DbTarget, tmp_path: Path) -> None:
    root = _restored(plain_db, tmp_path / "vol")
    gone = DbTarget("postgresql://nobody:pw@127.0.0.1:9/none", "postgresql", 0.0)
    side = SidecarProc(gone, root, tmp_path / "a.log", WAHA_SYNC_SHUTDOWN_TIMEOUT_SECONDS="2")
    side.start().wait_for("cannot sync")
    started = time.monotonic()
    assert side.term() == 1  # nothing could be shipped: not a clean exit
    assert time.monotonic() - started < 6
    assert "SIGTERM received: final flush (up to 2s)" in side.log()
    assert "not shipped" in side.log()
    side = SidecarProc(gone, root, tmp_path / "b.log").start()
    side.wait_for("cannot sync")
    side.signal(signal.SIGTERM)
    side.wait_for("final flush (up to 20s)")
    started = time.monotonic()
    side.signal(signal.SIGINT)
    assert side.wait(10) == 1
    assert time.monotonic() - started < 3
    assert "second SIGINT: aborting without the final flush" in side.log()


def test_restart_ships_what_changed_while_it_was_down(db: DbTarget, tmp_path: Path) -> None:
    root = _restored(db, tmp_path / "vol")
    for name in ("gone.json", "changed.json", "same.json"):
        (root / name).write_text(json.dumps({"name": name}))
    side = SidecarProc(db, root, tmp_path / "a.log").start().ready()
    _wait_stored(db, lambda got: len(got) == 3)
    side.kill()
    (root / "gone.json").unlink()
    (root / "changed.json").write_text('{"changed": "while the sidecar was down"}')
    (root / "new.json").write_text("{}")
    side = SidecarProc(db, root, tmp_path / "b.log").start().ready()
    assert "start comparison of 3 files: commit 2: 2 files (43 B), 1 deleted" in side.log()
    side.stop_ok()
    assert_same_tree(root, stored_tree(db, tmp_path / "check"))


def test_force_takes_the_instance_and_leaves_a_marker(plain_db: DbTarget, tmp_path: Path) -> None:
    vol = tmp_path / "vol"
    vol.mkdir()
    (vol / "creds.json").write_text('{"from": "an old volume"}')
    side = SidecarProc(plain_db, vol, tmp_path / "a.log").start("--force").ready()
    side.stop_ok()
    marker = json.loads((vol / ".waha-sync" / "restored.json").read_text())
    assert (marker["source"], marker["epoch"]) == ("sidecar", 1)
    again = SidecarProc(plain_db, vol, tmp_path / "b.log").start().ready()  # no --force now
    (vol / "more.json").write_text("{}")
    again.stop_ok()
    rows = plain_db.sql("SELECT path FROM waha_sync_entries WHERE NOT deleted ORDER BY path")
    assert rows == [["creds.json"], ["more.json"]]
    assert plain_db.sql("SELECT epoch FROM waha_sync_instances") == [[1]]


def test_json_log_lines_name_their_tree_and_instance(plain_db: DbTarget, tmp_path: Path) -> None:
    root = _restored(plain_db, tmp_path / "vol")
    side = SidecarProc(plain_db, root, tmp_path / "sidecar.log")
    side.start("--log-format", "json").ready()
    (root / "default" / "s1").mkdir(parents=True)
    (root / "default" / "s1" / "creds.json").write_text('{"me": "json"}')
    _wait_stored(plain_db, lambda got: "default/s1/creds.json" in got)
    (root / "default" / "s1" / "bad.json").write_text('{"half-written')
    side.wait_for("invalid JSON")
    side.stop_ok()
    lines = [json.loads(line) for line in side.log().splitlines()]
    shipped = [x for x in lines if "shipped 1 changed path: commit" in x["message"]]
    assert shipped, side.log()
    assert shipped[0]["tree"] == "sessions" and shipped[0]["instance"] == "default"
    assert shipped[0]["component"] == "SYNC"
    skipped = next(x for x in lines if "skipped default/s1/bad.json" in x["message"])
    assert (skipped["tree"], skipped["instance"]) == ("sessions", "default")
    stopped = next(x for x in lines if "SIGTERM received" in x["message"])
    assert "tree" not in stopped  # a process-wide line names no tree
    assert list(shipped[0]) == ["time", "level", "component", "tree", "instance", "message"]

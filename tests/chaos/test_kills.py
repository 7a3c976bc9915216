"""SIGKILL at random moments: of the sidecar under churn, and of a restore half-way.

Seeds come from ``CHAOS_SEED`` (or are drawn) and are shown in the chaos
figures, so a failing run can be replayed exactly.
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.chaos.committed import RecordingWriter, check_committed, restored, stored_digests
from tests.chaos.conftest import Chaos
from tests.support.dbtarget import DbTarget
from tests.support.podsim import SidecarProc, assert_same_tree, stored_tree
from tests.support.wahatree import SqliteWriter, make_noweb_session, make_sqlite, tree_digest
from waha_sync.init.safepath import TMP_MARK


@pytest.fixture
def restores() -> Iterator[list[subprocess.Popen[bytes]]]:
    """Restore processes a test started; their whole process groups are killed afterwards."""
    procs: list[subprocess.Popen[bytes]] = []
    yield procs
    for proc in procs:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


def test_sidecar_sigkill_under_churn_leaves_only_committed_states(
    chaos: Chaos, plain_db: DbTarget, tmp_path: Path
) -> None:
    """Each kill leaves whole commits: history = live table = restored tree; nothing torn."""
    tally = chaos.scenario("sidecar SIGKILL under churn")
    kills = int(chaos.size(15, 200))
    rng = tally.rng()
    db = plain_db
    root = restored(db, tmp_path / "vol")
    gows = root / "default" / "bob" / "gows.db"
    make_sqlite(gows, rows=10)
    writer = RecordingWriter(root / "default" / "alice", root, files=150, rate=300, seed=tally.seed)
    sqlw = SqliteWriter(gows, rate_per_s=200)
    writer.start()
    sqlw.start()
    # The writer's gows.db passes the default 10 MiB limit within the full run's 200 kills.
    side = SidecarProc(db, root, tmp_path / "sidecar.log", WAHA_SYNC_MAX_FILE_BYTES=str(256 << 20))
    torn = 0
    try:
        for i in range(kills):
            side.start()
            time.sleep(rng.uniform(0.2, 3.0))  # start-up, first comparison, mid-ship, idle
            side.kill()
            problem, bad = check_committed(db, tmp_path / f"after-{i}", writer, sqlw.committed)
            torn += bad
            tally.attempt(None if problem is None else f"kill {i}: {problem}")
        side.start().ready()
        time.sleep(1)
    finally:
        writer.stop()
        sqlw.stop()
    side.stop_ok()  # the last run ships what the kills left behind
    assert_same_tree(root, stored_tree(db, tmp_path / "final"), ("default/bob/gows.db",))
    commits = db.sql("SELECT count(*) FROM waha_sync_commits")[0][0]
    tally.figures["torn or corrupt files"] = str(torn)
    tally.figures["commits"] = str(commits)
    assert isinstance(commits, int) and commits > kills // 3  # the kills did land mid-work
    tally.check()


def _source_tree(root: Path, rng: random.Random) -> None:
    """A few thousand small files and some incompressible big ones (slow to write)."""
    make_noweb_session(root / "default" / "alice", prekeys=1200, seed=1)
    make_noweb_session(root / "default" / "carol", prekeys=600, seed=2)
    make_sqlite(root / "default" / "waha.sqlite3", rows=2000)
    media = root / "default" / "alice" / "media"
    media.mkdir()
    for i in range(6):
        (media / f"blob-{i}.bin").write_bytes(rng.randbytes(3 * 1024 * 1024))
    (root / "default" / "alice" / "creds.json").chmod(0o600)


def _partial_files(target: Path, stored: dict[str, str], db: DbTarget) -> list[str]:
    """Files under a final name whose content is not the stored version (temp names allowed)."""
    bad = []
    for rel, sha in stored_digests(target, db).items():
        if TMP_MARK in rel.rsplit("/", 1)[-1]:
            continue
        if stored.get(rel) != sha:
            bad.append(rel)
    return bad


def test_restore_sigkill_leaves_no_partial_file_and_reruns_clean(
    chaos: Chaos,
    plain_db: DbTarget,
    tmp_path: Path,
    restores: list[subprocess.Popen[bytes]],
) -> None:
    """A restore killed anywhere leaves only complete files under final names; a rerun completes."""
    tally = chaos.scenario("restore SIGKILL")
    kills = int(chaos.size(10, 60))
    rng = tally.rng()
    db = plain_db
    src = tmp_path / "src"
    _source_tree(src, rng)
    assert db.cli("push", "--sessions-dir", str(src)) == 0
    want = {k: v for k, v in tree_digest(src).items() if not k.endswith(("-wal", "-shm"))}
    stored = {str(p): str(s) for p, s in db.sql("SELECT path, sha256 FROM waha_sync_files")}
    assert stored == {k: v for k, v in stored_digests(src, db).items() if k in want}
    cmd = [sys.executable, "-m", "waha_sync.cli", "restore", "--sessions-dir"]

    def run(target: Path) -> subprocess.Popen[bytes]:
        with (tmp_path / "restore.log").open("ab") as log:
            proc = subprocess.Popen(
                [*cmd, str(target)],
                env=db.env(),
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its forked writers die with it, as in a pod
            )
        restores.append(proc)
        return proc

    timing, started, first_file = tmp_path / "timing", time.monotonic(), 0.0
    proc = run(timing)
    while proc.poll() is None:  # when writing starts: after start-up, connect, claim, listing
        if not first_file and timing.is_dir() and any(timing.glob("default/*")):
            first_file = time.monotonic() - started
        time.sleep(0.005)
    assert proc.wait() == 0
    whole = time.monotonic() - started
    shutil.rmtree(timing)
    tally.figures["uninterrupted restore"] = f"{whole:.1f} s (writing from {first_file:.1f} s)"
    mid_write = 0
    for i in range(kills):
        target = tmp_path / f"kill-{i}"
        proc = run(target)
        # Half at any moment, half while files are being written.
        time.sleep(rng.uniform(0.0 if i % 2 else first_file, whole))
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)
        partial = _partial_files(target, stored, db) if target.exists() else []
        done = (target / ".waha-sync" / "restored.json").exists()
        on_disk = len(tree_digest(target)) if target.exists() else 0
        mid_write += on_disk > 0 and not done
        problem = f"partial files under final names: {partial[:3]}" if partial else None
        if done and len(tree_digest(target)) != len(want):
            problem = problem or "a marker, but not every file"
        if db.cli("restore", "--sessions-dir", str(target)) != 0:
            problem = problem or "the rerun failed"
        elif tree_digest(target) != want:
            problem = problem or "the rerun did not restore the source tree"
        elif any(TMP_MARK in p.name for p in target.rglob("*")):
            problem = problem or "temp files left after the rerun"
        tally.attempt(None if problem is None else f"kill {i}: {problem}")
        shutil.rmtree(target, ignore_errors=True)
    tally.figures["killed mid-write"] = str(mid_write)
    assert mid_write > 0, "no kill landed while files were being written"
    tally.check()


def _children(pid: int) -> list[int]:
    """Live processes whose parent is ``pid`` (zombies count as gone)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(")")[2].split()
        except OSError:
            continue
        if fields[0] != "Z" and int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="restore forks writers only on 2+ CPUs")
def test_a_restore_killed_alone_takes_its_writer_processes_with_it(
    plain_db: DbTarget, tmp_path: Path
) -> None:
    """``kill -9`` of the restore process alone (a laptop, not a pod) ends its forked writers,
    so none keeps the restore lock and the next restore into the folder runs at once."""
    src, target = tmp_path / "src", tmp_path / "target"
    _source_tree(src, random.Random(7))
    assert plain_db.cli("push", "--sessions-dir", str(src)) == 0
    proc = subprocess.Popen(
        [sys.executable, "-m", "waha_sync.cli", "restore", "--sessions-dir", str(target)],
        env=plain_db.env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        workers: list[int] = []
        while proc.poll() is None and not workers:
            if target.is_dir() and any(target.glob("default/*")):
                workers = _children(proc.pid)
            time.sleep(0.005)
        assert workers, "restore ended before its writers could be seen"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
        deadline = time.monotonic() + 10
        while any(_alive(w) for w in workers) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not [w for w in workers if _alive(w)], "writers outlived their restore"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
    rerun = subprocess.run(
        [sys.executable, "-m", "waha_sync.cli", "restore", "--sessions-dir", str(target)],
        env=plain_db.env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert rerun.returncode == 0, rerun.stderr
    assert "another restore" not in rerun.stderr
    assert tree_digest(target) == {
        k: v for k, v in tree_digest(src).items() if not k.endswith(("-wal", "-shm"))
    }

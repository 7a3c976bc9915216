"""The sync engine in one process on ``MemoryStore``: push, ship, restore and gc of generated
trees, no PostgreSQL and no subprocess (fast; ``test_store_contract.py`` holds MemoryStore
to what PgStore does). Real files, real SQLite writers, real restores into ``tmp_path``."""

from __future__ import annotations

import hashlib
import os
import sqlite3
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.support.wahatree import make_noweb_session, make_sqlite, tree_digest
from waha_sync.common.config.settings import Settings
from waha_sync.common.errors import FencedError, RefusedError
from waha_sync.common.store.base import StoredEntry
from waha_sync.common.store.memory import MemoryStore
from waha_sync.common.sync.gc import collect
from waha_sync.common.sync.marker import read_marker
from waha_sync.common.sync.pieces import PIECED_MIN_BYTES, PiecedFiles
from waha_sync.common.sync.push import deletions, push
from waha_sync.common.sync.scan import Excluder, scan
from waha_sync.common.sync.ship import ship
from waha_sync.init.restore import restore
from waha_sync.sidecar.tree_sync import TreeSync

SQLITE = "default/waha.sqlite3"


class Clock:
    """The store's database clock, moved forward by the test."""

    def __init__(self) -> None:
        self.at = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.at

    def forward(self, hours: float) -> datetime:
        self.at += timedelta(hours=hours)
        return self.at


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store(clock: Clock) -> MemoryStore:
    return MemoryStore(clock)


def settings(root: Path) -> Settings:
    return Settings(sessions_dir=root, instance="inst", workers=2)


def generate(root: Path, *, large: bool = False) -> None:
    """A WAHA-like tree: NOWEB sessions, WAHA's SQLite database, small media; ``large``: a
    video stored as pieces too (8 MiB: kept to one test, restores flush what they write)."""
    make_noweb_session(root / "default" / "alice", prekeys=120)
    make_noweb_session(root / "default" / "bob", prekeys=40, seed=1)
    make_sqlite(root / SQLITE, rows=2000)
    (root / "default" / "media").mkdir()
    (root / "default" / "media" / "photo.jpg").write_bytes(os.urandom(70_000))
    if large:
        (root / "default" / "media" / "video.mp4").write_bytes(os.urandom(PIECED_MIN_BYTES + 5))
    (root / "default" / "ünïcødé.json").write_text('{"name": "✓"}')
    (root / "default" / "empty.txt").write_bytes(b"")
    key = root / "default" / "private.key"
    key.write_bytes(b"k" * 64)
    key.chmod(0o600)


def rows(db: Path) -> list[tuple[int, str]]:
    conn = sqlite3.connect(db)
    try:
        return list(conn.execute("SELECT id, body FROM events ORDER BY id"))
    finally:
        conn.close()


def files(root: Path) -> dict[str, tuple[str, int]]:
    """What a restore must reproduce: every file's content and mode (SQLite: its rows)."""
    got = {
        rel: v for rel, v in tree_digest(root).items() if not rel.endswith(("-wal", "-shm"))
    }  # SQLite's side files are never stored
    got[SQLITE] = (hashlib.sha256(repr(rows(root / SQLITE)).encode()).hexdigest(), 0)
    return got


def restored(
    store: MemoryStore, out: Path, at: datetime | None = None, read_only: bool = False
) -> dict[str, tuple[str, int]]:
    """Restore into ``out``: what it holds afterwards."""
    report = restore(store, settings(out), at=at, read_only=read_only)
    got = files(out)
    assert report.files == len(got)
    return got


def test_push_and_restore_a_generated_tree(store: MemoryStore, tmp_path: Path) -> None:
    root = tmp_path / "vol"
    generate(root, large=True)
    out = push(store, settings(root))
    scanned = files(root)
    assert out.report.commit_id == 1 and out.instance.epoch == 1
    assert out.scanned == len(scanned) and out.report.files_uploaded == len(scanned)
    assert out.report.pieces_written > 8 * 4  # the media file and the database, as pieces
    marker = read_marker(root)
    assert marker is not None and (marker.epoch, marker.commit_id) == (1, 1)
    assert marker.database == store.database_id()
    live = {e.path: e for page in store.live_entries("inst") for e in page}
    assert set(live) == set(scanned)
    assert live["default/media/video.mp4"].piece_bytes is not None
    assert live[SQLITE].piece_bytes is not None
    assert live["default/alice/creds.json"].piece_bytes is None
    # Pushing the unchanged tree again commits nothing.
    assert push(store, settings(root)).report.commit_id is None
    assert restored(store, tmp_path / "out") == files(root)
    assert (tmp_path / "out" / "default" / "private.key").stat().st_mode & 0o777 == 0o600


def test_ship_changes_and_restore_any_commit(
    store: MemoryStore, clock: Clock, tmp_path: Path
) -> None:
    root = tmp_path / "vol"
    generate(root)
    first = push(store, settings(root))
    states = {first.report.commit_id: files(root)}
    clock.forward(1)
    # The sidecar's way: ship the changed files and the deletions, one commit.
    alice = root / "default" / "alice"
    (alice / "creds.json").write_text('{"changed": true}')
    (alice / "pre-key-7.json").unlink()
    (alice / "new.json").write_text("{}")
    conn = sqlite3.connect(root / SQLITE)
    conn.execute("UPDATE events SET body = 'edited' WHERE id = 1500")
    conn.execute("INSERT INTO events (body) VALUES ('added')")
    conn.commit()
    conn.close()
    s = settings(root)
    found = scan(root, s.excludes(), s.limits())
    stored: dict[str, StoredEntry] = {e.path: e for p in store.live_entries("inst") for e in p}
    gone = deletions(found, stored, Excluder(s.excludes()))
    assert gone == ["default/alice/pre-key-7.json"]
    pieced = PiecedFiles(root)
    try:
        report = ship(
            store, "inst", first.instance.epoch, "t/sidecar[1]", found.candidates, stored, gone,
            pieced=pieced,
        )  # fmt: skip
    finally:
        pieced.close()
    assert report.commit_id == 2 and report.files_deleted == 1 and report.deleted_paths == gone
    assert report.files_uploaded == 3  # creds.json, new.json, the database
    assert 1 <= report.pieces_written <= 3  # the database's changed pages only
    assert sorted(e.path for e in report.committed_entries) == [
        "default/alice/creds.json",
        "default/alice/new.json",
        SQLITE,
    ]
    states[2] = files(root)
    clock.forward(1)
    (root / "default" / "media" / "photo.jpg").unlink()
    third = push(store, settings(root))
    assert third.report.commit_id == 3 and third.report.files_deleted == 1
    states[3] = files(root)
    for cid, hours in ((1, 1.5), (2, 0.5), (3, 0.0)):
        at = clock.at - timedelta(hours=hours)
        out = tmp_path / f"at{cid}"
        assert restored(store, out, at=at, read_only=True) == states[cid], cid
        marker = read_marker(out)
        assert marker is not None and marker.read_only and marker.commit_id == cid


def test_a_restored_volume_ships_only_what_changed(store: MemoryStore, tmp_path: Path) -> None:
    root = tmp_path / "vol"
    generate(root)
    push(store, settings(root))
    pod = tmp_path / "pod"
    report = restore(store, settings(pod))
    assert (report.epoch, report.commit_id) == (2, 1)
    assert push(store, settings(pod)).report.commit_id is None  # the same tree
    (pod / "default" / "bob" / "creds.json").write_text('{"bob": 2}')
    again = push(store, settings(pod))
    assert again.report.commit_id == 2 and again.report.files_uploaded == 1
    assert again.report.files_unchanged == len(files(pod)) - 1
    # The old volume's marker is of epoch 1: fenced, and nothing is written.
    (root / "default" / "stale.json").write_text("{}")
    with pytest.raises(FencedError, match="epoch 2"):
        push(store, settings(root))
    inst = store.instance("inst")
    assert inst is not None and inst.last_commit == 2
    # An empty volume without a marker must not overwrite stored sessions.
    (tmp_path / "empty").mkdir()
    with pytest.raises(RefusedError, match="already holds data"):
        push(store, settings(tmp_path / "empty"))


def test_restore_of_a_volume_that_is_newer_writes_nothing(
    store: MemoryStore, tmp_path: Path
) -> None:
    root = tmp_path / "vol"
    generate(root)
    push(store, settings(root))
    (root / "default" / "alice" / "unshipped.json").write_text("{}")
    report = restore(store, settings(root))  # the volume's marker is the instance's own
    assert report.volume_newer and report.written == 0 and report.local_changes == 1
    assert (root / "default" / "alice" / "unshipped.json").exists()


def test_gc_after_churn_keeps_every_state_from_the_horizon(
    store: MemoryStore, clock: Clock, tmp_path: Path
) -> None:
    root = tmp_path / "vol"
    generate(root)
    push(store, settings(root))
    states, made = {1: files(root)}, {1: clock.at}
    alice = root / "default" / "alice"
    for n in (2, 3, 4, 5):  # commits 50 hours apart, then 20
        clock.forward(50 if n < 5 else 20)
        (alice / "creds.json").write_text(f'{{"n": {n}}}')
        (alice / f"pre-key-{n}.json").unlink()
        assert push(store, settings(root)).report.commit_id == n
        states[n], made[n] = files(root), clock.at
    clock.forward(50)
    # The horizon: the last commit at or before now - 168 h is commit 2 (made 170 h ago).
    assert store.commit_at("inst", clock.at - timedelta(hours=168)) == 2
    report = collect(store, "inst", timedelta(hours=168))
    assert report.commits_deleted == 1  # commit 1
    assert report.versions_deleted == 2  # creds.json and pre-key-2.json of commit 1
    assert report.tombstones_deleted == 1  # pre-key-2's, all that is left of it
    assert report.entries_deleted == 1  # pre-key-2's tombstone row
    assert report.blobs_deleted == 2  # their content: nothing refers to it any more
    assert report.pieces_deleted == 0  # the database never changed
    assert report.bytes_freed > 0
    for cid in (2, 3, 4, 5):
        at = made[cid] + timedelta(minutes=1)
        assert restored(store, tmp_path / f"at{cid}", at=at, read_only=True) == states[cid]
    assert restored(store, tmp_path / "live") == states[5]
    assert collect(store, "inst", timedelta(hours=168)).rows_deleted == 0


def test_the_sidecar_loop_ships_changes_as_they_happen(store: MemoryStore, tmp_path: Path) -> None:
    """``TreeSync`` (the sidecar's loop for one tree), driven step by step: real inotify."""
    root = tmp_path / "vol"
    restore(store, settings(root))  # nothing stored yet: claims the instance, writes a marker
    generate(root)
    s = Settings(sessions_dir=root, instance="inst", debounce_seconds=0.05, max_delay_seconds=0.5)
    sync = TreeSync(s, store, "sessions", force=False)
    sync.watcher.start()
    try:

        def settle(seconds: float = 5.0) -> None:
            deadline = time.monotonic() + seconds
            while time.monotonic() < deadline:
                sync.collect(time.monotonic())
                sync.step(time.monotonic())
                if sync.known is not None and not len(sync.pending):
                    return
                time.sleep(0.02)
            raise AssertionError("the sidecar loop did not settle")

        settle()  # the first comparison ships the whole tree
        assert restored(store, tmp_path / "copy1", read_only=True) == files(root)
        (root / "default" / "alice" / "creds.json").write_text('{"rotated": true}')
        (root / "default" / "bob" / "pre-key-3.json").unlink()
        conn = sqlite3.connect(root / SQLITE)
        conn.execute("INSERT INTO events (body) VALUES ('while the sidecar runs')")
        conn.commit()
        conn.close()
        time.sleep(0.1)
        settle()
        assert restored(store, tmp_path / "copy2", read_only=True) == files(root)
        inst = store.instance("inst")
        assert inst is not None and inst.last_commit >= 2
    finally:
        sync.watcher.close()

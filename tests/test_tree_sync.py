"""``TreeSync`` (sidecar/tree_sync.py) driven step by step in this process: real inotify, real
database."""

from __future__ import annotations

import os
import time
from pathlib import Path

from tests.support.dbtarget import DbTarget
from waha_sync.common.config.settings import Settings
from waha_sync.common.db.url import parse_url
from waha_sync.common.store.factory import open_lazy_store
from waha_sync.sidecar.tree_sync import TreeSync


def _syncer(db: DbTarget, root: Path) -> TreeSync:
    root.mkdir(parents=True, exist_ok=True)
    assert db.cli("restore", "--sessions-dir", str(root)) == 0
    settings = Settings(sessions_dir=root, debounce_seconds=0.05, max_delay_seconds=0.5)
    store = open_lazy_store(parse_url(db.url), db.chaos_rate, "sync")
    sync = TreeSync(settings, store, "sessions", force=False)
    sync.watcher.start()
    return sync


def _settle(sync: TreeSync, seconds: float = 3.0) -> None:
    """Run the loop until nothing is pending (or ``seconds`` pass)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        sync.collect(time.monotonic())
        sync.step(time.monotonic())
        if sync.known is not None and not len(sync.pending) and not sync.watcher.rescan_needed:
            return
        time.sleep(0.05)


def _stored(db: DbTarget) -> set[str]:
    return {str(r[0]) for r in db.sql("SELECT path FROM waha_sync_entries WHERE NOT deleted")}


def test_queue_overflow_triggers_a_full_rescan(plain_db: DbTarget, tmp_path: Path) -> None:
    folder = tmp_path / "vol" / "default" / "s"
    folder.mkdir(parents=True)
    sync = _syncer(plain_db, tmp_path / "vol")
    _settle(sync)
    limit = int(Path("/proc/sys/fs/inotify/max_queued_events").read_text())
    count = limit // 3 + 200  # create + modify + close_write each: more than the queue holds
    for i in range(count):
        (folder / f"pre-key-{i}.json").write_text("{}")
    time.sleep(0.3)
    sync.collect(time.monotonic())
    assert sync.watcher.rescan_needed  # the kernel said IN_Q_OVERFLOW
    _settle(sync, 30)
    assert len([p for p in _stored(plain_db) if p.startswith("default/s/")]) == count


def test_periodic_comparison_catches_a_missed_event(plain_db: DbTarget, tmp_path: Path) -> None:
    sync = _syncer(plain_db, tmp_path / "vol")
    (tmp_path / "vol" / "a.json").write_text('{"v": 1}')
    _settle(sync)
    assert "a.json" in _stored(plain_db)
    for wd in list(sync.watcher.folders):  # events are lost from here on
        sync.watcher.folders.pop(wd)
    (tmp_path / "vol" / "a.json").write_text('{"v": 2, "missed": true}')
    (tmp_path / "vol" / "b.json").write_text("{}")
    _settle(sync, 1)
    assert "b.json" not in _stored(plain_db)
    sync.next_full = 0.0  # the periodic comparison is due
    _settle(sync)
    assert "b.json" in _stored(plain_db)
    row = plain_db.sql("SELECT size_bytes FROM waha_sync_entries WHERE path = 'a.json'")
    assert row[0][0] == len('{"v": 2, "missed": true}')


def test_restart_trusts_size_mtime_and_mode(plain_db: DbTarget, tmp_path: Path) -> None:
    sync = _syncer(plain_db, tmp_path / "vol")
    path = tmp_path / "vol" / "creds.json"
    path.write_text('{"a": 1}')
    _settle(sync)
    sync.store.close()
    st = path.stat()
    path.write_text('{"b": 2}')  # same size, and the old mtime put back: looks unchanged
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    (tmp_path / "vol" / "new.json").write_text("[]")
    settings = sync.settings
    again = TreeSync(
        settings, open_lazy_store(parse_url(plain_db.url), 0.0, "sync"), "s", force=False
    )
    again.watcher.start()
    _settle(again)
    assert "new.json" in _stored(plain_db)  # the restart compared the tree...
    sha = plain_db.sql("SELECT sha256 FROM waha_sync_entries WHERE path = 'creds.json'")[0][0]
    import hashlib

    assert sha == hashlib.sha256(b'{"a": 1}').hexdigest()  # ...without re-reading that file


def test_events_and_comparisons_leave_files_out_alike(plain_db: DbTarget, tmp_path: Path) -> None:
    """One classifier: a file left out after an event has the kind and reason a full
    comparison gives it, and /metrics labels every kind as it always did."""
    root = tmp_path / "vol"
    sync = _syncer(plain_db, root)
    sync.settings = sync.settings.model_copy(update={"max_file_bytes": 100})
    _settle(sync)
    (root / "big.bin").write_bytes(b"x" * 101)
    (root / "half.json").write_text('{"half-written')
    (root / "link.json").symlink_to("big.bin")
    os.mkfifo(root / "pipe")
    (root / "bad\udcff.json").write_text("{}")
    _settle(sync)
    by_event = dict(sync.status.skipped)
    labels = {rel: s.kind.label for rel, s in by_event.items()}
    assert labels == {
        "big.bin": "too_big",
        "half.json": "invalid_json",
        "link.json": "not_regular",
        "pipe": "not_regular",
        "bad\\udcff.json": "bad_name",
    }
    compared = sync.status.compared_at
    sync.next_full = 0.0  # the periodic comparison is due: every file classified by the scan
    _settle(sync)
    assert sync.status.compared_at != compared
    assert sync.status.skipped == by_event
    assert _stored(plain_db) == set()

"""The sidecar beyond the sessions tree: media, garbage collection, and `waha-sync up`."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from conftest import DbTarget, Server
from podsim import SidecarProc, free_port


def _wait(check: object, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, "condition never became true"
        time.sleep(0.1)


def test_media_syncs_to_its_own_database_with_mime(
    plain_db: DbTarget, pg_server: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    media_db = DbTarget(pg_server.create_database(serializable=False), "postgresql", 0.0)
    monkeypatch.setenv("WAHA_MEDIA_STORAGE", "postgresql")
    monkeypatch.setenv("WAHA_MEDIA_POSTGRESQL_URL", media_db.url)
    vol, media = tmp_path / "sessions", tmp_path / "media"
    vol.mkdir()
    assert plain_db.cli("restore", "--sessions-dir", str(vol), "--media-dir", str(media)) == 0
    assert media.is_dir()  # created for WAHA by the restore
    side = SidecarProc(plain_db, vol, tmp_path / "side.log").start("--media-dir", str(media))
    side.ready()
    side.wait_for("in sync with the database", 2)  # both trees
    (media / "true_123@c.us_ABC.jpeg").write_bytes(b"\xff\xd8\xff" + os.urandom(5000))
    (vol / "creds.json").write_text("{}")

    def stored(db: DbTarget) -> list[list[object]]:
        return db.sql("SELECT instance, path, mime FROM waha_sync_entries WHERE NOT deleted")

    _wait(lambda: stored(media_db) and stored(plain_db))
    health = {
        "sessions": {"count": 0, "total_size_bytes": 2},  # creds.json is in no session folder
        "media": {"count": 1, "total_size_bytes": 5003, "enabled": True},
    }
    _wait(lambda: side.get("/health").json()["data"] == health)
    side.stop_ok()
    assert stored(media_db) == [["default/media", "true_123@c.us_ABC.jpeg", "image/jpeg"]]
    assert stored(plain_db) == [["default", "creds.json", "application/json"]]
    fresh_vol, fresh_media = tmp_path / "v2", tmp_path / "m2"
    args = ["restore", "--read-only", "--sessions-dir", str(fresh_vol)]
    assert plain_db.cli(*args, "--media-dir", str(fresh_media)) == 0
    assert (fresh_media / "true_123@c.us_ABC.jpeg").read_bytes()[:3] == b"\xff\xd8\xff"
    skipped = tmp_path / "m3"
    assert (
        plain_db.cli(
            *args[:-1],
            str(tmp_path / "v3"),
            "--media-dir",
            str(skipped),
            "--restore-media",
            "false",
        )
        == 0
    )
    assert not skipped.exists()  # restoring media was turned off


def test_up_runs_restore_and_sidecar_on_embedded_postgres(tmp_path: Path) -> None:
    data = Path(tempfile.mkdtemp(prefix="wsup")) / "pg"  # short: it holds a Unix socket
    env = {k: v for k, v in os.environ.items() if "DATABASE_URL" not in k}
    env = {k: v for k, v in env.items() if not k.startswith("WAHA_SYNC_")}
    env.update(
        WAHA_SYNC_DEBOUNCE_SECONDS="0.2",
        WAHA_SYNC_LOCAL_DB_DIR=str(data),
        WAHA_SYNC_PORT=str(free_port()),
    )

    def up(folder: Path, log: Path) -> subprocess.Popen[bytes]:
        cmd = [sys.executable, "-m", "waha_sync.cli", "up", "--sessions-dir", str(folder)]
        with log.open("wb") as out:
            return subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT)

    first_log = tmp_path / "up1.log"
    proc = up(tmp_path / "laptop", first_log)
    _wait(lambda: "in sync with the database" in first_log.read_text(), 120)
    assert f"embedded PostgreSQL in {data}" in first_log.read_text()
    (tmp_path / "laptop" / "default").mkdir()
    (tmp_path / "laptop" / "default" / "creds.json").write_text('{"phone": "paired"}')
    proc.send_signal(signal.SIGINT)  # Ctrl-C: the final flush ships the new file
    assert proc.wait(60) == 0, first_log.read_text()
    second_log = tmp_path / "up2.log"
    proc = up(tmp_path / "new-laptop", second_log)
    _wait(lambda: "in sync with the database" in second_log.read_text(), 120)
    restored = tmp_path / "new-laptop" / "default" / "creds.json"
    assert restored.read_text() == '{"phone": "paired"}'
    proc.send_signal(signal.SIGINT)
    assert proc.wait(60) == 0, second_log.read_text()
    shutil.rmtree(data.parent)  # `up` stopped its server on the way out


def test_sidecar_collects_old_history_in_the_background(plain_db: DbTarget, tmp_path: Path) -> None:
    vol = tmp_path / "vol"
    vol.mkdir()
    (vol / "creds.json").write_text('{"v": 1}')
    assert plain_db.cli("push", "--sessions-dir", str(vol)) == 0
    (vol / "creds.json").write_text('{"v": 2, "newer": true}')
    assert plain_db.cli("push", "--sessions-dir", str(vol)) == 0
    old = "now() - interval '3 days'"
    plain_db.sql(f"UPDATE waha_sync_commits SET created_at = {old}")
    plain_db.sql(f"UPDATE waha_sync_blobs SET used_at = {old}")
    assert plain_db.sql("SELECT count(*) FROM waha_sync_versions")[0][0] == 2
    side = SidecarProc(
        plain_db,
        vol,
        tmp_path / "side.log",
        WAHA_SYNC_GC_INTERVAL_SECONDS="1",
        WAHA_SYNC_RETENTION_HOURS="24",
    ).start()
    side.ready()
    _wait(lambda: plain_db.sql("SELECT count(*) FROM waha_sync_versions")[0][0] == 1)
    _wait(lambda: plain_db.sql("SELECT count(*) FROM waha_sync_blobs")[0][0] == 1)
    side.stop_ok()
    assert "gc done: instance default: deleted 1 old version," in side.log()
    got = plain_db.sql("SELECT size_bytes FROM waha_sync_entries WHERE path = 'creds.json'")
    assert got == [[len('{"v": 2, "newer": true}')]]  # the live tree is untouched


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

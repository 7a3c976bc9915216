"""The media tree (``--media-dir``): restore creates it and fills it, the sidecar ships it to a
database of its own with each file's MIME type, and ``--restore-media false`` leaves it out."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.support.dbtarget import DbTarget, Server
from tests.support.podsim import SidecarProc, wait_until


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

    wait_until(lambda: stored(media_db) and stored(plain_db))
    health = {
        "sessions": {"count": 0, "total_size_bytes": 2},  # creds.json is in no session folder
        "media": {"count": 1, "total_size_bytes": 5003, "enabled": True},
    }
    wait_until(lambda: side.get("/health").json()["data"] == health)
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

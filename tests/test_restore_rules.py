"""Restore's safety rules and its rules for non-empty targets, against a real database."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.support.dbtarget import DbTarget
from tests.support.wahatree import make_noweb_session, tree_digest


@pytest.fixture
def pushed(db: DbTarget, tmp_path: Path) -> Path:
    root = tmp_path / "src"
    make_noweb_session(root / "default" / "alice", prekeys=20)
    assert db.cli("push", "--sessions-dir", str(root)) == 0
    return root


@pytest.mark.parametrize(
    "bad",
    # '' sorts first: restore pages by path, and its first page once started after ''.
    [
        "../evil.json",
        "/etc/evil.json",
        "default/../../evil.json",
        "default//x.json",
        "./x.json",
        "",
    ],
)
def test_traversal_rows_are_refused(
    db: DbTarget, pushed: Path, tmp_path: Path, bad: str, capsys: pytest.CaptureFixture[str]
) -> None:
    for table in ("waha_sync_versions", "waha_sync_entries"):
        db.sql(f"UPDATE {table} SET path = :p WHERE path = 'default/alice/creds.json'", p=bad)
    target = tmp_path / "deep" / "target"
    assert db.cli("restore", "--sessions-dir", str(target)) == 1
    err = capsys.readouterr().err
    assert f"{bad!r}: refusing stored path" in err
    assert "Traceback" not in err
    assert not (tmp_path / "deep" / "evil.json").exists()
    assert not (tmp_path / "evil.json").exists()
    assert not (target / ".waha-sync" / "restored.json").exists(), "no marker after a failure"


def test_symlink_in_target_is_not_followed(
    db: DbTarget, pushed: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    target = tmp_path / "target"
    target.mkdir()
    (target / "default").symlink_to(elsewhere)
    assert db.cli("restore", "--sessions-dir", str(target)) == 1
    assert "which is a symlink" in capsys.readouterr().err
    assert list(elsewhere.iterdir()) == []


def test_non_empty_target_rules(
    db: DbTarget, pushed: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The database wins over a volume whose claim was superseded: identical files stay,
    differing and unknown ones are moved aside (never deleted), temp files go."""
    target = tmp_path / "target"
    assert db.cli("restore", "--sessions-dir", str(target)) == 0
    assert db.cli("restore", "--sessions-dir", str(tmp_path / "elsewhere")) == 0  # a new claim
    same = target / "default" / "alice" / "pre-key-1.json"
    changed = target / "default" / "alice" / "creds.json"
    local = target / "default" / "alice" / "local-only.json"
    inode_before = same.stat().st_ino
    changed.write_text('{"tampered": true}')
    local.write_text("{}")
    (target / "default" / f".x{'.waha-sync-tmp-'}dead").write_text("stale temp")
    capsys.readouterr()
    assert db.cli("restore", "--sessions-dir", str(target)) == 0
    err = capsys.readouterr().err
    assert "the database's tree wins (the marker's epoch 2 was superseded by epoch 3)" in err
    assert same.stat().st_ino == inode_before, "identical file must be left alone"
    assert json.loads(changed.read_text()) == json.loads(
        (pushed / "default" / "alice" / "creds.json").read_text()
    )
    assert not local.exists()
    [folder] = (target / ".waha-sync" / "displaced").iterdir()
    assert (folder / "default/alice/local-only.json").read_text() == "{}"
    assert (folder / "default/alice/creds.json").read_text() == '{"tampered": true}'
    assert f"displaced local file (now in .waha-sync/displaced/{folder.name}): " in err
    assert "default/alice/local-only.json" in err and "2 displaced" in err
    assert not any(".waha-sync-tmp-" in p.name for p in target.rglob("*"))
    assert tree_digest(target) == tree_digest(pushed)


def test_restore_as_of_a_past_time(db: DbTarget, pushed: Path, tmp_path: Path) -> None:
    creds = pushed / "default" / "alice" / "creds.json"
    old = creds.read_bytes()
    time.sleep(0.05)
    between = datetime.now(UTC)
    time.sleep(0.05)
    creds.write_text('{"version": 2}')
    (pushed / "default" / "alice" / "pre-key-3.json").unlink()
    assert db.cli("push", "--sessions-dir", str(pushed)) == 0

    now_dir, then_dir = tmp_path / "now", tmp_path / "then"
    assert db.cli("restore", "--sessions-dir", str(now_dir)) == 0
    assert (
        db.cli(
            "restore", "--read-only", "--at", between.isoformat(), "--sessions-dir", str(then_dir)
        )
        == 0
    )
    assert (now_dir / "default/alice/creds.json").read_text() == '{"version": 2}'
    assert not (now_dir / "default/alice/pre-key-3.json").exists()
    assert (then_dir / "default/alice/creds.json").read_bytes() == old
    assert (then_dir / "default/alice/pre-key-3.json").exists()


def test_empty_volume_never_overwrites_stored_sessions(
    db: DbTarget, pushed: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    assert db.cli("push", "--sessions-dir", str(fresh)) == 2
    err = capsys.readouterr().err
    assert "refusing to upload" in err and "Try: run `waha-sync restore`" in err
    stored = len(tree_digest(pushed))
    assert db.sql("SELECT count(*) FROM waha_sync_files")[0][0] == stored

    ro = tmp_path / "inspect"
    assert db.cli("restore", "--read-only", "--sessions-dir", str(ro)) == 0
    assert json.loads((ro / ".waha-sync/restored.json").read_text())["read_only"] is True
    assert db.cli("push", "--sessions-dir", str(ro)) == 2
    assert "read-only restore" in capsys.readouterr().err

    assert db.cli("push", "--force", "--sessions-dir", str(fresh)) == 0
    assert db.sql("SELECT count(*) FROM waha_sync_files")[0][0] == 0


def test_restore_fences_the_previous_writer(
    db: DbTarget, pushed: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    first, second = tmp_path / "pod1", tmp_path / "pod2"
    assert db.cli("restore", "--sessions-dir", str(first)) == 0
    assert db.cli("restore", "--sessions-dir", str(second)) == 0
    (first / "default" / "late.json").write_text("{}")
    capsys.readouterr()
    assert db.cli("push", "--sessions-dir", str(first)) == 1
    assert "fenced: instance default was claimed by" in capsys.readouterr().err
    assert (
        db.sql("SELECT count(*) FROM waha_sync_files WHERE path = 'default/late.json'")[0][0] == 0
    )
    (second / "default" / "ok.json").write_text("{}")
    assert db.cli("push", "--sessions-dir", str(second)) == 0


def test_corrupt_chunk_fails_clearly_and_writes_nothing(
    db: DbTarget, pushed: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sha = db.sql("SELECT sha256 FROM waha_sync_entries WHERE path = 'default/alice/creds.json'")
    db.sql("UPDATE waha_sync_chunks SET data = :d WHERE sha256 = :s", d=b"garbage", s=sha[0][0])
    target = tmp_path / "target"
    assert db.cli("restore", "--sessions-dir", str(target)) == 1
    err = capsys.readouterr().err
    assert "default/alice/creds.json: stored content" in err
    assert not (target / "default" / "alice" / "creds.json").exists()
    assert not (target / ".waha-sync" / "restored.json").exists()


def test_nothing_stored_is_success(
    db: DbTarget, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert db.cli("restore", "--instance", "nobody", "--sessions-dir", str(tmp_path / "t")) == 0
    assert "[RESTORE] nothing stored for instance nobody" in capsys.readouterr().err
    marker = json.loads((tmp_path / "t" / ".waha-sync" / "restored.json").read_text())
    assert marker["instance"] == "nobody" and marker["epoch"] == 1


def test_invalid_json_keeps_the_stored_version(
    db: DbTarget, pushed: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    creds = pushed / "default" / "alice" / "creds.json"
    good = creds.read_bytes()
    creds.write_bytes(good[: len(good) // 2])  # a half-written writeFile
    capsys.readouterr()
    assert db.cli("push", "--sessions-dir", str(pushed)) == 0
    assert "skipped default/alice/creds.json: invalid JSON" in capsys.readouterr().err
    target = tmp_path / "target"
    assert db.cli("restore", "--sessions-dir", str(target)) == 0
    assert (target / "default" / "alice" / "creds.json").read_bytes() == good


def test_uid_and_gid_own_everything_restored(db: DbTarget, pushed: Path, tmp_path: Path) -> None:
    import os

    root = os.geteuid() == 0  # only root can give files away; CI runs as root
    uid, gid = (1234, 2345) if root else (os.getuid(), os.getgid())
    target = tmp_path / "owned"
    assert (
        db.cli("restore", "--uid", str(uid), "--gid", str(gid), "--sessions-dir", str(target)) == 0
    )
    owners = {(p.stat().st_uid, p.stat().st_gid) for p in [target, *target.rglob("*")]}
    assert owners == {(uid, gid)}


def test_unreadable_file_is_reported_and_keeps_its_stored_version(
    db: DbTarget, pushed: Path, tmp_path: Path
) -> None:
    import os
    import subprocess
    import sys

    key = pushed / "default" / "alice" / "pre-key-2.json"
    stored = key.read_bytes()
    key.write_text('{"changed": 1}')
    key.chmod(0)
    cmd = [sys.executable, "-m", "waha_sync.cli", "push", "--sessions-dir", str(pushed)]
    if os.geteuid() == 0:  # root reads anything: drop the capabilities that let it
        cmd = ["setpriv", "--bounding-set=-dac_override,-dac_read_search", *cmd]
    proc = subprocess.run(cmd, env=db.env(), capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    assert "skipped default/alice/pre-key-2.json: unreadable (permission denied)" in proc.stderr
    target = tmp_path / "target"
    assert db.cli("restore", "--sessions-dir", str(target)) == 0
    assert (target / "default" / "alice" / "pre-key-2.json").read_bytes() == stored


def test_named_temp_files_where_unnamed_ones_are_unavailable(
    db: DbTarget, pushed: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from waha_sync.init import safepath

    monkeypatch.setattr(safepath, "USE_UNNAMED", False)  # as on a filesystem without O_TMPFILE
    target = tmp_path / "target"
    assert db.cli("restore", "--sessions-dir", str(target)) == 0
    assert tree_digest(target) == tree_digest(pushed)
    assert not any(safepath.TMP_MARK in p.name for p in target.rglob("*"))

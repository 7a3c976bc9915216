"""bench/bench_sqlite.py and its parts: the histogram quantile, the process-tree sampler, and
a tiny run of the section end to end (the generator and the churn writer are realclient's)."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench import bench_sqlite
from bench.procstat import TreeSampler

REPO = Path(__file__).resolve().parents[1]

MIB = 1024 * 1024


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

"""Benchmark a sidecar restart over many known files: spawn → "in sync with the database".

A throwaway PostgreSQL (fsync=off); 100,000 (--quick: 10,000) NOWEB-like files in sessions of
~1,000, pushed once; then, nothing changed, ``waha-sync sidecar`` (the product's timings) is
started ``rounds`` times (3; 2) and timed from spawn to its "in sync with the database" line,
median shown, next to ``find -printf '%s %T@'`` (a stat walk) and ``tar -cf /dev/null``
(GNU tar then reads no content) over the same tree in the same round, and the start of a
Python that only imports the sidecar. Goal: < 10 s, and no commit (nothing changed).
Exit 0 whenever the benchmark ran.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

from bench.bench_sidecar import MB, NOTES, bare_python, cli, commits, run, spawn, stop
from bench.procstat import status
from bench.table import Row, Section, report, verdict
from bench.trees import noweb_tree, scratch_server
from tests.support.dbtarget import DbTarget
from waha_sync.common.local.postgres import LocalPostgres


def phase_restart(args: argparse.Namespace, pg: LocalPostgres, work: Path) -> list[Row]:
    pg.psql("CREATE DATABASE bench_restart")
    db = DbTarget(pg.url("bench_restart"), "postgresql", 0.0)
    root = work / "big"
    root.mkdir()
    cli(db, "restore", "--sessions-dir", str(root))
    t0 = time.monotonic()
    files = noweb_tree(root, args.restart_files, 1000, seed=100)
    made = time.monotonic() - t0
    pushed = cli(db, "push", "--sessions-dir", str(root))
    commits0 = commits(db)
    took: dict[str, list[float]] = {"side": [], "find": [], "tar": []}
    rss: dict[str, int] = {}
    for i in range(args.rounds):
        os.sync()
        t0 = time.monotonic()
        side = spawn(db, root, work / f"restart-{i}.log")
        try:
            side.ready()
            took["side"].append(time.monotonic() - t0)
            rss = status(side.proc.pid) if side.proc else {}
        finally:
            stop(side)
        took["find"].append(run(["find", str(root), "-type", "f", "-printf", "%s %T@\n"]))
        took["tar"].append(run(["tar", "-cf", "/dev/null", "-C", str(root), "."]))
    extra = commits(db) - commits0
    t, f, tar = (statistics.median(took[k]) for k in ("side", "find", "tar"))
    spread = f"{min(took['side']):.2f}-{max(took['side']):.2f}"
    _, py = bare_python()
    return [
        (f"restart tree: generate / waha-sync push {files:,} files", f"{made:.1f} / {pushed:.1f} s",
         "—", "—", "—", "info"),
        (f"restart → in sync, nothing changed ({files:,} files, median of {args.rounds}; "
         f"{extra} new commits)", f"{t:.2f} s ({spread})",
         f"find {f:.2f} s; tar {tar:.2f} s; python+import {py:.2f} s",
         f"{t / f:.1f}x find, {t / tar:.1f}x tar",
         "< 10 s", verdict(t < 10 and extra == 0)),
        ("VmRSS / VmHWM at in sync after restart",
         f"{rss['VmRSS'] / MB:.1f} / {rss['VmHWM'] / MB:.1f} MB", "—", "—", "—", "info"),
    ]  # fmt: skip


def measure(files: int, rounds: int) -> Section:
    """Push ``files`` files once, then restart the sidecar ``rounds`` times; the results."""
    started = time.monotonic()
    NOTES.clear()
    args = argparse.Namespace(restart_files=files, rounds=rounds)
    with scratch_server("restart") as (pg, work):
        rows = phase_restart(args, pg, work)
        version = pg.psql("SHOW server_version").strip()
    about = [
        f"{files:,} known NOWEB-like files, nothing changed; {rounds} restarts, median shown; "
        f"PostgreSQL {version} (local, fsync=off). Baselines measured in the same rounds."
    ]
    return Section(f"Sidecar restart with {files:,} known files", about, rows, list(NOTES),
                   time.monotonic() - started)  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="10,000 files, 2 rounds")
    args = parser.parse_args(argv)
    return report(
        "bench_restart", lambda: measure(10_000, 2) if args.quick else measure(100_000, 3)
    )


if __name__ == "__main__":
    sys.exit(main())

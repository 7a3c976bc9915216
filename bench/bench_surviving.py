"""Benchmark restore into a volume that survived a restart (every file unchanged).

Method
------
1. The WAHA-like tree of ``bench_core`` (``--files`` ~9,000, ``--mb`` ~40), pushed once
   into a throwaway PostgreSQL (fsync=off), then restored into a volume once (untimed).
2. Each round times, one right after the other (each after ``os.sync()``, each
   ``waha-sync restore`` as a process of its own, as an init container runs it):

   - **volume newer**: the volume's marker is this instance's current claim (the usual
     restart): restore claims a new epoch, walks the tree by ``stat`` and writes nothing;
   - **database wins**: another claim is made first (one SQL update, untimed, as another
     pod's restore would), so restore compares every file with the stored version by
     SHA-256 and writes or moves nothing (all unchanged);
   - **baseline, idempotent restore as before**: ``--baseline-path DIR`` names a folder
     holding an older waha-sync (``pip install --no-deps --target DIR <older checkout>``);
     its restore reads and hashes every file, as every restore did before markers decided.

3. Medians over ``--repeat`` rounds; ratios per round against the baseline (or, without
   one, against "database wins", which does the same reading). Exit status 0 whenever the
   benchmark ran.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from bench.table import Row, Section, report, verdict
from bench.trees import check_restore, make_tree, mib, scratch_server
from waha_sync.common.local.postgres import LocalPostgres

ENV_URLS = ("WAHA_SYNC_DATABASE_URL", "WHATSAPP_SESSIONS_POSTGRESQL_URL", "DATABASE_URL")


def restore_seconds(url: str, folder: Path, pythonpath: str | None = None) -> tuple[float, str]:
    """Wall seconds of one ``waha-sync restore`` process (after a sync), and its log."""
    env = {k: v for k, v in os.environ.items() if k not in ENV_URLS}
    env["WAHA_SYNC_DATABASE_URL"] = url
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    else:
        env.pop("PYTHONPATH", None)
    cmd = [sys.executable, "-m", "waha_sync.cli", "restore", "--sessions-dir", str(folder)]
    os.sync()
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"restore exited {proc.returncode}: {proc.stderr.strip()[-500:]}")
    return seconds, proc.stderr


def _expect(log: str, text: str, what: str) -> None:
    if text not in log:
        raise RuntimeError(f"{what}: expected {text!r} in the restore log:\n{log[-800:]}")


def rounds(pg: LocalPostgres, work: Path, repeat: int, baseline: str | None) -> list[Row]:
    url = pg.url()
    vol = work / "vol"
    restore_seconds(url, vol)  # the volume as a first start leaves it
    times: dict[str, list[float]] = {"newer": [], "wins": [], "base": []}
    for _ in range(repeat):
        restore_seconds(url, vol)  # the marker is current (and names this database) again
        seconds, log = restore_seconds(url, vol)
        _expect(log, "volume is newer than the database: 0 local changes kept", "volume newer")
        times["newer"].append(seconds)
        pg.psql("UPDATE waha_sync_instances SET epoch = epoch + 1")  # another pod's claim
        seconds, log = restore_seconds(url, vol)
        _expect(log, "0 written", "database wins")
        _expect(log, "0 displaced", "database wins")
        times["wins"].append(seconds)
        if baseline:
            seconds, log = restore_seconds(url, vol, baseline)
            _expect(log, "0 written", "baseline")
            times["base"].append(seconds)
    check_restore(work / "tree", vol)
    med = {k: statistics.median(v) for k, v in times.items() if v}
    ref_key = "base" if baseline else "wins"
    ref = med[ref_key]
    ref_name = "idempotent restore, older waha-sync" if baseline else "database wins (same reads)"
    per_round = [n / b for n, b in zip(times["newer"], times[ref_key], strict=True)]
    ratio = statistics.median(per_round)
    rows: list[Row] = [
        (
            "restore into the surviving volume: volume newer (stat walk, nothing written)",
            f"{med['newer']:.2f} s",
            f"{ref:.2f} s ({ref_name})",
            f"{ratio:.2f}x",
            "≤ 1x",
            verdict(ratio <= 1.0),
        ),
        (
            "restore into the surviving volume: database wins (every file hashed, 0 moved)",
            f"{med['wins']:.2f} s",
            f"{ref:.2f} s ({ref_name})",
            f"{med['wins'] / ref:.2f}x",
            "—",
            "info",
        ),
    ]
    if baseline:
        rows.append(
            (
                "idempotent restore, older waha-sync (every file hashed)",
                f"{med['base']:.2f} s",
                "—",
                "—",
                "—",
                "baseline",
            )
        )
    return rows


def measure(
    files: int, mb: float, repeat: int, baseline: str | None = None, seed: int = 1
) -> Section:
    started = time.monotonic()
    for name in ENV_URLS:
        os.environ.pop(name, None)
    with scratch_server("surviving") as (pg, work):
        count, raw = make_tree(work / "tree", files, mb, seed, "mixed")
        push = [sys.executable, "-m", "waha_sync.cli", "push", "--sessions-dir", str(work / "tree")]
        env = {**os.environ, "WAHA_SYNC_DATABASE_URL": pg.url()}
        subprocess.run(push, env=env, check=True, capture_output=True)
        rows = rounds(pg, work, repeat, baseline)
        version = pg.psql("SHOW server_version").strip()
    about = [
        f"Tree (mixed): {count:,} files, {mib(raw)} (seed {seed}), all unchanged on the volume; "
        f"rounds: {repeat}, medians shown; each restore a process of its own (wall time).",
        f"Server: PostgreSQL {version} (local, fsync=off).",
    ]
    title = f"Restore into a surviving volume, {count:,} unchanged files"
    return Section(title, about, rows, [], time.monotonic() - started)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=9000)
    parser.add_argument("--mb", type=float, default=40)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument(
        "--baseline-path",
        default=None,
        help="folder holding an older waha-sync (pip install --no-deps --target DIR ...)",
    )
    args = parser.parse_args()
    return report(
        "bench_surviving",
        lambda: measure(args.files, args.mb, args.repeat, args.baseline_path),
    )


if __name__ == "__main__":
    raise SystemExit(main())

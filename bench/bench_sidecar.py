"""Benchmark the sidecar as a real process: latency, idle cost, memory, restart time.

A throwaway PostgreSQL (fsync=off) and ``waha-sync sidecar`` as a subprocess with the
product's default timings (debounce 1 s, max delay 10 s); everything in one temp folder.

1. Latency: 8,630 NOWEB-like files restored-then-shipped; then 300 (--quick: 60) small JSON
   files written non-atomically, 50-400 ms apart, some rewritten while in flight (those are
   superseded, not measured). Durable = ``waha_sync_entries`` holds exactly that SHA-256
   (polled every ~5 ms). Goal: p99 <= debounce + 0.25 s.
2. Idle: 60 s (10 s) with nothing changing: CPU (utime+stime) as % of a core; wake-ups =
   growth of context switches over all threads. Goal: < 5/s: only the HTTP server's 1 s
   tick and the health check's database read every 2 s wake it (the syncer sleeps in the
   kernel; before HTTP existed this was 0/s).
3. Memory: VmRSS / VmHWM after the latency phase, and after a restart over the same tree
   (the usual pod start); baseline: a Python that only imports the sidecar. Goal < 64 MB
   (60 MB before the HTTP side; its libraries and two threads cost about 4 MB).
4. Restart: 100,000 (10,000) stored files, nothing changed: spawn → "in sync with the
   database", median of 3 (2), next to ``find -printf`` and ``tar -cf /dev/null`` (GNU tar
   then reads no content). Goal: < 10 s.

"baseline" was measured in the same run; "ratio" is value / baseline; "verdict" compares
the value with the goal. Exit 0 whenever the benchmark ran.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from procstat import cpu_seconds, status, switches
from table import print_table

from conftest import DbTarget
from podsim import SidecarProc
from waha_sync.common.connect import open_connection
from waha_sync.common.localpg import LocalPostgres
from waha_sync.common.pgurl import parse_url
from wahatree import make_noweb_session

MB = 1_000_000  # the goals are in decimal megabytes
DEBOUNCE = 1.0  # the product's default, which this benchmark runs with
POLL_SQL = (
    "SELECT path, sha256 FROM waha_sync_entries "
    "WHERE instance = 'default' AND NOT deleted AND path = ANY(:paths)"
)
Row = tuple[str, str, str, str, str, str]
VERDICT = {True: "PASS", False: "MISS"}
NOTES: list[str] = []  # anything odd seen on the way, printed under the table


def sessions(root: Path, files: int, per: int, seed: int) -> int:
    """NOWEB sessions of ~``per`` files each (creds, pre-keys, sessions, app-state keys)."""
    count = max(1, round(files / per))
    prekeys = max(1, round((per - 3) / 1.075))
    for i in range(count):
        make_noweb_session(root / "default" / f"noweb-{i + 1}", prekeys=prekeys, seed=seed + i)
    return sum(1 for p in root.rglob("*") if p.is_file() and ".waha-sync" not in p.parts)


def run(cmd: list[str], env: dict[str, str] | None = None) -> float:
    """Run a command to completion (its output discarded); its wall seconds."""
    t0 = time.monotonic()
    proc = subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    if proc.returncode != 0:
        raise RuntimeError(f"{cmd[:4]} exited {proc.returncode}: {proc.stderr.decode()}")
    return time.monotonic() - t0


def cli(db: DbTarget, *args: str) -> float:
    return run([sys.executable, "-m", "waha_sync", *args, "--log-level", "WARNING"], db.env())


def commits(db: DbTarget) -> int:
    return int(str(db.sql("SELECT count(*) FROM waha_sync_commits")[0][0]))


def spawn(db: DbTarget, root: Path, log: Path) -> SidecarProc:
    side = SidecarProc(db, root, log)
    side.env = {}  # the product's defaults, not the tests' fast timings
    return side.start()


def stop(side: SidecarProc) -> None:
    code = side.term(120)
    if code != 0:
        NOTES.append(f"sidecar exited {code} on SIGTERM; log tail:\n{side.log()[-2000:]}")


def latency(db: DbTarget, root: Path, n: int, rng: random.Random) -> tuple[list[float], int, int]:
    """Seconds from each write to its content being in the database; lost and superseded."""
    conn = open_connection(parse_url(db.url))
    pool = sorted((root / "default").rglob("pre-key-*.json"))
    pool = rng.sample(pool, min(len(pool), 2000))
    pool += [root / "default" / f"noweb-{i % 10 + 1}" / f"pre-key-new-{i}.json" for i in range(n)]
    inflight: dict[str, tuple[str, float]] = {}
    done: list[float] = []
    lost = written = superseded = 0
    next_write = time.monotonic()
    try:
        while written < n or inflight:
            if written < n and time.monotonic() >= next_write:
                if inflight and rng.random() < 0.1:  # rewrite a file still in flight
                    path, superseded = root / rng.choice(list(inflight)), superseded + 1
                else:
                    path = rng.choice([p for p in pool if str(p.relative_to(root)) not in inflight])
                body = {"private": rng.randbytes(32).hex(), "public": rng.randbytes(32).hex()}
                data = json.dumps({**body, "n": written}, indent=2).encode()
                t0 = time.monotonic()
                path.write_bytes(data)  # truncate + write, not atomic: as Node's writeFile
                inflight[str(path.relative_to(root))] = (hashlib.sha256(data).hexdigest(), t0)
                written += 1
                next_write = t0 + rng.uniform(0.05, 0.4)
            if inflight:
                rows = conn.run(POLL_SQL, paths=list(inflight)) or []
                seen = time.monotonic()
                for rel, sha in rows:
                    if inflight[rel][0] == sha:
                        done.append(seen - inflight.pop(rel)[1])
                for rel in [r for r, (_, t0) in inflight.items() if seen - t0 > 30]:
                    del inflight[rel]
                    lost += 1
            time.sleep(0.005)
    finally:
        conn.close()
    return done, lost, superseded


def bare_python() -> tuple[int, float]:
    """VmRSS of a Python that only imported the sidecar, and how long starting it took."""
    code = "import sys, time, waha_sync.sidecar.run; print('ok', flush=True); time.sleep(60)"
    t0 = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ok"
        took = time.monotonic() - t0
        time.sleep(0.2)
        return status(proc.pid)["VmRSS"], took
    finally:
        proc.terminate()
        proc.wait(10)


def phase_live(args: argparse.Namespace, pg: LocalPostgres, work: Path) -> list[Row]:
    pg.psql("CREATE DATABASE bench_live")
    db = DbTarget(pg.url("bench_live"), "postgresql", 0.0)
    root = work / "live"
    root.mkdir()
    cli(db, "restore", "--sessions-dir", str(root))
    files = sessions(root, 8630, 863, seed=1)
    t0 = time.monotonic()
    side = spawn(db, root, work / "live.log")
    try:
        side.ready()
        first = time.monotonic() - t0
        done, lost, superseded = latency(db, root, args.changes, random.Random(7))
        pid = side.proc.pid if side.proc else 0
        mem = status(pid)
        time.sleep(2)  # settle: the last commit's log lines, frees
        c0, s0, w0 = cpu_seconds(pid), switches(pid), time.monotonic()
        time.sleep(args.idle)
        c1, s1, w1 = cpu_seconds(pid), switches(pid), time.monotonic()
    finally:
        stop(side)
    n_commits = commits(db)
    side = spawn(db, root, work / "live-again.log")  # the usual pod start: all already stored
    try:
        side.ready()
        time.sleep(1)
        again = status(side.proc.pid if side.proc else 0)
    finally:
        stop(side)
    base, _ = bare_python()
    p50, p99 = statistics.median(done), statistics.quantiles(done, n=100, method="inclusive")[98]
    wakes = (s1 - s0) / (w1 - w0)
    goal = DEBOUNCE + 0.25
    return [
        (f"first start: ship {files} files (restore, then sidecar)", f"{first:.2f} s",
         "—", "—", "—", "info"),
        (f"change→durable p50 / p99 / max ({len(done)} changes measured, {superseded} "
         f"rewritten in flight, {lost} lost; {n_commits} commits)",
         f"{p50:.3f} / {p99:.3f} / {max(done):.3f} s", f"debounce {DEBOUNCE:g} s",
         f"{p99 / DEBOUNCE:.2f}x", f"p99 ≤ {goal:g} s", VERDICT[p99 <= goal and not lost]),
        (f"idle CPU over {w1 - w0:.0f} s", f"{100 * (c1 - c0) / (w1 - w0):.3f} % of a core",
         "—", "—", "~0", "info"),
        (f"idle wake-ups over {w1 - w0:.0f} s", f"{s1 - s0} ({wakes:.2f}/s)", "—", "—",
         "< 5/s (HTTP tick, health check)", VERDICT[wakes < 5]),
        (f"VmRSS / VmHWM after first start (uploaded all {files} files) and latency phase",
         f"{mem['VmRSS'] / MB:.1f} / {mem['VmHWM'] / MB:.1f} MB",
         f"bare import {base / MB:.1f} MB", f"{mem['VmRSS'] / base:.2f}x", "< 64 MB",
         VERDICT[mem["VmRSS"] < 64 * MB]),
        (f"VmRSS / VmHWM after a restart over the same {files} stored files",
         f"{again['VmRSS'] / MB:.1f} / {again['VmHWM'] / MB:.1f} MB",
         f"bare import {base / MB:.1f} MB", f"{again['VmRSS'] / base:.2f}x", "< 64 MB",
         VERDICT[again["VmRSS"] < 64 * MB]),
    ]  # fmt: skip


def phase_restart(args: argparse.Namespace, pg: LocalPostgres, work: Path) -> list[Row]:
    pg.psql("CREATE DATABASE bench_restart")
    db = DbTarget(pg.url("bench_restart"), "postgresql", 0.0)
    root = work / "big"
    root.mkdir()
    cli(db, "restore", "--sessions-dir", str(root))
    t0 = time.monotonic()
    files = sessions(root, args.restart_files, 1000, seed=100)
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
        (f"restart tree: generate / waha-sync push {files} files", f"{made:.1f} / {pushed:.1f} s",
         "—", "—", "—", "info"),
        (f"restart → in sync, nothing changed ({files} files, median of {args.rounds}; "
         f"{extra} new commits)", f"{t:.2f} s ({spread})",
         f"find {f:.2f} s; tar {tar:.2f} s; python+import {py:.2f} s",
         f"{t / f:.1f}x find, {t / tar:.1f}x tar",
         "< 10 s", VERDICT[t < 10 and extra == 0]),
        ("VmRSS / VmHWM at in sync after restart",
         f"{rss['VmRSS'] / MB:.1f} / {rss['VmHWM'] / MB:.1f} MB", "—", "—", "info", "info"),
    ]  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer changes, 10 s idle, 10k")
    args = parser.parse_args(argv)
    sizes = (60, 10.0, 10_000, 2) if args.quick else (300, 60.0, 100_000, 3)
    args.changes, args.idle, args.restart_files, args.rounds = sizes
    started = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="wsbench-sidecar-"))
    pg = LocalPostgres(work / "pg")
    try:
        pg.start()
        cpus = f"{os.cpu_count()} CPUs (nproc {len(os.sched_getaffinity(0))})"
        print(f"Machine: {cpus}; kernel {platform.release()}; Python {platform.python_version()}")
        print(f"Server: PostgreSQL {pg.psql('SHOW server_version').strip()} (local)\n")
        rows = phase_live(args, pg, work) + phase_restart(args, pg, work)
    except Exception as exc:
        sys.stdout.flush()
        print(f"bench_sidecar: error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    finally:
        pg.destroy()
        shutil.rmtree(work, ignore_errors=True)
    print_table(rows, NOTES, started)
    return 0


if __name__ == "__main__":
    sys.exit(main())

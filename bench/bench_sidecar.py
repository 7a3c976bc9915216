"""Benchmark the sidecar as a real process: latency, idle cost, identical rewrites, memory.

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
3. Rewrite, identical content: every file of the tree rewritten with its own bytes while the
   sidecar runs (new mtimes, same content), then waited for until /metrics shows nothing
   pending. Content written = growth of ``waha_sync_chunks`` (rows / bytes of ``data``),
   goal 0; commits; WAL = ``pg_wal_lsn_diff`` over the phase (the whole server: all the
   sidecar made durable, metadata included); the sidecar's CPU seconds for it.
4. Memory: VmRSS / VmHWM after the latency phase, and after a restart over the same tree
   (the usual pod start); baseline: a Python that only imports the sidecar. Goal < 64 MB
   (60 MB before the HTTP side; its libraries and two threads cost about 4 MB).

Restart time with 100,000 known files: ``bench_restart.py``.

"baseline" was measured in the same run; "ratio" is value / baseline; "verdict" compares
the value with the goal. Exit 0 whenever the benchmark ran.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

from bench.procstat import cpu_seconds, status, switches
from bench.table import Row, Section, p99, report, verdict
from bench.trees import noweb_tree, rewrite_identical, scratch_server
from tests.support.dbtarget import DbTarget
from tests.support.podsim import SidecarProc
from waha_sync.common.db.connect import open_connection
from waha_sync.common.db.url import parse_url
from waha_sync.common.local.postgres import LocalPostgres

MB = 1_000_000  # the goals are in decimal megabytes
DEBOUNCE = 1.0  # the product's default, which this benchmark runs with
POLL_SQL = (
    "SELECT path, sha256 FROM waha_sync_entries "
    "WHERE instance = 'default' AND NOT deleted AND path = ANY(:paths)"
)
CHUNKS_SQL = "SELECT count(*), coalesce(sum(octet_length(data)), 0) FROM waha_sync_chunks"
NOTES: list[str] = []  # anything odd seen on the way, printed under the table


def run(cmd: list[str], env: dict[str, str] | None = None) -> float:
    """Run a command to completion (its output discarded); its wall seconds."""
    t0 = time.monotonic()
    proc = subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    if proc.returncode != 0:
        raise RuntimeError(f"{cmd[:4]} exited {proc.returncode}: {proc.stderr.decode()}")
    return time.monotonic() - t0


def cli(db: DbTarget, *args: str) -> float:
    return run([sys.executable, "-m", "waha_sync.cli", *args, "--log-level", "WARNING"], db.env())


def commits(db: DbTarget) -> int:
    return int(str(db.sql("SELECT count(*) FROM waha_sync_commits")[0][0]))


def spawn(db: DbTarget, root: Path, log: Path) -> SidecarProc:
    side = SidecarProc(db, root, log)
    side.env = {"WAHA_SYNC_PORT": side.env["WAHA_SYNC_PORT"]}  # else the product's defaults
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


def pending(side: SidecarProc) -> int:
    """The sessions tree's ``waha_sync_pending_paths`` (-1 when /metrics lacks it)."""
    text = side.get("/metrics").body.decode()
    found = re.search(r'^waha_sync_pending_paths\{tree="sessions"\} (\S+)$', text, re.M)
    return int(float(found.group(1))) if found else -1


def settle(side: SidecarProc, pid: int, timeout: float = 120) -> None:
    """Wait until /metrics shows nothing pending and the sidecar used no CPU for 1 s."""
    deadline, calm = time.monotonic() + timeout, 0
    while calm < 4:
        if time.monotonic() > deadline:
            raise RuntimeError(f"sidecar still busy after {timeout:g} s")
        cpu0 = cpu_seconds(pid)
        time.sleep(0.25)
        calm = calm + 1 if pending(side) == 0 and cpu_seconds(pid) == cpu0 else 0


def phase_rewrite(side: SidecarProc, db: DbTarget, root: Path, pid: int) -> list[Row]:
    """Every file rewritten with its own bytes while the sidecar runs; what it writes."""

    def chunks() -> tuple[int, int]:
        n, size = db.sql(CHUNKS_SQL)[0]
        return int(str(n)), int(str(size))

    (n0, b0), c0 = chunks(), commits(db)
    lsn = str(db.sql("SELECT pg_current_wal_lsn()::text")[0][0])
    cpu0, t0 = cpu_seconds(pid), time.monotonic()
    files = rewrite_identical(root)
    seen = pending(side)  # proves the sidecar noticed: nothing can ship within the debounce
    time.sleep(DEBOUNCE + 0.5)  # nothing can ship before the debounce anyway
    settle(side, pid)
    took, cpu = time.monotonic() - t0, cpu_seconds(pid) - cpu0
    wal = int(str(db.sql(f"SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '{lsn}')::bigint")[0][0]))
    (n1, b1), c1 = chunks(), commits(db)
    zero = n1 == n0 and b1 == b0 and c1 == c0
    return [
        (f"sidecar: rewrite of all {files:,} files, identical content: content written "
         "(chunk rows / bytes) / new commits", f"{n1 - n0} / {b1 - b0} B / {c1 - c0}",
         "—", "—", "0", verdict(zero)),
        ("sidecar: that rewrite's pending paths seen / WAL bytes / sidecar CPU / until settled",
         f"{seen:,} / {wal:,} B / {cpu:.2f} s / {took:.1f} s", "—", "—", "—", "info"),
    ]  # fmt: skip


def phase_live(args: argparse.Namespace, pg: LocalPostgres, work: Path) -> list[Row]:
    pg.psql("CREATE DATABASE bench_live")
    db = DbTarget(pg.url("bench_live"), "postgresql", 0.0)
    root = work / "live"
    root.mkdir()
    cli(db, "restore", "--sessions-dir", str(root))
    files = noweb_tree(root, args.live_files, min(863, args.live_files), seed=1)
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
        rewrite = phase_rewrite(side, db, root, pid)
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
    p50, tail = statistics.median(done), p99(done)
    wakes = (s1 - s0) / (w1 - w0)
    goal = DEBOUNCE + 0.25
    return [
        (f"first start: ship {files:,} files (restore, then sidecar)", f"{first:.2f} s",
         "—", "—", "—", "info"),
        (f"change→durable p50 / p99 / max ({len(done)} changes measured, {superseded} "
         f"rewritten in flight, {lost} lost; {n_commits} commits)",
         f"{p50:.3f} / {tail:.3f} / {max(done):.3f} s", f"debounce {DEBOUNCE:g} s",
         f"{tail / DEBOUNCE:.2f}x", f"p99 ≤ {goal:g} s", verdict(tail <= goal and not lost)),
        (f"idle CPU over {w1 - w0:.0f} s (expected ~0)",
         f"{100 * (c1 - c0) / (w1 - w0):.3f} % of a core", "—", "—", "—", "info"),
        (f"idle wake-ups over {w1 - w0:.0f} s", f"{s1 - s0} ({wakes:.2f}/s)", "—", "—",
         "< 5/s (HTTP tick, health check)", verdict(wakes < 5)),
        (f"VmRSS / VmHWM after first start (uploaded all {files:,} files) and latency phase",
         f"{mem['VmRSS'] / MB:.1f} / {mem['VmHWM'] / MB:.1f} MB",
         f"bare import {base / MB:.1f} MB", f"{mem['VmRSS'] / base:.2f}x", "< 64 MB",
         verdict(mem["VmRSS"] < 64 * MB)),
        (f"VmRSS / VmHWM after a restart over the same {files:,} stored files",
         f"{again['VmRSS'] / MB:.1f} / {again['VmHWM'] / MB:.1f} MB",
         f"bare import {base / MB:.1f} MB", f"{again['VmRSS'] / base:.2f}x", "< 64 MB",
         verdict(again["VmRSS"] < 64 * MB)),
        *rewrite,
    ]  # fmt: skip


def measure(changes: int, idle: float, live_files: int = 8630) -> Section:
    """The live phase on a throwaway server; the results."""
    started = time.monotonic()
    NOTES.clear()
    args = argparse.Namespace(changes=changes, idle=idle, live_files=live_files)
    with scratch_server("sidecar") as (pg, work):
        rows = phase_live(args, pg, work)
        version = pg.psql("SHOW server_version").strip()
    about = [
        f"`waha-sync sidecar` as a process with the product's timings (debounce {DEBOUNCE:g} s, "
        f"max delay 10 s); PostgreSQL {version} (local, fsync=off).",
        f"~{live_files:,} NOWEB files; {changes} changes; idle {idle:g} s. "
        "Baselines measured in the same run.",
    ]
    title = "Sidecar: latency, idle cost, memory, identical rewrite"
    return Section(title, about, rows, list(NOTES), time.monotonic() - started)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer changes, 10 s idle")
    args = parser.parse_args(argv)
    return report("bench_sidecar", lambda: measure(60, 10.0) if args.quick else measure(300, 60.0))


if __name__ == "__main__":
    sys.exit(main())

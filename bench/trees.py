"""WAHA-like trees for the benchmarks, and the file helpers the baselines need.

``mixed``: one ``waha.sqlite3``, NOWEB sessions of small JSON key files, GOWS sessions whose
``gows.db`` holds many rows (a few MiB each), and incompressible media-like files of
50-500 KiB that bring the total to the size asked for. ``noweb``: only NOWEB sessions of
~``per`` files each (creds, pre-keys, sessions, app-state keys), as a busy WAHA with many
NOWEB sessions has: many small files, few bytes.
"""

from __future__ import annotations

import contextlib
import random
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

from tests.support.wahatree import make_noweb_session, make_sqlite, tree_digest
from waha_sync.common.local.postgres import LocalPostgres

MIB = 1024 * 1024
PIECE = 512 * 1024
PREKEYS = 800
SQLITE_SHARE = 0.2  # of the size, spread over the GOWS databases
MEDIA_AVG = 275 * 1024


def mib(n: float) -> str:
    return f"{n / MIB:.1f} MiB"


def run(cmd: list[str]) -> str:
    """Run a command; its stdout (an error names the command and its stderr)."""
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{cmd[0]} failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc.stdout


def noweb_files(prekeys: int) -> int:
    """Files ``make_noweb_session`` writes for ``prekeys`` pre-keys."""
    return 1 + prekeys + (prekeys // 20 + 1) + (prekeys // 40 + 1)


def files_in(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and ".waha-sync" not in p.parts]


def noweb_tree(root: Path, files: int, per: int, seed: int) -> int:
    """NOWEB sessions of ~``per`` files each under ``root/default``; the file count."""
    count = max(1, round(files / per))
    prekeys = max(1, round((per - 3) / 1.075))
    for i in range(count):
        make_noweb_session(root / "default" / f"noweb-{i + 1}", prekeys=prekeys, seed=seed + i)
    return len(files_in(root))


def make_tree(root: Path, files: int, mb: float, seed: int, kind: str) -> tuple[int, int]:
    """Write the tree; returns (file count, total bytes)."""
    if kind == "noweb":
        noweb_tree(root, files, 1000, seed * 1000)
        paths = files_in(root)
        return len(paths), sum(p.stat().st_size for p in paths)
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
    used = sum(p.stat().st_size for p in files_in(root))
    n = 0
    while used < target:
        size = min(rng.randint(50 * 1024, 500 * 1024), max(target - used, 1024))
        folder = ns / f"noweb-{n % sessions + 1}" / "media"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{rng.getrandbits(64):016x}.jpeg").write_bytes(rng.randbytes(size))
        used += size
        n += 1
    paths = files_in(root)
    return len(paths), sum(p.stat().st_size for p in paths)


def rewrite_identical(root: Path) -> int:
    """Rewrite every file with its own bytes (truncate + write: new mtime, same content)."""
    paths = [p for p in files_in(root) if not p.name.endswith(("-wal", "-shm", "-journal"))]
    for path in paths:
        data = path.read_bytes()
        with path.open("wb") as f:
            f.write(data)
    return len(paths)


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


@contextlib.contextmanager
def scratch_server(name: str) -> Iterator[tuple[LocalPostgres, Path]]:
    """A throwaway folder with a started PostgreSQL in it; both are gone afterwards."""
    work = Path(tempfile.mkdtemp(prefix=f"wsbench-{name}-"))
    pg = LocalPostgres(work / "pg", durable=False)
    try:
        pg.start()
        yield pg, work
    finally:
        pg.destroy()
        shutil.rmtree(work, ignore_errors=True)

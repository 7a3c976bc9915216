"""The real-client suite's shared parts: its marker, its figures, a database per mode.

Every test here carries the ``realclient`` marker. Each records one figure line per real tree
(files, sessions, tables, restore time), printed together at the end of the run.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sqlite3
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.realclient import baileys
from tests.realclient.gows import whatsmeow_schema
from tests.support.dbtarget import CHAOS_RATE, DbTarget, Server

FIGURES: list[str] = []


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "realclient" in item.path.parts:
            item.add_marker(pytest.mark.realclient)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if FIGURES:
        terminalreporter.section("real-client trees")
        for line in FIGURES:
            terminalreporter.write_line(line)


@pytest.fixture(scope="session")
def node_packages() -> None:
    """Baileys 6 and 7 and write-file-atomic, installed from the lock file if missing."""
    baileys.ensure_installed()


@pytest.fixture(scope="session")
def noweb_session(
    node_packages: None, tmp_path_factory: pytest.TempPathFactory
) -> Callable[[baileys.Line, Path], Path]:
    """``copy(line, folder) -> manifest``: a NOWEB session Baileys ``line`` generated (once per
    run and line; generating costs seconds of CPU) copied into ``folder``, with its manifest."""
    made: dict[str, tuple[Path, Path]] = {}

    def copy(line: baileys.Line, folder: Path) -> Path:
        if line not in made:
            base = tmp_path_factory.mktemp(f"baileys{line}")
            baileys.generate(base / "session", base / "manifest.json", line, seed=11)
            made[line] = (base / "session", base / "manifest.json")
        source, manifest = made[line]
        shutil.copytree(source, folder)
        return manifest

    return copy


@pytest.fixture(scope="session")
def schema_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A cache folder already holding whatsmeow's real schema (made once per run)."""
    cache = tmp_path_factory.mktemp("whatsmeow")
    whatsmeow_schema(cache)
    yield cache


def db_in(pg_server: Server, mode: str) -> DbTarget:
    """A fresh database in ``mode`` (``postgresql`` or ``crdb-like``), as tests/conftest's."""
    crdb = mode == "crdb-like"
    url = pg_server.create_database(serializable=crdb)
    return DbTarget(url, mode, CHAOS_RATE if crdb else 0.0)


def restore_timed(db: DbTarget, into: Path) -> float:
    """Restore the stored tree into a fresh folder (the next pod); seconds it took."""
    into.mkdir(parents=True)
    started = time.monotonic()
    assert db.cli("restore", "--sessions-dir", str(into)) == 0
    return time.monotonic() - started


def is_sqlite(path: Path) -> bool:
    with path.open("rb") as f:
        return f.read(16) == b"SQLite format 3\x00"


def digest(root: Path) -> tuple[dict[str, str], list[str]]:
    """({path: sha256} of every plain file, [SQLite databases]) under ``root``, leaving out
    SQLite side files and our marker folder (never stored)."""
    files: dict[str, str] = {}
    databases: list[str] = []
    for folder, dirs, names in os.walk(root):
        dirs[:] = [d for d in dirs if d != ".waha-sync"]
        for name in names:
            path = Path(folder, name)
            rel = path.relative_to(root).as_posix()
            if name.endswith(("-wal", "-shm", "-journal")):
                continue
            if is_sqlite(path):
                databases.append(rel)
            else:
                files[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
    return files, sorted(databases)


def sqlite_summary(path: Path) -> dict[str, object]:
    """Integrity, foreign-key violations and rows per table of a database (read-only)."""
    conn = sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True)
    try:
        tables = [
            str(r[0])
            for r in conn.execute(
                "SELECT name FROM sqlite_master WHERE type='table' AND name NOT LIKE 'sqlite_%'"
            )
        ]
        return {
            "integrity": conn.execute("PRAGMA integrity_check").fetchone()[0],
            "foreign_key_violations": len(conn.execute("PRAGMA foreign_key_check").fetchall()),
            "rows": {t: conn.execute(f'SELECT count(*) FROM "{t}"').fetchone()[0] for t in tables},
        }
    finally:
        conn.close()


def assert_restored_equal(local: Path, restored: Path) -> dict[str, dict[str, object]]:
    """Every file byte-identical; every SQLite database sound with the same rows per table.
    Returns the restored databases' summaries by path."""
    mine, my_dbs = digest(local)
    theirs, their_dbs = digest(restored)
    assert sorted(theirs) == sorted(mine), "restored file names differ"
    assert theirs == mine, "restored file contents differ"
    assert their_dbs == my_dbs
    summaries = {}
    for rel in my_dbs:
        got = sqlite_summary(restored / rel)
        assert got["integrity"] == "ok", (rel, got["integrity"])
        assert got["foreign_key_violations"] == 0, rel
        assert got["rows"] == sqlite_summary(local / rel)["rows"], rel
        summaries[rel] = got
    return summaries

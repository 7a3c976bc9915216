"""PLACEHOLDER (replaced by the WAL follower): full copies only."""

from __future__ import annotations

import contextlib
import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Snapshot:
    path: str
    size_bytes: int
    page_size: int
    changed_pages: frozenset[int] | None
    full: bool


class SqliteFollower:
    def __init__(self, db_path: str, scratch_path: str) -> None:
        self.db_path = db_path
        self.scratch_path = scratch_path

    def snapshot(self) -> Snapshot:
        if not os.path.exists(self.db_path):
            raise FileNotFoundError(self.db_path)
        src = sqlite3.connect(f"{Path(self.db_path).absolute().as_uri()}?mode=ro", uri=True)
        try:
            dst = sqlite3.connect(":memory:")
            try:
                src.backup(dst)
                ps = dst.execute("PRAGMA page_size").fetchone()[0]
                pc = dst.execute("PRAGMA page_count").fetchone()[0]
                Path(self.scratch_path).write_bytes(dst.serialize())
            finally:
                dst.close()
        finally:
            src.close()
        return Snapshot(self.scratch_path, ps * pc, ps, None, True)

    def acknowledge(self, snap: Snapshot) -> None:
        pass

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.unlink(self.scratch_path)

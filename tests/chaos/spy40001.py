"""Injected SQLSTATE 40001 that reaches every statement path, and a record of it.

waha-sync's chaos mode (``WAHA_SYNC_CHAOS_40001_RATE``) raises 40001 from the
server just before a random fraction of the statements a transaction runs;
at a rate the retry budget is built for (0.1), a statement that runs once per
command may well never meet one. This wrapper of ``Tx.run`` closes that gap:
the first time a process runs each distinct statement it sends the product's
own injection (the same server-side ``RAISE ... 40001``) first, so every
statement path is aborted at least once and must be retried, and the random
injections go on as configured. It records every statement that ran (once per
process) and every 40001 injected before one (``forced`` or ``random``) as
lines appended to one file (``O_APPEND``: forked restore processes and a
sidecar subprocess can share it).

As a program it runs a waha-sync command with the wrapper installed:
``python spy40001.py OUT python -m waha_sync.cli sidecar ...`` (the form
``SidecarProc.prefix`` produces).
"""

from __future__ import annotations

import os
import re
import runpy
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from waha_sync.common.db.database import _INJECT, Tx
from waha_sync.common.db.sqlstate import sqlstate

INJECTED_MESSAGE = "waha-sync chaos"


def statement_key(sql: str) -> str:
    """A statement's identity: its first words, whitespace folded."""
    return re.sub(r"\s+", " ", sql).strip()[:72]


def install(out: Path) -> Callable[[], None]:
    """Wrap ``Tx.run`` so it injects and records into ``out``; returns the unwrapping function."""
    original = Tx.run
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    seen: set[str] = set()
    forced: set[str] = set()

    def record(kind: str, key: str) -> None:
        os.write(fd, f"{kind}\t{key}\n".encode())

    def run(self: Tx, sql: str, **params: Any) -> list[list[Any]]:
        key = statement_key(sql)
        forcing = key not in forced
        try:
            if forcing:
                forced.add(key)
                self._conn.run(_INJECT)  # the product's own injection statement
            rows = original(self, sql, **params)
        except Exception as exc:
            info = exc.args[0] if exc.args and isinstance(exc.args[0], dict) else {}
            if sqlstate(exc) == "40001" and info.get("M") == INJECTED_MESSAGE:
                record("forced" if forcing else "random", key)
            raise
        if key not in seen:
            seen.add(key)
            record("ran", key)
        return rows

    Tx.run = run  # type: ignore[method-assign]

    def uninstall() -> None:
        Tx.run = original  # type: ignore[method-assign]
        os.close(fd)

    return uninstall


def read(out: Path) -> tuple[set[str], Counter[str], Counter[str]]:
    """(statements that ran, forced injections, random injections) per statement in ``out``."""
    ran: set[str] = set()
    forced: Counter[str] = Counter()
    random: Counter[str] = Counter()
    if out.exists():
        for line in out.read_text().splitlines():
            kind, key = line.split("\t", 1)
            if kind == "ran":
                ran.add(key)
            else:
                (forced if kind == "forced" else random)[key] += 1
    return ran, forced, random


if __name__ == "__main__":
    # argv: spy40001.py OUT <python> -m waha_sync.cli <command> [args...]
    target = Path(sys.argv[1])
    rest = sys.argv[2:]
    module_at = rest.index("-m")
    install(target)
    sys.argv = [rest[module_at + 1], *rest[module_at + 2 :]]
    runpy.run_module(rest[module_at + 1], run_name="__main__", alter_sys=True)

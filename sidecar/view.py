"""What HTTP shows: immutable views of each tree, built by the health check.

A ``View`` is replaced whole every check (about every 2 s) and never
mutated, so request handlers read it without locks and never wait on the
database or on the syncer.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from waha_sync.common.errors import fenced_message
from waha_sync.common.store.base import StoredEntry
from waha_sync.common.sync.marker import Marker
from waha_sync.sidecar.status import StatusSnapshot


@dataclass(frozen=True)
class DbView:
    """The database as the last check saw it."""

    up: bool = False
    kind: str = "unknown"  # postgresql or cockroachdb
    version: str = ""
    tls: bool = False
    checked_at: float | None = None  # wall clock of the last check
    latency_ms: float | None = None
    error: str | None = None
    epoch: int | None = None  # the instance's lease as stored
    holder: str | None = None
    last_commit: int | None = None


@dataclass(frozen=True)
class SessionTotals:
    """One WAHA session folder (``<engine>/<session>``) as stored."""

    name: str
    files: int
    bytes: int
    last_change: float | None  # newest mtime of its stored files (wall clock)
    pending: int = 0
    skipped: int = 0
    stored_bytes: int | None = None  # compressed bytes of the live versions in the database
    history_bytes: int | None = None  # what retained history adds (None: not read yet)


@dataclass(frozen=True)
class TreeView:
    label: str
    status: StatusSnapshot
    db: DbView
    marker: Marker | None  # the restore marker, or None if missing
    sessions: tuple[SessionTotals, ...] = ()
    other: SessionTotals | None = None  # files outside session folders
    stored_files: int = 0
    stored_bytes: int = 0
    problem: str | None = None  # why this tree is not ready, or None
    fenced: bool = False  # another holder claimed the instance
    # What restore moved aside and still keeps (``init.displace`` summary), or None.
    displaced: dict[str, Any] | None = None
    history: tuple[Sample, ...] = ()  # oldest first, one per HISTORY_STEP seconds


@dataclass(frozen=True)
class Sample:
    """One point of the dashboard's chart: the tree at wall-clock time ``at``."""

    at: int  # unix seconds
    stored_bytes: int
    commits: int  # since start (a counter: the chart shows its steps)
    lag_seconds: float | None  # mean change-to-durable lag of the batches since the last sample


@dataclass(frozen=True)
class View:
    started_at: float  # wall clock when the sidecar started
    checked_at: float | None = None
    trees: tuple[TreeView, ...] = ()
    stopping: bool = False
    problem: str | None = "starting: first health check not done"

    @property
    def ready(self) -> bool:
        return self.problem is None


def session_of(rel: str) -> str | None:
    """``noweb/default`` for ``noweb/default/creds.json``; None for files outside a session."""
    parts = rel.split("/", 2)
    return f"{parts[0]}/{parts[1]}" if len(parts) == 3 else None


def totals(
    known: dict[str, StoredEntry], pending: list[str], skipped: list[str], *, by_session: bool
) -> tuple[tuple[SessionTotals, ...], SessionTotals]:
    """Per-session totals of the shipped index (one pass), and the rest as one row.

    With ``by_session`` False (media) every file counts in the rest.
    """
    rows: dict[str | None, list[Any]] = {}
    for rel, e in known.items():
        key = session_of(rel) if by_session else None
        row = rows.get(key)
        if row is None:
            row = rows[key] = [0, 0, 0, 0, 0]
        row[0] += 1
        row[1] += e.size_bytes
        row[2] = max(row[2], e.mtime_ns)
    for column, paths in ((3, pending), (4, skipped)):
        for rel in paths:
            key = session_of(rel) if by_session else None
            rows.setdefault(key, [0, 0, 0, 0, 0])[column] += 1

    def make(name: str, r: list[Any]) -> SessionTotals:
        return SessionTotals(name, r[0], r[1], r[2] / 1e9 if r[2] else None, r[3], r[4])

    rest = make("", rows.pop(None, [0, 0, 0, 0, 0]))
    sessions = tuple(make(str(k), r) for k, r in sorted(rows.items(), key=lambda kv: str(kv[0])))
    return sessions, rest


def with_usage(s: SessionTotals, usage: dict[str | None, tuple[int, int]]) -> SessionTotals:
    """``s`` with its database usage (``(live, live + history)`` by session) filled in."""
    got = usage.get(s.name or None)
    if got is None:
        return s
    return replace(s, stored_bytes=got[0], history_bytes=got[1] - got[0])


def usage_by_session(
    per_path: dict[str, tuple[int, int]], *, by_session: bool
) -> dict[str | None, tuple[int, int]]:
    """``Store.usage`` summed per session folder (None: files outside sessions)."""
    out: dict[str | None, tuple[int, int]] = {}
    for rel, (live, total) in per_path.items():
        key = session_of(rel) if by_session else None
        was = out.get(key, (0, 0))
        out[key] = (was[0] + live, was[1] + total)
    return out


def is_fenced(status: StatusSnapshot, db: DbView) -> bool:
    """The syncer was told so on a write, or the stored epoch moved past ours."""
    moved = bool(status.epoch) and db.epoch is not None and db.epoch != status.epoch
    return bool(status.fenced) or moved


def tree_problem(
    status: StatusSnapshot,
    db: DbView,
    marker: Marker | None,
    marker_error: str | None,
    now: float,
    unhealthy_after: float,
) -> str | None:
    """Why a tree is not ready (the first reason that applies), or None."""
    label = status.label
    if status.fenced:
        return f"{label}: {status.fenced}"
    if marker_error:
        return f"{label}: {marker_error}"
    if marker is None:
        return f"{label}: no restore marker in {status.root}; run `waha-sync restore` first"
    if not db.up:
        return f"{label}: database unreachable: {db.error}"
    if is_fenced(status, db):
        claimed = (db.holder, db.epoch) if db.holder is not None and db.epoch is not None else None
        mine = f"this sidecar holds epoch {status.epoch}"
        return f"{label}: {fenced_message(status.instance, claimed, mine)}"
    if status.stopped:
        return f"{label}: stopped"
    if status.compared_at is None:
        return f"{label}: starting: first comparison with the database not finished"
    since = status.failing_since
    if since is not None and now - since > unhealthy_after:
        return f"{label}: commits failing for {now - since:.0f}s: {status.last_error}"
    return None

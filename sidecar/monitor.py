"""The health check: a thread that builds a fresh ``View`` about every 2 seconds.

Each round it asks each tree's database for the instance's lease (a short
read on a connection of its own with a 5 s timeout, so a dead database is
noticed without touching the syncer), reads the restore marker, copies the
syncer's status, and, only when the shipped index changed, re-totals the
WAHA sessions. HTTP handlers read ``Monitor.view`` and never wait on any
of this.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque

from waha_sync.common.errors import WahaSyncError
from waha_sync.common.logs import log_fields
from waha_sync.common.store.factory import PROBE_S
from waha_sync.common.store.postgres import PgStore
from waha_sync.common.sync.marker import read_marker
from waha_sync.init.displace import read_summary
from waha_sync.sidecar.status import StatusSnapshot
from waha_sync.sidecar.tree_sync import TreeSync
from waha_sync.sidecar.view import (
    DbView,
    Sample,
    SessionTotals,
    TreeView,
    View,
    is_fenced,
    totals,
    tree_problem,
    usage_by_session,
    with_usage,
)

log = logging.getLogger("waha_sync.http")
CHECK_SECONDS = 2.0
USAGE_SECONDS = 300.0  # how often the database is asked what each session costs
HISTORY_STEP = 60.0  # seconds between the chart's samples
HISTORY_SAMPLES = 360  # kept per tree: the last 6 hours


class Monitor:
    def __init__(
        self,
        syncs: list[TreeSync],
        probes: dict[str, PgStore],
        unhealthy_after: float,
        *,
        by_session: dict[str, bool],
    ) -> None:
        self.syncs = syncs
        self.stores = probes  # by tree label: ``open_probe``'s, a session apart from the syncer's
        self.dbs = {label: store.db for label, store in probes.items()}
        self.unhealthy_after = unhealthy_after
        self.by_session = by_session
        self.view = View(started_at=time.time())
        self.stopping = False
        self.rounds = 0  # completed checks, for /livez
        self.round_started: float | None = None  # monotonic, while a check runs
        self._totals: dict[str, tuple[object, tuple[SessionTotals, ...], SessionTotals]] = {}
        self._usage: dict[str, dict[str | None, tuple[int, int]]] = {}
        self._usage_due: dict[str, float] = {}
        self._history: dict[str, deque[Sample]] = {
            s.label: deque(maxlen=HISTORY_SAMPLES) for s in syncs
        }
        self._lag_seen: dict[str, tuple[float, int]] = {}  # (lag_total, lag_count) last sampled
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="health", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(PROBE_S * 2)
        for db in self.dbs.values():
            db.close()

    def _run(self) -> None:
        while True:
            try:
                self.check()
            except Exception as exc:  # a bug here must not end the checks
                log.error("health check failed: %s: %s", type(exc).__name__, exc)
                self.round_started = None
            if self._stop.wait(CHECK_SECONDS):
                return

    def check(self) -> None:
        """Build and publish a new view (one database round trip per tree)."""
        self.round_started = time.monotonic()
        views = []
        for s in self.syncs:
            with log_fields(tree=s.label, instance=s.name):  # its debug lines name the tree
                views.append(self._tree(s))
        now = time.time()
        problem = next((t.problem for t in views if t.problem), None)
        if self.stopping:
            problem = "stopping: final flush in progress"
        self.view = View(self.view.started_at, now, tuple(views), self.stopping, problem)
        self.rounds += 1
        self.round_started = None

    def _probe(self, sync: TreeSync) -> DbView:
        db = self.dbs[sync.label]
        began = time.monotonic()
        try:
            inst = self.stores[sync.label].instance(sync.name)
        except Exception as exc:
            db.close()
            reason = exc.message if isinstance(exc, WahaSyncError) else f"{exc}"
            return DbView(False, db.kind, db.version, db.tls, time.time(), None, reason)
        ms = (time.monotonic() - began) * 1000
        return DbView(
            True,
            db.kind,
            db.version,
            db.tls,
            time.time(),
            round(ms, 1),
            None,
            inst.epoch if inst else None,
            inst.holder if inst else None,
            inst.last_commit if inst else None,
        )

    def _tree(self, sync: TreeSync) -> TreeView:
        db = self._probe(sync)
        status = sync.status.snapshot()
        marker_error = None
        try:
            marker = read_marker(sync.root)
        except WahaSyncError as exc:
            marker, marker_error = None, exc.message
        sessions, rest = self._session_totals(sync, status)
        usage = self._read_usage(sync, db)
        sessions = tuple(with_usage(x, usage) for x in sessions)
        rest = with_usage(rest, usage)
        problem = tree_problem(status, db, marker, marker_error, time.time(), self.unhealthy_after)
        stored = [*sessions, rest]
        stored_bytes = sum(s.bytes for s in stored)
        return TreeView(
            sync.label,
            status,
            db,
            marker,
            sessions,
            rest,
            sum(s.files for s in stored),
            stored_bytes,
            problem,
            is_fenced(status, db),
            displaced=read_summary(sync.root),
            history=self._sample(sync.label, status, stored_bytes),
        )

    def _sample(self, label: str, status: StatusSnapshot, stored_bytes: int) -> tuple[Sample, ...]:
        """The chart's samples: one added every ``HISTORY_STEP`` seconds, in a bounded ring."""
        ring = self._history[label]
        now = time.time()
        if not ring or now - ring[-1].at >= HISTORY_STEP:
            total, count = status.lag_total, status.lag_count
            seen_total, seen_count = self._lag_seen.get(label, (0.0, 0))
            lag = (total - seen_total) / (count - seen_count) if count > seen_count else None
            self._lag_seen[label] = (total, count)
            ring.append(Sample(int(now), stored_bytes, status.commits, lag))
        return tuple(ring)

    def _session_totals(
        self, sync: TreeSync, status: StatusSnapshot
    ) -> tuple[tuple[SessionTotals, ...], SessionTotals]:
        """Totals per session, recomputed only when the index, pending or skipped changed."""
        pending = list(sync.pending.first)  # one C-level copy; the syncer may add meanwhile
        skipped = list(status.skipped)
        key = (status.generation, len(pending), len(skipped))
        cached = self._totals.get(sync.label)
        if cached is not None and cached[0] == key:
            return cached[1], cached[2]
        known = dict(sync.known) if sync.known is not None else {}
        sessions, rest = totals(
            known, pending, skipped, by_session=self.by_session.get(sync.label, True)
        )
        self._totals[sync.label] = (key, sessions, rest)
        return sessions, rest

    def _read_usage(self, sync: TreeSync, db: DbView) -> dict[str | None, tuple[int, int]]:
        """Stored and history bytes per session, read every ``USAGE_SECONDS`` once the first
        comparison is done; the last answer is kept while a read fails."""
        now = time.monotonic()
        if db.up and sync.known is not None and now >= self._usage_due.get(sync.label, 0.0):
            self._usage_due[sync.label] = now + USAGE_SECONDS
            try:
                per_path = self.stores[sync.label].usage(sync.name)
            except Exception as exc:
                log.debug("%s: usage not read: %s", sync.label, exc)
            else:
                by = self.by_session.get(sync.label, True)
                self._usage[sync.label] = usage_by_session(per_path, by_session=by)
        return self._usage.get(sync.label, {})

    def alive(self, stall_seconds: float) -> bool:
        """False once a check has been running for longer than ``stall_seconds``."""
        started = self.round_started
        return started is None or time.monotonic() - started < stall_seconds

"""Keeping one tree equal to one instance: watch, debounce, ship, survive outages.

The first step (also after a restart) compares the whole tree with the database: what
changed since the restore or the last commit ships, what disappeared is tombstoned, and
files whose size, mtime and mode match what was shipped are not read again. Then only
changed paths are read, in batches of what is ready at the same moment, one commit each,
through the same ``ship`` as ``push``; a periodic comparison (against memory) catches
missed events. During an outage the changed paths are kept (bounded) and retried
(``OUTAGE_RETRY``). ``FencedError`` ends the tree's work for good: another holder owns it.
"""

from __future__ import annotations

import logging
import os
import stat
import time
from pathlib import Path

from waha_sync.common.config.settings import Settings
from waha_sync.common.db.retry import RetryPolicy
from waha_sync.common.errors import (
    ConfigError,
    FencedError,
    RefusedError,
    WahaSyncError,
    fenced_message,
)
from waha_sync.common.store.base import Store, StoredEntry
from waha_sync.common.sync.claims import holder_name
from waha_sync.common.sync.pieces import PiecedFiles
from waha_sync.common.sync.scan import (
    Candidate,
    Excluder,
    Skipped,
    bad_name,
    cannot_stat,
    classify,
    deletions,
    fmt_bytes,
    is_gone,
    scan,
)
from waha_sync.common.sync.ship import ShipReport, ship
from waha_sync.common.words import plural
from waha_sync.sidecar.pending import Pending
from waha_sync.sidecar.start import lean, release_memory, take_over
from waha_sync.sidecar.status import TreeStatus, error_kind
from waha_sync.sidecar.watch import TreeWatcher

log = logging.getLogger("waha_sync.sync")
# A tree whose sync failed (database or I/O) tries again after waits of up to 0.5 s, 1 s,
# 2 s, ... capped at 10 s, for as long as the outage lasts.
OUTAGE_RETRY = RetryPolicy(attempts=None, base_seconds=0.5, cap_seconds=10.0)
FLUSH_WAIT_S = 1.0  # the longest wait between two tries of the final flush
# Smaller upload groups than a one-shot push: a long-running process keeps the heap its
# biggest batch needed (its memory: BENCHMARKS.md, "Sidecar: latency, idle cost, memory").
GROUP_FILES = 500
FLUSH_ROUNDS = 20  # a writer still busy after this many final rounds is not waited for


class TreeSync:
    def __init__(self, settings: Settings, store: Store, label: str, *, force: bool) -> None:
        self.settings = settings
        self.root: Path = settings.sessions_dir
        self.name = settings.instance
        self.label = label
        self.store = store
        self.force = force
        self.excluder = Excluder(settings.excludes())
        self.pending = Pending(settings.debounce_seconds, settings.max_delay_seconds)
        self.watcher = TreeWatcher(self.root, self.excluder)
        self.pieced = PiecedFiles(self.root)  # followers of SQLite databases, piece lists
        self.known: dict[str, StoredEntry] | None = None  # None until the first comparison
        self.epoch = 0
        self.holder = holder_name("sidecar")
        self.status = TreeStatus(label, os.path.abspath(self.root), self.name)  # noqa: PTH100 - normalised, links kept
        self.next_full = 0.0
        self.retry_at = 0.0  # monotonic; no step before it (an outage's retry)
        self.failures = 0  # steps failed in a row
        self.stopping = False  # in the final flush

    # -- the loop's questions -------------------------------------------------
    def wake_at(self, now: float) -> float:
        """When the loop must act next without an event (monotonic seconds)."""
        if self.retry_at > now:
            return self.retry_at
        if self.known is None or self.watcher.rescan_needed or self.pending.overflowed:
            return now
        due = self.pending.next_due()
        return self.next_full if due is None else min(due, self.next_full)

    def collect(self, now: float) -> None:
        """Take every queued inotify event into the pending set."""
        for change in self.watcher.changes():
            if change.folder_gone and self.known is not None:
                prefix = change.rel + "/"
                for rel in [p for p in self.known if p.startswith(prefix)]:
                    self.pending.touch(rel, now)
            elif not change.folder_gone:
                self.pending.touch(change.rel, now, eager=change.journal)
        self.status.pending = len(self.pending)

    def step(self, now: float) -> None:
        """Ship what is ready; on a database failure keep it and back off. Raises FencedError."""
        if now < self.retry_at:
            return
        full = self.known is None or self._full_due(now)
        taken = self.pending.take_all() if full else self.pending.take_ready(now)
        try:
            if self.known is None:
                self._first_comparison()
            elif full:
                self._full_comparison("periodic" if now >= self.next_full else "rescan")
            elif taken:
                self._ship_paths(taken, self.pending.oldest_taken or now)
        except (FencedError, ConfigError, RefusedError) as exc:  # retrying cannot help
            self.status.fenced = exc.message if isinstance(exc, FencedError) else None
            self.status.error(error_kind(exc), exc.message)
            raise
        except Exception as exc:  # any database or I/O failure: keep the work, retry later
            self.pending.put_back(taken, now)
            self.watcher.rescan_needed = self.watcher.rescan_needed or (
                full and self.known is not None
            )
            self._failed(exc, now)
            return
        self._succeeded(now)

    # -- comparisons ----------------------------------------------------------
    def _full_due(self, now: float) -> bool:
        overflow = self.pending.clear_overflow()
        return overflow or self.watcher.rescan_needed or now >= self.next_full

    def _first_comparison(self) -> None:
        instance, known = take_over(self.store, self.root, self.name, force=self.force)
        self.epoch = instance.epoch
        self.status.epoch, self.status.holder = instance.epoch, instance.holder
        self.known = known
        log.info(
            "%s: %s stored for %s (epoch %d)",
            self.label,
            plural(len(known), "file"),
            self.name,
            self.epoch,
        )
        self._full_comparison("start")
        log.info(
            "%s: in sync with the database (commit %s); watching for changes",
            self.label,
            self.status.last_commit_id or instance.last_commit,
        )

    def _full_comparison(self, why: str) -> None:
        assert self.known is not None
        self.watcher.rescan_needed = False
        found = scan(self.root, self.settings.excludes(), self.settings.limits())
        gone = deletions(found, self.known, self.excluder)
        report = self._ship(found.candidates, gone)
        left_out = [s for s in (*found.skipped, *report.skipped) if not s.quiet]
        for s in left_out:
            self._skip(s)
        self.status.skipped = {s.rel: s for s in left_out}  # what is gone drops out
        self.status.local_files = len(found.candidates)
        self.status.local_bytes = sum(c.size for c in found.candidates)
        self.status.compared_at = time.time()
        step = self.settings.max_delay_seconds if self.watcher.degraded else 0
        self.next_full = time.monotonic() + (step or self.settings.reconcile_seconds)
        self._log(report, f"{why} comparison of {plural(len(found.candidates), 'file')}")
        del found, report
        release_memory()

    def _ship_paths(self, paths: list[str], first: float) -> None:
        assert self.known is not None
        candidates: list[Candidate] = []
        gone: list[str] = []
        for rel in sorted(paths):
            c = self._candidate(rel)
            if c is not None:
                candidates.append(c)
            elif rel in self.known and is_gone(self.root / rel):
                gone.append(rel)
        report = self._ship(candidates, gone)
        if report.commit_id is not None:
            self.status.durable(time.monotonic() - first)
        what = "final flush of" if self.stopping else "shipped"
        self._log(report, f"{what} {plural(len(paths), 'changed path')}")

    def _candidate(self, rel: str) -> Candidate | None:
        path = self.root / rel
        try:
            st = os.lstat(path)
            rel.encode("utf-8")
        except OSError as exc:
            if not is_gone(path):  # there, but its folder cannot be read
                self._skip(cannot_stat(rel, exc))
            return None
        except UnicodeEncodeError:  # shown as the scan shows it
            self._skip(bad_name(rel))
            return None
        if stat.S_ISDIR(st.st_mode):
            self.watcher.rescan_needed = True  # a file became a folder: compare everything
            return None
        got = classify(rel, str(path), st, self.settings.limits())
        if isinstance(got, Skipped):
            self._skip(got)
            return None
        return got

    def _skip(self, s: Skipped) -> None:
        """A file left out: logged once per path and reason, and listed in /status."""
        was = self.status.skipped.get(s.rel)
        if was is None or was.reason != s.reason:
            log.info("%s: skipped %s: %s", self.label, s.rel, s.reason)
        self.status.skipped[s.rel] = s

    def _ship(self, candidates: list[Candidate], gone: list[str]) -> ShipReport:
        assert self.known is not None
        current = self.store.instance(self.name)  # never upload content for a lost claim
        if current is None or current.epoch != self.epoch:
            claimed = (current.holder, current.epoch) if current else None
            raise FencedError(
                fenced_message(self.name, claimed, f"this sidecar holds epoch {self.epoch}"),
                "another pod restored this instance; this sidecar stops writing",
            )
        report = ship(
            self.store,
            self.name,
            self.epoch,
            self.holder,
            candidates,
            self.known,
            gone,
            self.settings.workers,
            group_files=GROUP_FILES,
            on_group=self.status.beat,
            pieced=self.pieced,
        )
        st = self.status  # local totals follow each batch between full comparisons
        for e in (*report.committed_entries, *report.unchanged_entries):
            old = self.known.get(e.path)
            st.local_files += old is None
            st.local_bytes += e.size_bytes - (old.size_bytes if old else 0)
            self.known[e.path] = lean(e)
            st.skipped.pop(e.path, None)
        for rel in report.deleted_paths:
            if (old := self.known.pop(rel, None)) is not None:
                st.local_files, st.local_bytes = st.local_files - 1, st.local_bytes - old.size_bytes
        for s in report.skipped:
            self._skip(s)
        if report.committed_entries or report.unchanged_entries or report.deleted_paths:
            self.status.generation += 1
        self.status.record(report)
        return report

    def _log(self, report: ShipReport, what: str) -> None:
        if report.commit_id is None:
            log.debug("%s: %s: nothing to commit", self.label, what)
            return
        log.info(
            "%s: %s: commit %d: %s (%s), %d deleted, %d skipped",
            self.label,
            what,
            report.commit_id,
            plural(len(report.committed_entries), "file"),
            fmt_bytes(report.raw_bytes),
            report.files_deleted,
            len(report.skipped),
        )

    # -- outage bookkeeping ---------------------------------------------------
    def _failed(self, exc: Exception, now: float) -> None:
        reason = exc.message if isinstance(exc, WahaSyncError) else f"{type(exc).__name__}: {exc}"
        if self.status.failing_since is None:
            self.status.failing_since = time.time()
            log.warning(
                "%s: cannot sync (%s); keeping %s and retrying (backoff up to %gs)",
                self.label,
                reason,
                plural(len(self.pending), "changed path"),
                OUTAGE_RETRY.cap_seconds,
            )
        else:
            log.debug("%s: still failing: %s", self.label, reason)
        self.status.error(error_kind(exc), reason)
        self.failures += 1
        self.retry_at = now + OUTAGE_RETRY.delay_seconds(self.failures)

    def _succeeded(self, now: float) -> None:
        if self.status.failing_since is not None:
            log.info(
                "%s: syncing again after %.1fs of failures",
                self.label,
                time.time() - self.status.failing_since,
            )
            self.status.failing_since = None
        self.failures = 0
        self.retry_at = 0.0
        self.status.pending = len(self.pending)

    # -- shutdown -------------------------------------------------------------
    def flush(self, deadline: float) -> bool:
        """Ship everything pending now, retrying until ``deadline``; False if that failed.

        Events queued meanwhile (a writer's last words) are taken too, until a
        round finds nothing new. A failed round waits as ``OUTAGE_RETRY`` says, at most
        ``FLUSH_WAIT_S``; only rounds that shipped count towards ``FLUSH_ROUNDS``.
        """
        self.stopping = True
        rounds = 0
        while rounds < FLUSH_ROUNDS:
            now = time.monotonic()
            self.collect(now)
            self.pending.put_back(self.pending.take_all(), now)  # all due at once
            self.retry_at = 0.0
            self.step(now)
            if self.status.failing_since is None and self.known is not None:
                rounds += 1
                self.collect(time.monotonic())
                if not len(self.pending) and not self.watcher.rescan_needed:
                    return True
                continue
            left = deadline - time.monotonic()
            if left <= 0.1:
                return False
            time.sleep(max(0.0, min(self.retry_at - now, FLUSH_WAIT_S, left - 0.1)))
        return not len(self.pending)

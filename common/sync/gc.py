"""Retention: garbage collection of old history and of content nothing refers to.

Every state from the retention horizon on stays restorable: ``restore --at T``
gives the same tree as before for every ``T`` at or after now - retention,
and the live tree is never touched. Before the horizon, only the tree as it
stood at the horizon commit (the last commit made at or before it) is kept:

- versions replaced by a later version at or before the horizon commit;
- tombstones that are all that is left of a path at the horizon (a missing
  row says the same), and tombstone rows of the current state that old;
- commit records before the horizon commit;
- pieces of large files that the version at the horizon does not use (replaced by a
  later piece at or before it, or past its end) : later versions either rewrote every
  piece or build on that version.

Then content (blobs and their chunks) is deleted once no entry (live or
tombstone) and no version of any instance refers to it and no writer marked
it in use (``Store.missing_blobs``, ``Store.put_blobs``) within ``grace``.
The grace period covers the time between a writer learning that a blob is
stored and committing entries that refer to it.

Work goes in small transactions, so collecting never blocks writers for long,
and an interrupted run leaves a consistent store that the next run finishes.
The sidecar calls ``collect`` every ``gc_interval_seconds``; ``waha-sync gc``
runs it once.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import timedelta

from waha_sync.common.errors import ConfigError
from waha_sync.common.store.base import GcBatch, Store
from waha_sync.common.sync.scan import fmt_bytes
from waha_sync.common.words import plural

log = logging.getLogger("waha_sync.sync")


@dataclass
class GcReport:
    """What one garbage collection deleted; ``bytes_freed`` counts stored (compressed) bytes."""

    versions_deleted: int = 0
    tombstones_deleted: int = 0
    entries_deleted: int = 0
    commits_deleted: int = 0
    blobs_deleted: int = 0
    pieces_deleted: int = 0
    bytes_freed: int = 0
    seconds: float = 0.0

    @property
    def rows_deleted(self) -> int:
        """Every row deleted, whatever the table (chunks not counted)."""
        return (
            self.versions_deleted
            + self.tombstones_deleted
            + self.entries_deleted
            + self.commits_deleted
            + self.blobs_deleted
            + self.pieces_deleted
        )

    def add(self, batch: GcBatch) -> None:
        self.versions_deleted += batch.versions
        self.tombstones_deleted += batch.tombstones
        self.entries_deleted += batch.entries
        self.commits_deleted += batch.commits
        self.blobs_deleted += batch.blobs
        self.pieces_deleted += batch.pieces
        self.bytes_freed += batch.bytes_freed

    def summary(self, instance: str) -> str:
        """One line for the log."""
        return (
            f"gc done: instance {instance}: "
            f"deleted {plural(self.versions_deleted, 'old version')}, "
            f"{plural(self.tombstones_deleted + self.entries_deleted, 'tombstone')}, "
            f"{plural(self.commits_deleted, 'commit')}, "
            + (f"{plural(self.pieces_deleted, 'unused piece')}, " if self.pieces_deleted else "")
            + f"{plural(self.blobs_deleted, 'unreferenced blob')} "
            f"({fmt_bytes(self.bytes_freed)} stored); {self.seconds:.2f}s"
        )


def _check(field: str, value: timedelta, minimum: timedelta, hint: str) -> None:
    if value < minimum:
        raise ConfigError(f"{field}: must be at least {minimum} (got {value})", hint)


def collect(
    store: Store,
    instance: str,
    retention: timedelta,
    *,
    grace: timedelta = timedelta(hours=1),
) -> GcReport:
    """Delete the history of ``instance`` older than ``retention`` that no later state needs,
    then content of any instance unreferenced and not marked in use within ``grace``.

    Safe while writers commit and restores read: every deletion checks its
    conditions again in its own transaction. Raises ``ConfigError`` for a
    retention under one hour or a negative grace, and what ``Store`` raises
    (``DatabaseUnavailable``); what was deleted before an error stays deleted.
    """
    _check("retention", retention, timedelta(hours=1), "--retention-hours 168")
    _check("grace", grace, timedelta(0), "grace=timedelta(hours=1)")
    started = time.monotonic()
    report = GcReport()
    for batch in store.collect_garbage(instance, retention, grace):
        report.add(batch)
        log.debug("gc batch: %s", batch)
    report.seconds = time.monotonic() - started
    if report.rows_deleted:
        log.info("%s", report.summary(instance))
    else:
        log.debug("gc: nothing to delete for instance %s (%.2fs)", instance, report.seconds)
    return report

"""What a tree's syncer knows about itself, for its log lines and for HTTP.

Written only by the syncer's own thread; readers (the health check, HTTP
handlers) take a copy with ``snapshot()``: plain values, no locks on the
sync path.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import Any

from waha_sync.common.errors import DatabaseUnavailable
from waha_sync.common.sync.ship import ShipReport

RECENT_ERRORS = 20


def error_kind(exc: Exception) -> str:
    """How /metrics counts a failed sync attempt: database, io or other."""
    if isinstance(exc, DatabaseUnavailable) or type(exc).__module__.startswith("pg8000"):
        return "database"
    return "io" if isinstance(exc, OSError) else "other"


@dataclass
class TreeStatus:
    label: str
    root: str
    instance: str
    epoch: int = 0
    holder: str = ""
    pending: int = 0
    local_files: int = 0  # set by each full comparison, then followed batch by batch
    local_bytes: int = 0
    compared_at: float | None = None  # wall clock of the last full comparison
    commits: int = 0
    files_shipped: int = 0
    bytes_shipped: int = 0
    files_deleted: int = 0
    last_commit_id: int | None = None
    last_commit_at: float | None = None  # wall-clock seconds
    last_commit_files: int = 0
    last_commit_bytes: int = 0
    lag_seconds: float | None = None  # first change -> durable, for the last batch
    lag_total: float = 0.0  # sum of every batch's lag since start (with lag_count: means)
    lag_count: int = 0
    failing_since: float | None = None
    last_error: str | None = None
    fenced: str | None = None
    stopped: bool = False  # the loop has ended (stop requested, fenced or failed)
    progress_at: float | None = None  # monotonic, while working; None while waiting
    generation: int = 0  # bumped whenever the shipped index changes
    errors: dict[str, int] = field(default_factory=dict)  # by kind, since start
    recent_errors: deque[tuple[float, str, str]] = field(
        default_factory=lambda: deque(maxlen=RECENT_ERRORS)
    )  # (wall clock, kind, message)
    skipped: dict[str, str] = field(default_factory=dict)
    on_lag: Callable[[float], None] | None = field(default=None, repr=False, compare=False)

    def record(self, report: ShipReport) -> None:
        if report.commit_id is None:
            return
        self.commits += 1
        self.files_shipped += len(report.committed)
        self.bytes_shipped += report.bytes_raw
        self.files_deleted += report.deleted
        self.last_commit_id = report.commit_id
        self.last_commit_at = time.time()
        self.last_commit_files = len(report.committed) + report.deleted
        self.last_commit_bytes = report.bytes_raw

    def beat(self) -> None:
        """The loop is working and just made progress (for /livez)."""
        self.progress_at = time.monotonic()

    def durable(self, lag: float) -> None:
        """A batch whose first change happened ``lag`` seconds ago is committed."""
        self.lag_seconds = lag
        self.lag_total += lag
        self.lag_count += 1
        if self.on_lag is not None:
            self.on_lag(lag)

    def error(self, kind: str, message: str) -> None:
        """Count a failure of ``kind``; a message differing from the last one is kept."""
        self.errors[kind] = self.errors.get(kind, 0) + 1
        if not self.recent_errors or self.recent_errors[-1][2] != message:
            self.recent_errors.append((time.time(), kind, message))
        self.last_error = message

    def snapshot(self) -> dict[str, Any]:
        """A copy of every field but the callback (containers are copied in one C call each,
        so a concurrent update of the syncer cannot break the copy)."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, dict):
                value = dict(value)
            elif isinstance(value, deque):
                value = list(value)
            out[f.name] = value
        out.pop("on_lag")
        return out

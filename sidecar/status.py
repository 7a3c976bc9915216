"""What a tree's syncer knows about itself, for its log lines and for HTTP.

Written only by the syncer's own thread; readers (the health check, HTTP
handlers) take a ``StatusSnapshot`` with ``snapshot()``: a frozen copy, no
locks on the sync path.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields

from waha_sync.common.errors import ConfigError, DatabaseUnavailable, FencedError, RefusedError
from waha_sync.common.sync.scan import Skipped
from waha_sync.common.sync.ship import ShipReport

RECENT_ERRORS = 20
ERROR_KINDS = ("database", "io", "fenced", "refused", "config", "other")  # error_kind's


def error_kind(exc: Exception) -> str:
    """How /metrics counts a failed sync attempt: one of ``ERROR_KINDS``."""
    if isinstance(exc, FencedError):
        return "fenced"
    if isinstance(exc, RefusedError):
        return "refused"
    if isinstance(exc, ConfigError):
        return "config"
    if isinstance(exc, DatabaseUnavailable) or type(exc).__module__.startswith("pg8000"):
        return "database"
    return "io" if isinstance(exc, OSError) else "other"


@dataclass(frozen=True)
class StatusSnapshot:
    """One tree's ``TreeStatus`` at one moment (times: wall-clock Unix seconds unless said)."""

    label: str  # sessions or media
    root: str  # the tree's folder, absolute
    instance: str
    epoch: int  # the lease this syncer writes under (0 before it took the instance over)
    holder: str
    pending: int  # changed paths not shipped yet
    local_files: int  # files on disk that may be stored, as of the last comparison and batches
    local_bytes: int
    compared_at: float | None  # the last full comparison
    commits: int  # since start
    files_shipped: int
    bytes_shipped: int  # raw bytes
    files_deleted: int
    last_commit_id: int | None
    last_commit_at: float | None
    last_commit_files: int  # changed plus deleted
    last_commit_bytes: int  # raw bytes
    lag_seconds: float | None  # first change -> durable, for the last batch
    lag_total: float  # seconds, summed over every batch since start
    lag_count: int  # batches in lag_total
    failing_since: float | None
    last_error: str | None
    fenced: str | None  # the fenced message, once fenced
    stopped: bool
    progress_at: float | None  # monotonic seconds, while working
    generation: int  # bumped whenever the shipped index changes
    errors: Mapping[str, int]  # failed attempts by kind, since start
    recent_errors: tuple[tuple[float, str, str], ...]  # (wall clock, kind, message)
    skipped: Mapping[str, Skipped]  # files left out, by path


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
    skipped: dict[str, Skipped] = field(default_factory=dict)  # by path
    on_lag: Callable[[float], None] | None = field(default=None, repr=False, compare=False)

    def record(self, report: ShipReport) -> None:
        if report.commit_id is None:
            return
        self.commits += 1
        self.files_shipped += len(report.committed_entries)
        self.bytes_shipped += report.raw_bytes
        self.files_deleted += report.files_deleted
        self.last_commit_id = report.commit_id
        self.last_commit_at = time.time()
        self.last_commit_files = len(report.committed_entries) + report.files_deleted
        self.last_commit_bytes = report.raw_bytes

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

    def snapshot(self) -> StatusSnapshot:
        """A frozen copy of every field but the callback (containers are copied in one C
        call each, so a concurrent update of the syncer cannot break the copy)."""
        out: dict[str, object] = {}
        for f in fields(StatusSnapshot):
            value = getattr(self, f.name)
            if isinstance(value, dict):
                value = dict(value)
            elif isinstance(value, deque):
                value = tuple(value)
            out[f.name] = value
        return StatusSnapshot(**out)  # type: ignore[arg-type]

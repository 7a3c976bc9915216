"""What a tree's syncer knows about itself, for logs now and for HTTP status later.

Written only by the syncer's own thread; readers take a consistent enough
copy with ``snapshot()`` (plain values, no locks on the sync path).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any

from waha_sync.common.ship import ShipReport


@dataclass
class TreeStatus:
    label: str
    root: str
    instance: str
    epoch: int = 0
    holder: str = ""
    pending: int = 0
    local_files: int = 0
    local_bytes: int = 0
    commits: int = 0
    files_shipped: int = 0
    bytes_shipped: int = 0
    files_deleted: int = 0
    last_commit_id: int | None = None
    last_commit_at: float | None = None  # wall-clock seconds
    lag_seconds: float | None = None  # first change -> durable, for the last batch
    failing_since: float | None = None
    last_error: str | None = None
    fenced: str | None = None
    skipped: dict[str, str] = field(default_factory=dict)

    def record(self, report: ShipReport) -> None:
        if report.commit_id is None:
            return
        self.commits += 1
        self.files_shipped += len(report.committed)
        self.bytes_shipped += report.bytes_raw
        self.files_deleted += report.deleted
        self.last_commit_id = report.commit_id
        self.last_commit_at = time.time()

    def snapshot(self) -> dict[str, Any]:
        out = asdict(self)
        out["skipped"] = dict(self.skipped)
        return out

"""``waha-sync push``: the whole directory to the database, as one commit.

Safety rule: pushing into an instance that already holds data requires the
restore marker of that instance in the directory (proof that the volume was
filled from the database), unless ``force``. An empty new volume must never
overwrite stored sessions. A first push into an empty instance claims it and
writes a marker, so the sidecar may go on from there (the rule itself:
``waha_sync.common.sync.claims.authorise``).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime

from waha_sync.common.config.settings import Settings
from waha_sync.common.logs import log_fields
from waha_sync.common.store.base import Instance, Store, StoredEntry
from waha_sync.common.sync.claims import authorise, holder_name
from waha_sync.common.sync.marker import Marker, write_marker
from waha_sync.common.sync.pieces import PiecedFiles
from waha_sync.common.sync.scan import Excluder, deletions, scan
from waha_sync.common.sync.ship import ShipReport, ship
from waha_sync.common.words import plural

log = logging.getLogger("waha_sync.sync")


@dataclass(frozen=True)
class PushOutcome:
    report: ShipReport
    scanned: int
    instance: Instance


def push(store: Store, settings: Settings, *, force: bool = False) -> PushOutcome:
    """Scan ``settings.sessions_dir`` (an existing folder) and ship every difference as one
    commit; its log lines name the sessions tree and the instance."""
    with log_fields(tree="sessions", instance=settings.instance):
        return _push(store, settings, force=force)


def _push(store: Store, settings: Settings, *, force: bool) -> PushOutcome:
    root = settings.sessions_dir
    name = settings.instance
    instance, marker, database = authorise(
        store, root, name, force=force, role="push", require_marker=False
    )
    started = time.monotonic()
    found = scan(root, settings.excludes(), settings.limits())
    stored: dict[str, StoredEntry] = {}
    for page in store.live_entries(name):
        stored.update((e.path, e) for e in page)
    log.info(
        "scanned %s (%d left out); %d stored",
        plural(len(found.candidates), "file"),
        len([s for s in found.skipped if not s.quiet]),
        len(stored),
    )
    deleted = deletions(found, stored, Excluder(settings.excludes()))
    pieced = PiecedFiles(root)
    try:
        report = ship(
            store,
            name,
            instance.epoch,
            holder_name("push"),
            found.candidates,
            stored,
            deleted,
            settings.workers,
            pieced=pieced,
        )
    finally:
        pieced.close()
    report.skipped[:0] = found.skipped
    report.elapsed_seconds = time.monotonic() - started
    for s in report.skipped:
        (log.debug if s.quiet else log.info)("skipped %s: %s", s.rel, s.reason)
    last = report.commit_id or instance.last_commit
    if marker is None or marker.epoch != instance.epoch or report.commit_id is not None:
        write_marker(
            root,
            Marker(
                name,
                instance.epoch,
                instance.holder,
                last,
                False,
                "push",
                datetime.now(UTC).isoformat(),
                len(found.candidates),
                sum(c.size for c in found.candidates),
                database=database,
            ),
        )
    return PushOutcome(report, len(found.candidates), instance)

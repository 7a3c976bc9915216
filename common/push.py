"""``waha-sync push``: the whole directory to the database, as one commit.

Safety rule: pushing into an instance that already holds data requires the
restore marker of that instance in the directory (proof that the volume was
filled from the database), unless ``force``. An empty new volume must never
overwrite stored sessions. A first push into an empty instance claims it and
writes a marker, so the sidecar may go on from there.
"""

from __future__ import annotations

import logging
import socket
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from waha_sync.common.config import Settings
from waha_sync.common.errors import FencedError, RefusedError
from waha_sync.common.marker import Marker, read_marker, write_marker
from waha_sync.common.scan import Excluder, scan
from waha_sync.common.ship import ShipReport, ship
from waha_sync.common.store import Instance, Store, StoredEntry

log = logging.getLogger("waha_sync.sync")


def holder_name(role: str) -> str:
    """Who holds a claim: the host (the pod name in Kubernetes) and the role."""
    return f"{socket.gethostname()}/{role}"


@dataclass(frozen=True)
class PushOutcome:
    report: ShipReport
    scanned: int
    instance: Instance


def _authorise(store: Store, root: Path, name: str, force: bool) -> tuple[Instance, Marker | None]:
    """The instance state to commit under, claiming it when this push may start it."""
    marker = read_marker(root)
    current = store.instance(name)
    has_data = current is not None and current.last_commit > 0
    if force or not has_data:
        if marker is not None and current is not None and marker.epoch == current.epoch:
            return current, marker
        return store.claim(name, holder_name("push")), marker
    if marker is None or marker.instance != name:
        found = "no restore marker" if marker is None else f"a marker of {marker.instance!r}"
        raise RefusedError(
            f"{root}: refusing to push: instance {name!r} already holds data and this "
            f"directory has {found}",
            "run `waha-sync restore` into it first, or pass --force to overwrite the stored tree",
        )
    if marker.read_only:
        raise RefusedError(
            f"{root}: refusing to push from a read-only restore",
            "restore without --read-only to take the instance over, or pass --force",
        )
    if current is not None and marker.epoch != current.epoch:
        raise FencedError(
            f"fenced: instance {name} was claimed by {current.holder} (epoch {current.epoch}); "
            f"this directory was restored at epoch {marker.epoch}",
            "restore again here to take the instance over, or stop the other writer",
        )
    assert current is not None
    return current, marker


def push(store: Store, settings: Settings, *, force: bool = False) -> PushOutcome:
    """Scan ``settings.sessions_dir`` (an existing folder) and ship every difference as one
    commit."""
    root = settings.sessions_dir
    name = settings.instance
    instance, marker = _authorise(store, root, name, force)
    started = time.monotonic()
    found = scan(root, settings.excludes(), settings.max_file_bytes)
    stored: dict[str, StoredEntry] = {}
    for page in store.live_entries(name):
        stored.update((e.path, e) for e in page)
    log.info(
        "scanned %d files (%d left out); %d stored",
        len(found.candidates),
        len([s for s in found.skipped if not s.quiet]),
        len(stored),
    )
    excluder = Excluder(settings.excludes())
    present = found.present
    deleted = [p for p in stored if p not in present and not excluder.covers(p)]
    report = ship(
        store,
        name,
        instance.epoch,
        holder_name("push"),
        found.candidates,
        stored,
        deleted,
        settings.workers,
    )
    report.skipped[:0] = found.skipped
    report.seconds = time.monotonic() - started
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
            ),
        )
    return PushOutcome(report, len(found.candidates), instance)

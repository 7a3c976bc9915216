"""``waha-sync push``: the whole directory to the database, as one commit.

Safety rule: pushing into an instance that already holds data requires the
restore marker of that instance in the directory (proof that the volume was
filled from the database), unless ``force``. An empty new volume must never
overwrite stored sessions. A first push into an empty instance claims it and
writes a marker, so the sidecar may go on from there.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from waha_sync.common.config.settings import Settings
from waha_sync.common.errors import FencedError, RefusedError, fenced_message
from waha_sync.common.logs import log_fields
from waha_sync.common.store.base import Instance, Store, StoredEntry
from waha_sync.common.sync.marker import Marker, read_marker, write_marker
from waha_sync.common.sync.pieces import PiecedFiles
from waha_sync.common.sync.scan import Excluder, ScanResult, SkipKind, scan
from waha_sync.common.sync.ship import ShipReport, ship
from waha_sync.common.words import plural

log = logging.getLogger("waha_sync.sync")


def holder_name(role: str) -> str:
    """Who holds a claim, as ``host/role[pid]`` (``waha-0/restore[4321]``).

    The host is ``POD_NAME`` when set (Kubernetes' downward API), else the host
    name (in Kubernetes, the pod's name); ``role`` is the component (restore,
    push, sidecar); the pid tells processes on one host apart.
    """
    host = os.environ.get("POD_NAME", "").strip() or socket.gethostname()
    return f"{host}/{role}[{os.getpid()}]"


@dataclass(frozen=True)
class PushOutcome:
    report: ShipReport
    scanned: int
    instance: Instance


def authorise(
    store: Store, root: Path, name: str, *, force: bool, role: str, require_marker: bool
) -> tuple[Instance, Marker | None, str]:
    """The instance state to write under: this directory's own claim, or a new one; the
    marker found, and the database's id (``Store.database_id``) for the marker to write.

    Refuses (exit 2) a directory without this instance's marker when the
    instance holds data or ``require_marker`` (a marker written against another
    database is not this instance's); raises ``FencedError`` when the marker's
    epoch was superseded. ``force`` claims the instance anew.
    """
    marker = read_marker(root)
    database = store.database_id()
    current = store.instance(name)
    foreign = marker is not None and marker.database not in ("", database)
    ours = marker is not None and marker.instance == name and not marker.read_only and not foreign
    if ours and current is not None and marker is not None and marker.epoch == current.epoch:
        return current, marker, database
    if force:
        return store.claim(name, holder_name(role)), marker, database
    # Epochs only grow: a marker ahead of this database (markers before database ids) was
    # written against another one too.
    ahead = ours and marker is not None and (current is None or current.epoch < marker.epoch)
    if marker is not None and (foreign or ahead):
        here = "does not know the instance" if current is None else f"is at epoch {current.epoch}"
        raise RefusedError(
            f"{root}: refusing to upload: this directory's marker (instance "
            f"{marker.instance!r}, epoch {marker.epoch}) belongs to another database; "
            f"this one {here}",
            f"waha-sync {role} --force to copy these sessions into this database, or give the "
            "--database-url it was restored from",
        )
    if ours and current is not None and marker is not None:
        raise FencedError(
            fenced_message(
                name,
                (current.holder, current.epoch),
                f"this directory was restored at epoch {marker.epoch}",
            ),
            "restore again here to take the instance over, or stop the other writer",
        )
    has_data = current is not None and current.last_commit > 0
    if marker is None and not has_data and not require_marker:
        return store.claim(name, holder_name(role)), marker, database
    if marker is not None and marker.read_only:
        raise RefusedError(
            f"{root}: refusing to upload from a read-only restore",
            "restore without --read-only to take the instance over, or pass --force",
        )
    found = "no restore marker" if marker is None else f"a marker of {marker.instance!r}"
    held = "already holds data" if has_data else "must be restored into it first"
    raise RefusedError(
        f"{root}: refusing to upload: instance {name!r} {held} and this directory has {found}",
        "run `waha-sync restore` into it first, or pass --force to overwrite the stored tree",
    )


def deletions(found: ScanResult, stored: Iterable[str], excluder: Excluder) -> list[str]:
    """Stored paths to record as deleted: gone from disk, and not merely excluded.

    The files of a folder that cannot be read are unknown, not gone: they keep their
    stored versions.
    """
    present = found.present
    unread = tuple(s.rel + "/" for s in found.skipped if s.kind is SkipKind.UNREADABLE_FOLDER)
    return [
        p
        for p in stored
        if p not in present and not p.startswith(unread) and not excluder.covers(p)
    ]


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

"""Who may write an instance: claims, their holders, and the restore marker's proof.

Push, restore and the sidecar all write under a claim (an epoch of the
instance's lease, ``Store.claim``); a writer whose epoch was superseded is
fenced. ``authorise`` is the one rule deciding whether a directory may upload
into an instance, and under which claim.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

from waha_sync.common.errors import FencedError, RefusedError, fenced_message
from waha_sync.common.store.base import Instance, Store
from waha_sync.common.sync.marker import Marker, read_marker


def holder_name(role: str) -> str:
    """Who holds a claim, as ``host/role[pid]`` (``waha-0/restore[4321]``).

    The host is ``POD_NAME`` when set (Kubernetes' downward API), else the host
    name (in Kubernetes, the pod's name); ``role`` is the component (restore,
    push, sidecar); the pid tells processes on one host apart.
    """
    host = os.environ.get("POD_NAME", "").strip() or socket.gethostname()
    return f"{host}/{role}[{os.getpid()}]"


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

"""The restore marker: proof that this volume was filled from the database in this pod.

``restore`` writes ``.waha-sync/restored.json`` inside the target after every
file is durable; ``push`` writes it after a first push into an empty
instance. Writers read it to learn their instance and fencing epoch, and
refuse to upload from a volume without one (an empty new volume must never
overwrite stored sessions). The folder is never uploaded.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from waha_sync.common.errors import ConfigError, write_failure

MARKER_DIR = ".waha-sync"
MARKER_FILE = "restored.json"


@dataclass(frozen=True)
class Marker:
    instance: str
    epoch: int
    holder: str
    commit_id: int
    read_only: bool
    source: str  # "restore", "push" or "sidecar" (started with --force)
    time: str
    files: int
    bytes: int
    seconds: float = 0.0  # how long the restore took (markers before 0.1.1 lack it)
    # The id of the database it was written against (``Store.database_id``); older markers
    # lack it, and restore then never trusts them to be newer than the database.
    database: str = ""


def marker_path(root: Path) -> Path:
    return root / MARKER_DIR / MARKER_FILE


def read_marker(root: Path) -> Marker | None:
    """The marker in ``root``, or None if there is none; ConfigError if it is unreadable."""
    path = marker_path(root)
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        return Marker(**raw)
    except FileNotFoundError:
        return None
    except (OSError, ValueError, TypeError) as exc:
        raise ConfigError(
            f"{path}: restore marker is unreadable ({exc})",
            "delete it and run `waha-sync restore` again",
        ) from exc


def write_marker(root: Path, marker: Marker) -> None:
    """Write the marker atomically and durably (temp file, fsync, rename, fsync folder)."""
    folder = root / MARKER_DIR
    tmp = folder / f".{MARKER_FILE}.tmp"
    data = json.dumps(asdict(marker), indent=2).encode()
    try:
        folder.mkdir(exist_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        tmp.replace(folder / MARKER_FILE)
    except OSError as exc:  # a volume filled to the last byte by the restore, say
        tmp.unlink(missing_ok=True)
        raise write_failure(str(folder / MARKER_FILE), exc) from exc
    dfd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)

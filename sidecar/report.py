"""The JSON bodies of ``/health`` and ``/status``, built from a ``View``.

Both read only the view; a body never contains a secret (the database
is described by kind, version and TLS, never by its URL).
"""

from __future__ import annotations

import time
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any

from waha_sync.common.sync.scan import Skipped
from waha_sync.sidecar.view import SessionTotals, TreeView, View

MAX_SKIPPED = 200  # listed in /status; skipped_count has them all


def iso(t: float | None) -> str | None:
    """Unix time as ``2026-01-09T10:30:00Z`` (None stays None)."""
    if t is None:
        return None
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _tree(view: View, label: str) -> TreeView | None:
    return next((t for t in view.trees if t.label == label), None)


def health_body(view: View) -> dict[str, Any]:
    """WAHA-style health: status, database kind, session and media counts.

    ``data`` always holds ``sessions`` (``count``: WAHA session folders, ``total_size_bytes``)
    and ``media`` (``count``: files, ``total_size_bytes``, ``enabled``: whether media syncs;
    zeros when it does not).
    """
    sessions = _tree(view, "sessions")
    media = _tree(view, "media")
    body: dict[str, Any] = {"status": "ok" if view.ready else "error"}
    if view.problem is not None:
        body["error"] = view.problem
    body["database"] = sessions.db.kind if sessions is not None else "unknown"
    body["component"] = "waha-sync"
    body["timestamp"] = iso(time.time())
    # One shape always (WAHA Plus's): a client reading data.media.count must never break.
    body["data"] = {
        "sessions": {
            "count": len(sessions.sessions) if sessions is not None else 0,
            "total_size_bytes": sessions.stored_bytes if sessions is not None else 0,
        },
        "media": {
            "count": media.stored_files if media is not None else 0,
            "total_size_bytes": media.stored_bytes if media is not None else 0,
            "enabled": media is not None,
        },
    }
    return body


def _session(s: SessionTotals) -> dict[str, Any]:
    return {
        "name": s.name,
        "files": s.files,
        "bytes": s.bytes,
        "last_change": iso(s.last_change),
        "pending": s.pending,
        "skipped": s.skipped,
        "stored_bytes": s.stored_bytes,
        "history_bytes": s.history_bytes,
    }


def _path(item: tuple[str, Skipped]) -> str:
    return item[0]


def _tree_body(t: TreeView) -> dict[str, Any]:
    s = t.status
    return {
        "tree": t.label,
        "root": s.root,
        "instance": s.instance,
        "ready": t.problem is None,
        "problem": t.problem,
        "lease": {
            "epoch": s.epoch,
            "holder": s.holder,
            "stored_epoch": t.db.epoch,
            "stored_holder": t.db.holder,
        },
        "fenced": s.fenced,
        "database": {
            "kind": t.db.kind,
            "version": t.db.version,
            "tls": t.db.tls,
            "up": t.db.up,
            "checked_at": iso(t.db.checked_at),
            "latency_ms": t.db.latency_ms,
            "error": t.db.error,
            "last_commit": t.db.last_commit,
        },
        "restore": asdict(t.marker) if t.marker is not None else None,
        "displaced": _displaced(t.displaced),
        "local": {
            "files": s.local_files,
            "bytes": s.local_bytes,
            "compared_at": iso(s.compared_at),
        },
        "stored": {"files": t.stored_files, "bytes": t.stored_bytes},
        "pending": s.pending,
        "last_commit": {
            "id": s.last_commit_id,
            "at": iso(s.last_commit_at),
            "files": s.last_commit_files,
            "bytes": s.last_commit_bytes,
        },
        "shipped": {
            "commits": s.commits,
            "files": s.files_shipped,
            "bytes": s.bytes_shipped,
            "deleted": s.files_deleted,
        },
        "lag_seconds": s.lag_seconds,
        "failing_since": iso(s.failing_since),
        "last_error": s.last_error,
        "errors": dict(s.errors),
        "recent_errors": [
            {"at": iso(at), "kind": kind, "message": msg} for at, kind, msg in s.recent_errors
        ],
        "skipped_count": len(s.skipped),
        "skipped": [
            {"path": p, "reason": x.reason}
            for p, x in sorted(s.skipped.items(), key=_path)[:MAX_SKIPPED]
        ],
        "sessions": [_session(x) for x in t.sessions],
        "other_files": _session(t.other) if t.other is not None else None,
        "history": {
            "columns": ["time", "stored_bytes", "commits", "lag_seconds"],
            "samples": [
                [
                    s.at,
                    s.stored_bytes,
                    s.commits,
                    None if s.lag_seconds is None else round(s.lag_seconds, 3),
                ]
                for s in t.history
            ],
        },
    }


def _displaced(summary: dict[str, Any] | None) -> dict[str, Any] | None:
    """Restore's displaced files, small: count, folders, the newest folder, its last paths."""
    if not summary or not summary.get("files"):
        return None
    return {
        "files": summary.get("files", 0),
        "folders": len(summary.get("folders", [])),
        "newest": summary.get("newest"),
        "paths": list(summary.get("paths", []))[-5:],
        "retention_hours": summary.get("retention_hours"),
    }


def status_body(view: View, version: str) -> dict[str, Any]:
    """Everything the dashboard and an operator need, per tree."""
    now = time.time()
    return {
        "status": "ok" if view.ready else "error",
        "ready": view.ready,
        "problem": view.problem,
        "version": version,
        "started_at": iso(view.started_at),
        "uptime_seconds": round(now - view.started_at, 1),
        "checked_at": iso(view.checked_at),
        "stopping": view.stopping,
        "trees": [_tree_body(t) for t in view.trees],
    }

"""The sidecar's HTTP side, wired: health check, metrics, auth, endpoints, server.

Liveness (``/livez``) fails only when a loop is stuck: a tree's loop busy
without progress for ``STALL_SECONDS`` (every database call times out well
before that, and each uploaded group of files counts as progress), or a
health check running that long. A database outage is not a liveness
problem: the loops keep retrying, so the pod is not restarted for it.
"""

from __future__ import annotations

import logging
import time

from waha_sync.cli import __version__
from waha_sync.common.config.settings import Settings
from waha_sync.common.store.postgres import PgStore
from waha_sync.sidecar.auth import Guard
from waha_sync.sidecar.metrics import Metrics
from waha_sync.sidecar.monitor import Monitor
from waha_sync.sidecar.server import HttpServer, bind
from waha_sync.sidecar.tree_sync import TreeSync
from waha_sync.sidecar.web import Endpoints

log = logging.getLogger("waha_sync.http")
STALL_SECONDS = 180.0


class Front:
    def __init__(
        self, settings: Settings, syncs: list[TreeSync], probes: dict[str, PgStore]
    ) -> None:
        self.sock = bind(settings.host, settings.port)  # first: a taken port fails fast
        self.syncs = syncs
        self.guard = Guard(settings)
        self.monitor = Monitor(
            syncs,
            probes,
            settings.unhealthy_after_seconds,
            by_session={s.label: s.label != "media" for s in syncs},
        )
        self.metrics = Metrics(
            lambda: self.monitor.view, lambda: {s.label: s.status.snapshot() for s in syncs}
        )
        for sync in syncs:
            sync.status.on_lag = self.metrics.observer(sync.label)
        endpoints = Endpoints(
            lambda: self.monitor.view, self.stalled, self.guard, self.metrics, __version__
        )
        self.server = HttpServer(endpoints.app(), self.sock)

    def start(self) -> None:
        self.monitor.start()
        self.server.start()
        unguarded = self.guard.open_endpoints()
        if unguarded:
            log.warning(
                "no API key set: %s open to anyone who reaches this port; "
                "set WAHA_SYNC_API_KEY (or WAHA_API_KEY / WHATSAPP_API_KEY)",
                " and ".join(f"/{'' if n == 'dashboard' else n}" for n in unguarded),
                extra={"plain": True},
            )

    def stopping(self) -> None:
        """From now on /health reports the final flush (503): the pod is going away."""
        self.monitor.stopping = True

    def stalled(self) -> str | None:
        """Why liveness fails, or None while every loop makes progress."""
        now = time.monotonic()
        for sync in self.syncs:
            since = sync.status.progress_at
            if since is not None and now - since > STALL_SECONDS:
                return f"{sync.label}: sync loop made no progress for {now - since:.0f}s"
        if not self.monitor.alive(STALL_SECONDS):
            return "health check made no progress"
        return None

    def close(self) -> None:
        self.server.stop()
        self.monitor.close()

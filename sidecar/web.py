"""The sidecar's HTTP endpoints (Starlette): health, liveness, status, dashboard, metrics.

Handlers only read in-memory state (the health check's latest ``View``,
the loops' progress stamps), so a slow or dead database never slows a
probe, and serving a probe never waits on the syncer.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from importlib.resources import files
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from waha_sync.sidecar.auth import Guard
from waha_sync.sidecar.metrics import Metrics
from waha_sync.sidecar.report import health_body, status_body
from waha_sync.sidecar.view import View

# The dashboard may run its own inline script and styles and call back to this
# server, nothing else: no external asset can load (clusters are often offline).
DASHBOARD_HEADERS = {
    "content-security-policy": "default-src 'none'; script-src 'unsafe-inline'; "
    "style-src 'unsafe-inline'; connect-src 'self'; img-src data:; base-uri 'none'; "
    "form-action 'none'; frame-ancestors 'none'",
    "x-content-type-options": "nosniff",
    "cache-control": "no-store",
    "referrer-policy": "no-referrer",
}
PROMETHEUS_TEXT = "text/plain; version=0.0.4; charset=utf-8"


def _json(body: dict[str, Any], status: int = 200) -> Response:
    data = json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()
    return Response(
        data, status, media_type="application/json", headers={"cache-control": "no-store"}
    )


class Endpoints:
    """The routes, bound to the sidecar's state."""

    def __init__(
        self,
        view: Callable[[], View],
        live: Callable[[], str | None],
        guard: Guard,
        metrics: Metrics,
        version: str,
    ) -> None:
        self.view = view
        self.live = live
        self.guard = guard
        self.metrics = metrics
        self.version = version
        self.page = files("waha_sync.sidecar").joinpath("dashboard.html").read_bytes()

    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/health", self.health),
                Route("/livez", self.livez),
                Route("/status", self.status),
                Route("/metrics", self.metrics_text),
                Route("/", self.dashboard),
            ]
        )

    def _denied(self, endpoint: str, request: Request) -> Response | None:
        if self.guard.allows(endpoint, request.headers):
            return None
        return Response(
            json.dumps(
                {
                    "error": f"/{'' if endpoint == 'dashboard' else endpoint} needs the "
                    "API key (X-Api-Key header) or the dashboard password"
                }
            ),
            401,
            media_type="application/json",
            headers={"www-authenticate": 'Basic realm="waha-sync", charset="UTF-8"'},
        )

    async def health(self, request: Request) -> Response:
        denied = self._denied("health", request)
        if denied is not None:
            return denied
        view = self.view()
        return _json(health_body(view), 200 if view.ready else 503)

    async def livez(self, request: Request) -> Response:
        denied = self._denied("livez", request)
        if denied is not None:
            return denied
        stalled = self.live()
        body = {"status": "ok" if stalled is None else "error", "timestamp": int(time.time())}
        if stalled is not None:
            body["error"] = stalled
        return _json(body, 200 if stalled is None else 503)

    async def status(self, request: Request) -> Response:
        denied = self._denied("status", request)
        return denied or _json(status_body(self.view(), self.version))

    async def metrics_text(self, request: Request) -> Response:
        denied = self._denied("metrics", request)
        return denied or Response(self.metrics.render(), media_type=PROMETHEUS_TEXT)

    async def dashboard(self, request: Request) -> Response:
        denied = self._denied("dashboard", request)
        if denied is not None:
            return denied
        return Response(self.page, media_type="text/html; charset=utf-8", headers=DASHBOARD_HEADERS)

"""Serving the endpoints: a uvicorn server in a thread of its own.

The socket is bound before anything else starts, so a port in use is a
clear configuration error (exit 2) rather than a thread dying later. It is
created with an explicit ``IPPROTO_TCP``: asyncio sets ``TCP_NODELAY`` only
on such sockets, and without it every response waits for a delayed ACK (the
request rate it allows: BENCHMARKS.md, "Sidecar HTTP").
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
import threading

import uvicorn
from starlette.applications import Starlette

from waha_sync.common.errors import ConfigError

log = logging.getLogger("waha_sync.http")


class _Forward(logging.Handler):
    """uvicorn's own warnings and errors, as ``[HTTP]`` lines (one line, no traceback)."""

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if record.exc_info and record.exc_info[1] is not None:
            exc = record.exc_info[1]
            message = f"{message}: {type(exc).__name__}: {exc}"
        log.log(record.levelno, "%s", message)


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port``; ConfigError naming the setting if impossible."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    except socket.gaierror as exc:
        raise ConfigError(
            f"host: cannot resolve {host!r} ({exc.strerror})", "--host 0.0.0.0"
        ) from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(1024)
    except OSError as exc:
        sock.close()
        taken = exc.errno == errno.EADDRINUSE
        raise ConfigError(
            f"port: cannot listen on {host}:{port} ({exc.strerror})",
            "--port 3002 (another process holds this port)" if taken else "--host 0.0.0.0",
        ) from None
    sock.set_inheritable(False)
    return sock


class _Server(uvicorn.Server):
    async def main_loop(self) -> None:
        """uvicorn's loop ticking once a second instead of ten times, so an idle sidecar sleeps.

        ``on_tick`` refreshes the Date header on multiples of 10 and reports
        ``should_exit``; stopping therefore takes up to a second.
        """
        counter = 0
        while not await self.on_tick(counter):
            counter = (counter + 10) % 864000
            await asyncio.sleep(1.0)


class HttpServer:
    def __init__(self, app: Starlette, sock: socket.socket) -> None:
        for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
            logger = logging.getLogger(name)
            logger.handlers = [_Forward()]
            logger.setLevel(logging.WARNING)
            logger.propagate = False
        config = uvicorn.Config(
            app,
            log_config=None,
            access_log=False,
            lifespan="off",
            server_header=False,
            timeout_graceful_shutdown=2,
        )
        self.sock = sock
        self.server = _Server(config)
        self.thread = threading.Thread(target=self._run, name="http", daemon=True)

    def _run(self) -> None:
        try:
            self.server.run(sockets=[self.sock])
        except BaseException as exc:  # SystemExit included: never a silent dead thread
            log.error("HTTP server stopped: %s: %s", type(exc).__name__, exc)

    def start(self) -> None:
        self.thread.start()
        host, port = self.sock.getsockname()[:2]
        log.info("listening on %s:%d (health, livez, status, metrics, dashboard)", host, port)

    def alive(self) -> bool:
        return self.thread.is_alive()

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(5)
        self.sock.close()

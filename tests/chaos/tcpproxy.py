"""A TCP proxy on loopback that cuts or stalls its connections on command.

Put between the sidecar and PostgreSQL, it plays the network failures a pod
sees: ``cut()`` resets every open connection (RST, as a dead NAT entry or a
restarted load balancer does); ``cut_on_next_request()`` does it the moment
the client next sends something, so the cut lands inside a conversation
(mid-transaction, or between COMMIT and its answer); ``stall(seconds)``
stops forwarding in both directions while the connections stay open.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
import time


def _reset(sock: socket.socket) -> None:
    """Close with RST (linger 0); SHUT_RD first wakes a thread blocked in recv on it."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RD)
    with contextlib.suppress(OSError):
        sock.close()


class TcpProxy:
    """Forwards 127.0.0.1:<port> to ``target``; thread per direction per connection."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.listener.getsockname()[1])
        self.flowing = threading.Event()
        self.flowing.set()
        self._lock = threading.Lock()
        self._pairs: list[tuple[socket.socket, socket.socket]] = []
        self._armed = False
        self._closed = False
        self.cuts = 0  # connections reset so far
        self.accepted = 0
        threading.Thread(target=self._accept, name="proxy-accept", daemon=True).start()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(self.target, timeout=5)
                server.settimeout(None)
            except OSError:
                _reset(client)
                continue
            for sock in (client, server):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self._lock:
                self._pairs.append((client, server))
                self.accepted += 1
            for src, dst, upstream in ((client, server, True), (server, client, False)):
                threading.Thread(
                    target=self._pump, args=(src, dst, upstream), name="proxy-pump", daemon=True
                ).start()

    def _pump(self, src: socket.socket, dst: socket.socket, upstream: bool) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                if upstream and self._armed:
                    with self._lock:
                        hit, self._armed = self._armed, False
                    if hit:  # the request never reaches the server: cut mid-conversation
                        self.cut()
                        return
                while not self.flowing.wait(0.05):
                    if self._closed:
                        return
                dst.sendall(data)
        except OSError:
            pass
        self._drop(src, dst)

    def _drop(self, a: socket.socket, b: socket.socket) -> None:
        with self._lock:
            self._pairs = [p for p in self._pairs if a not in p]
        _reset(a)
        _reset(b)

    def open_connections(self) -> int:
        with self._lock:
            return len(self._pairs)

    def cut(self) -> int:
        """Reset every open connection now; how many there were."""
        with self._lock:
            pairs, self._pairs = self._pairs, []
            self.cuts += len(pairs)
        for client, server in pairs:
            _reset(client)
            _reset(server)
        return len(pairs)

    def cut_on_next_request(self) -> None:
        """Reset everything when a client next sends bytes (mid-conversation by design)."""
        with self._lock:
            self._armed = True

    def stall(self, seconds: float) -> None:
        """Forward nothing, either way, for ``seconds`` (blocks the caller that long)."""
        self.flowing.clear()
        try:
            time.sleep(seconds)
        finally:
            self.flowing.set()

    def close(self) -> None:
        self._closed = True
        self.flowing.set()
        with contextlib.suppress(OSError):
            self.listener.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept()
        with contextlib.suppress(OSError):
            self.listener.close()
        self.cut()

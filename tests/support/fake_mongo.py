"""Just enough of MongoDB's wire protocol to fail authentication, on 127.0.0.1.

    python fake_mongo.py PORT_FILE

No MongoDB server can run here. This one answers every ``hello`` / ``isMaster``
(OP_QUERY or OP_MSG) as a standalone 7.0 server, and every other command (the
client's ``saslStart``) with MongoDB's own answer to a wrong password:
``{ok: 0, code: 18, codeName: "AuthenticationFailed"}``. It writes the port it
listens on to PORT_FILE and serves until killed.
"""

from __future__ import annotations

import socket
import struct
import sys
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import bson

OP_REPLY, OP_QUERY, OP_MSG = 1, 2004, 2013
HELLO = ("hello", "ismaster", "isMaster")


def _hello() -> dict[str, Any]:
    return {
        "helloOk": True,
        "ismaster": True,
        "isWritablePrimary": True,
        "maxBsonObjectSize": 16 * 1024 * 1024,
        "maxMessageSizeBytes": 48_000_000,
        "maxWriteBatchSize": 100_000,
        "localTime": datetime.now(UTC),
        "logicalSessionTimeoutMinutes": 30,
        "connectionId": 1,
        "minWireVersion": 0,
        "maxWireVersion": 21,
        "readOnly": False,
        "ok": 1.0,
    }


AUTH_FAILED = {
    "ok": 0.0,
    "errmsg": "Authentication failed.",
    "code": 18,
    "codeName": "AuthenticationFailed",
}


def _read(conn: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        part = conn.recv(n - len(data))
        if not part:
            raise ConnectionError
        data += part
    return data


def _command(op: int, body: bytes) -> dict[str, Any]:
    if op == OP_QUERY:  # flags, "db.$cmd\0", skip, limit, query document
        start = body.index(b"\0", 4) + 1 + 8
        return bson.decode(body[start : start + struct.unpack_from("<i", body, start)[0]])
    # OP_MSG: flagBits, then section kind 0 holds the command document
    start = 5
    return bson.decode(body[start : start + struct.unpack_from("<i", body, start)[0]])


def _serve(conn: socket.socket) -> None:
    with conn:
        try:
            while True:
                length, request_id, _to, op = struct.unpack("<iiii", _read(conn, 16))
                cmd = _command(op, _read(conn, length - 16))
                reply = _hello() if next(iter(cmd)) in HELLO else AUTH_FAILED
                doc = bson.encode(reply)
                if op == OP_QUERY:
                    payload = struct.pack("<iqii", 0, 0, 0, 1) + doc
                    code = OP_REPLY
                else:
                    payload = struct.pack("<IB", 0, 0) + doc
                    code = OP_MSG
                conn.sendall(struct.pack("<iiii", 16 + len(payload), 0, request_id, code) + payload)
        except (ConnectionError, OSError, ValueError, struct.error):
            return


def main(argv: list[str]) -> int:
    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    Path(argv[1]).write_text(str(server.getsockname()[1]))
    while True:
        conn, _ = server.accept()
        threading.Thread(target=_serve, args=(conn,), daemon=True).start()


if __name__ == "__main__":
    sys.exit(main(sys.argv))

"""Pod simulation: the sidecar as a real subprocess beside writers that behave like WAHA.

``SidecarProc`` runs ``waha-sync sidecar`` with its log in a file;
``BaileysWriter`` rewrites many small JSON files with plain, non-atomic
writes (truncate, half, pause, rest), deletes and creates keys as NOWEB
does; ``stored_tree`` restores read-only into a fresh folder for checking.
"""

from __future__ import annotations

import json
import random
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from tests.support.dbtarget import DbTarget
from tests.support.wahatree import tree_digest

FAST = {
    "WAHA_SYNC_DEBOUNCE_SECONDS": "0.3",
    "WAHA_SYNC_MAX_DELAY_SECONDS": "2",
    "WAHA_SYNC_LOG_LEVEL": "INFO",
}


def wait_until(check: Callable[[], object], timeout: float = 30) -> None:
    """Poll ``check`` every 0.1 s until it returns something true; AssertionError after
    ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition never became true"
        time.sleep(0.1)


def free_port() -> int:
    """A TCP port nobody listens on right now (the kernel's pick)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def http_get(url: str, headers: dict[str, str] | None = None, timeout: float = 10) -> Reply:
    """GET ``url``; any status is a reply (urllib raises for 4xx/5xx, this does not)."""
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return Reply(response.status, dict(response.headers), response.read())
    except urllib.error.HTTPError as err:
        return Reply(err.code, dict(err.headers), err.read())


class SidecarProc:
    started: ClassVar[list[SidecarProc]] = []  # killed after each test by conftest

    def __init__(self, db: DbTarget, root: Path, log: Path, **env: str) -> None:
        self.db = db
        self.root = root
        self.log_path = log
        self.env = {**FAST, "WAHA_SYNC_PORT": str(free_port()), **env}
        self.proc: subprocess.Popen[bytes] | None = None
        self.prefix: list[str] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.env['WAHA_SYNC_PORT']}"

    def get(self, path: str, **headers: str) -> Reply:
        """GET an endpoint of this sidecar (headers as keyword arguments: X_Api_Key=...)."""
        return http_get(self.url + path, {k.replace("_", "-"): v for k, v in headers.items()})

    def wait_http(self, path: str, status: int, timeout: float = 60, **headers: str) -> Reply:
        """Poll ``path`` until it answers ``status``; the last reply."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                reply = self.get(path, **headers)
                if reply.status == status:
                    return reply
            except OSError as exc:  # not listening yet
                reply = Reply(0, {}, str(exc).encode())
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"sidecar exited {self.proc.returncode}:\n{self.log()}")
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"{path} never answered {status} (last {reply.status}: {reply.body[:300]!r})"
                    f":\n{self.log()[-3000:]}"
                )
            time.sleep(0.1)

    def start(self, *args: str) -> SidecarProc:
        cmd = [*self.prefix, sys.executable, "-m", "waha_sync.cli", "sidecar"]
        cmd += ["--sessions-dir", str(self.root), *args]
        with self.log_path.open("ab") as out:
            self.proc = subprocess.Popen(
                cmd, env=self.db.env(**self.env), stdout=out, stderr=subprocess.STDOUT
            )
        SidecarProc.started.append(self)
        return self

    @classmethod
    def kill_leftovers(cls) -> None:
        """SIGKILL every sidecar a test started and left running (a failed assertion, say)."""
        for side in cls.started:
            if side.proc is not None and side.proc.poll() is None:
                side.proc.kill()
                side.proc.wait(10)
        cls.started.clear()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def wait_for(self, text: str, count: int = 1, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while self.log().count(text) < count:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"sidecar exited {self.proc.returncode}:\n{self.log()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"no {text!r} in time:\n{self.log()}")
            time.sleep(0.05)

    def ready(self) -> SidecarProc:
        before = self.log().count("in sync with the database")
        self.wait_for("in sync with the database", before + 1)
        return self

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(10)

    def term(self, timeout: float = 60) -> int:
        self.signal(signal.SIGTERM)
        return self.wait(timeout)

    def stop_ok(self) -> None:
        """SIGTERM, and the sidecar must exit 0 (the log is shown if it did not)."""
        code = self.term()
        assert code == 0, f"sidecar exited {code}:\n{self.log()}"

    def wait(self, timeout: float = 60) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout)


class BaileysWriter(threading.Thread):
    """Keeps rewriting creds.json and pre-key files the way Baileys does, until stopped."""

    def __init__(self, folder: Path, files: int = 200, rate: float = 300.0, seed: int = 1) -> None:
        super().__init__(daemon=True)
        self.folder = folder
        self.files = files
        self.interval = 1.0 / rate
        self.rng = random.Random(seed)
        self.counter = 0
        self._halt = threading.Event()
        folder.mkdir(parents=True, exist_ok=True)

    def write(self, name: str) -> None:
        self.counter += 1
        body = {"n": self.counter, "key": self.rng.randbytes(48).hex(), "pad": "x" * 300}
        data = json.dumps(body).encode()
        with (self.folder / name).open("wb") as f:  # truncate + two writes, not atomic
            f.write(data[: len(data) // 2])
            f.flush()
            time.sleep(0.001)
            f.write(data[len(data) // 2 :])

    def run(self) -> None:
        while not self._halt.is_set():
            roll = self.rng.random()
            if roll < 0.1:
                self.write("creds.json")
            elif roll < 0.15:
                (self.folder / f"pre-key-{self.rng.randrange(self.files)}.json").unlink(
                    missing_ok=True
                )
            else:
                self.write(f"pre-key-{self.rng.randrange(self.files)}.json")
            time.sleep(self.interval)

    def stop(self) -> None:
        self._halt.set()
        self.join(10)


def sqlite_rows(path: Path) -> int:
    conn = sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True)
    try:
        return int(conn.execute("SELECT count(*) FROM events").fetchone()[0])
    finally:
        conn.close()


def stored_tree(db: DbTarget, into: Path) -> Path:
    """Restore the stored state read-only into a fresh folder; every file checked valid."""
    assert db.cli("restore", "--read-only", "--sessions-dir", str(into)) == 0
    for path in into.rglob("*"):
        if path.suffix == ".json" and ".waha-sync" not in path.parts:
            json.loads(path.read_bytes())  # never a torn file
        elif path.is_file() and path.read_bytes()[:16] == b"SQLite format 3\x00":
            conn = sqlite3.connect(path)
            assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
            conn.close()
    return into


def assert_same_tree(local: Path, stored: Path, sqlite_files: tuple[str, ...] = ()) -> None:
    """The stored tree equals the local one: bytes for files, rows for live SQLite databases."""
    skip = (".waha-sync",)
    mine = {k: v for k, v in tree_digest(local, skip).items() if not k.endswith(("-wal", "-shm"))}
    theirs = tree_digest(stored, skip)
    for rel in sqlite_files:
        assert sqlite_rows(local / rel) == sqlite_rows(stored / rel), rel
        mine.pop(rel, None)
        theirs.pop(rel, None)
    assert sorted(mine) == sorted(theirs)
    assert mine == theirs


def child_pid(parent: int) -> int:
    """The one child of ``parent`` (for a process started under ``unshare --fork``)."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        for task in Path(f"/proc/{parent}/task").iterdir():
            kids = (task / "children").read_text().split()
            if kids:
                return int(kids[0])
        time.sleep(0.05)
    raise AssertionError(f"process {parent} has no child")

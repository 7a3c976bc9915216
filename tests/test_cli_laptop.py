"""``waha-sync up`` on a laptop, as a terminal runs it: a real embedded PostgreSQL, real signals.

Ctrl-C in a terminal is SIGINT to the whole foreground process group, so these tests start
``up`` as the leader of a process group of its own and signal that group. The embedded
server must not be in it: ``up`` ships what is pending, then stops the server itself.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.podsim import free_port, http_get, wait_until
from waha_sync.common.db.connect import open_connection
from waha_sync.common.db.schema import LATEST
from waha_sync.common.db.url import parse_url
from waha_sync.common.local.postgres import running_port


def clean_env(**extra: str) -> dict[str, str]:
    """The environment of a user with no database configured."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WAHA_SYNC_", "WAHA_"))}
    for name in ("DATABASE_URL", "WHATSAPP_SESSIONS_POSTGRESQL_URL", "WHATSAPP_API_KEY"):
        env.pop(name, None)
    env.update(extra)
    return env


def cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "waha_sync.cli", *args],
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


class Up:
    """``waha-sync up`` in a process group of its own, as a terminal's foreground job."""

    def __init__(self, tmp: Path, *args: str) -> None:
        self.pg_dir = tmp / "state" / "postgres"
        self.log_path = tmp / "up.log"
        self.port = free_port()
        cmd = [sys.executable, "-m", "waha_sync.cli", "up", "--local-db-dir", str(self.pg_dir)]
        cmd += ["--port", str(self.port), *args]
        with self.log_path.open("ab") as out:
            self.proc = subprocess.Popen(
                cmd,
                env=clean_env(),
                stdout=out,
                stderr=subprocess.STDOUT,
                process_group=0,  # its own group, like a shell's job
            )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for(self, text: str, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.log():
            assert self.proc.poll() is None, f"up exited {self.proc.returncode}:\n{self.log()}"
            assert time.monotonic() < deadline, f"no {text!r} in time:\n{self.log()}"
            time.sleep(0.05)

    def status(self) -> dict[str, object]:
        reply = http_get(f"http://127.0.0.1:{self.port}/status")
        assert reply.status == 200, reply.body
        body: dict[str, object] = reply.json()
        return body

    def ctrl_c(self) -> int:
        os.killpg(self.proc.pid, signal.SIGINT)  # the terminal's way: the whole group
        return self.proc.wait(60)

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(30)


@pytest.fixture
def up(tmp_path: Path) -> Iterator[Up]:
    started = Up(tmp_path, "--debounce-seconds", "30", "--max-delay-seconds", "60")
    try:
        started.wait_for("watching for changes")
        yield started
    finally:
        started.kill()


def _server_pid(pg_dir: Path) -> int:
    return int((pg_dir / "postmaster.pid").read_text().splitlines()[0])


def test_ctrl_c_ships_the_pending_change_on_a_durable_server(up: Up) -> None:
    port = running_port(up.pg_dir)
    assert port is not None
    conn = open_connection(
        parse_url(f"postgresql://postgres@/postgres?host={up.pg_dir}&port={port}")
    )
    try:
        assert conn.run("SHOW fsync") == [["on"]]  # PostgreSQL's durable default
        assert conn.run("SHOW synchronous_commit") == [["on"]]
    finally:
        conn.close()
    assert f"listening on 127.0.0.1:{up.port}" in up.log()  # a laptop's dashboard is its own
    server_group = os.getpgid(_server_pid(up.pg_dir))
    sessions = up.pg_dir.parent / "sessions"  # the default: beside the data, not in a checkout
    (sessions / "noweb" / "default").mkdir(parents=True)
    (sessions / "noweb" / "default" / "creds.json").write_text('{"me": "laptop"}')
    deadline = time.monotonic() + 20
    while up.status()["trees"][0]["pending"] == 0:  # type: ignore[index]
        assert time.monotonic() < deadline, up.log()
        time.sleep(0.1)

    assert up.ctrl_c() == 0, up.log()
    log = up.log()
    assert "final flush of 1 changed path: commit 1: 1 file" in log, log
    assert "not shipped" not in log and "connection refused" not in log
    assert server_group != up.proc.pid, "the server was in up's process group"
    assert running_port(up.pg_dir) is None and not (up.pg_dir / "postmaster.pid").exists()

    # The stopped database is started for `ls` (no URL given) and stopped again.
    listed = cli("ls", "--json", "--local-db-dir", str(up.pg_dir))
    assert listed.returncode == 0, listed.stderr
    assert [r["path"] for r in json.loads(listed.stdout)] == ["noweb/default/creds.json"]
    assert "started the embedded PostgreSQL" in listed.stderr
    assert not (up.pg_dir / "postmaster.pid").exists()


def test_second_up_and_commands_without_url_share_the_running_one(up: Up, tmp_path: Path) -> None:
    again = cli("up", "--local-db-dir", str(up.pg_dir), "--port", str(free_port()))
    assert again.returncode == 2, again.stderr
    lines = again.stderr.strip().splitlines()
    assert len(lines) <= 2, again.stderr  # the message and its Try: line, no server log
    assert f"already running (pid {up.proc.pid})" in lines[0]
    assert lines[1].startswith("Try: ")

    server = _server_pid(up.pg_dir)
    check = cli("check", "--local-db-dir", str(up.pg_dir))
    assert check.returncode == 0, check.stderr
    assert f"using the embedded PostgreSQL of `waha-sync up` (pid {up.proc.pid})" in check.stderr
    assert f"schema:   {LATEST}" in check.stdout

    vol = tmp_path / "vol"
    (vol / "a").mkdir(parents=True)
    (vol / "a" / "one.json").write_text('{"n": 1}')
    pushed = cli(
        "push", "--sessions-dir", str(vol), "--instance", "other", "--local-db-dir", str(up.pg_dir)
    )
    assert pushed.returncode == 0, pushed.stderr
    listed = cli("ls", "--instance", "other", "--local-db-dir", str(up.pg_dir))
    assert listed.returncode == 0 and "a/one.json" in listed.stdout, listed.stderr
    unknown = cli("ls", "--instance", "nosuch", "--local-db-dir", str(up.pg_dir))
    assert unknown.returncode == 1, unknown.stderr
    assert "instance: unknown to this database (got 'nosuch'); known: default, other" in (
        unknown.stderr
    )
    # A restore of the instance `up` syncs would claim it and fence `up`: refused; a
    # read-only copy is fine.
    copy = tmp_path / "copy"
    taken = cli("restore", "--sessions-dir", str(copy), "--local-db-dir", str(up.pg_dir))
    assert taken.returncode == 2, taken.stderr
    assert f"instance: `waha-sync up` (pid {up.proc.pid}) is syncing it" in taken.stderr
    assert "--read-only" in taken.stderr.splitlines()[-1]
    looked = cli(
        "restore", "--read-only", "--sessions-dir", str(copy), "--local-db-dir", str(up.pg_dir)
    )
    assert looked.returncode == 0, looked.stderr
    assert _server_pid(up.pg_dir) == server  # the same server throughout, still running
    assert up.proc.poll() is None
    assert up.ctrl_c() == 0, up.log()
    assert "fenced" not in up.log()


def test_without_url_and_without_up_the_url_is_not_set(tmp_path: Path) -> None:
    done = cli("ls", "--local-db-dir", str(tmp_path / "never"))
    assert done.returncode == 2
    assert "database_url: not set" in done.stderr and "waha-sync up" in done.stderr
    assert not (tmp_path / "never").exists()


@pytest.mark.parametrize("command", ["up", "restore", "push", "sidecar"])
def test_sessions_dir_that_is_a_file_is_one_config_error(command: str, tmp_path: Path) -> None:
    a_file = tmp_path / "sessions"
    a_file.write_text("not a folder")
    url = "postgresql://u:p@127.0.0.1:1/db"  # never reached: the check comes first
    args = ["--sessions-dir", str(a_file), "--local-db-dir", str(tmp_path / "pg")]
    if command != "up":
        args += ["--database-url", url]
    done = cli(command, *args)
    assert done.returncode == 2, done.stderr
    assert f"sessions_dir: not a directory (got '{a_file}')" in done.stderr
    assert "Traceback" not in done.stderr and "FileExistsError" not in done.stderr
    assert not (tmp_path / "pg").exists(), "nothing started before the check"


def test_up_runs_restore_and_sidecar_on_embedded_postgres(tmp_path: Path) -> None:
    data = Path(tempfile.mkdtemp(prefix="wsup")) / "pg"  # short: it holds a Unix socket
    env = {k: v for k, v in os.environ.items() if "DATABASE_URL" not in k}
    env = {k: v for k, v in env.items() if not k.startswith("WAHA_SYNC_")}
    env.update(
        WAHA_SYNC_DEBOUNCE_SECONDS="0.2",
        WAHA_SYNC_LOCAL_DB_DIR=str(data),
        WAHA_SYNC_PORT=str(free_port()),
    )

    def up(folder: Path, log: Path) -> subprocess.Popen[bytes]:
        cmd = [sys.executable, "-m", "waha_sync.cli", "up", "--sessions-dir", str(folder)]
        with log.open("wb") as out:
            return subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT)

    first_log = tmp_path / "up1.log"
    proc = up(tmp_path / "laptop", first_log)
    wait_until(lambda: "in sync with the database" in first_log.read_text(), 120)
    assert f"embedded PostgreSQL in {data}" in first_log.read_text()
    (tmp_path / "laptop" / "default").mkdir()
    (tmp_path / "laptop" / "default" / "creds.json").write_text('{"phone": "paired"}')
    proc.send_signal(signal.SIGINT)  # Ctrl-C: the final flush ships the new file
    assert proc.wait(60) == 0, first_log.read_text()
    second_log = tmp_path / "up2.log"
    proc = up(tmp_path / "new-laptop", second_log)
    wait_until(lambda: "in sync with the database" in second_log.read_text(), 120)
    restored = tmp_path / "new-laptop" / "default" / "creds.json"
    assert restored.read_text() == '{"phone": "paired"}'
    proc.send_signal(signal.SIGINT)
    assert proc.wait(60) == 0, second_log.read_text()
    shutil.rmtree(data.parent)  # `up` stopped its server on the way out

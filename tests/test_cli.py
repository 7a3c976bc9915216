"""The command line as a user meets it: help, error lines, plurals, refusals, claim holders."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.dbtarget import DbTarget, Server
from waha_sync.cli.main import COMMANDS

EVERY_SETTING_FLAG = re.compile(r"^\s+(--[a-z0-9-]+)", re.MULTILINE)
# "1 files", "1 changed paths", "1 attempts", ...: a count of one with a plural noun.
ONE_PLURAL = re.compile(
    r"\b1 (?:changed |old |unreferenced |more local )?"
    r"(files|paths|attempts|folders|commits|blobs|tombstones|versions|processes|process\(es\))\b"
)


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("WAHA_SYNC_")}
    base.pop("DATABASE_URL", None)
    base.pop("POD_NAME", None)
    return subprocess.run(
        [sys.executable, "-m", "waha_sync.cli", *args],
        env={**base, **(env or {})},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_top_help_lists_every_command_with_an_example() -> None:
    done = run("--help")
    assert done.returncode == 0
    for name, cmd in COMMANDS.items():
        assert re.search(rf"^  {name}\s+\S", done.stdout, re.MULTILINE), name
        assert f"e.g. {cmd.example}" in done.stdout
        assert cmd.example.startswith(f"waha-sync {name}")
    assert "--debounce-seconds" not in done.stdout


@pytest.mark.parametrize("name", list(COMMANDS))
def test_each_command_help_shows_only_its_own_flags(name: str) -> None:
    done = run(name, "--help")
    assert done.returncode == 0
    shown = set(EVERY_SETTING_FLAG.findall(done.stdout)) - {"--help"}
    settings = {"--" + s.replace("_", "-") for s in COMMANDS[name].settings}
    own = {
        "push": {"--force"},
        "sidecar": {"--force"},
        "restore": {"--at", "--read-only"},
        "up": {"--local-port"},
        "ls": {"--json"},
        "import-gridfs": {"--dump", "--mongo-url", "--bucket", "--db", "--strip-prefix", "--force"},
    }.get(name, set())
    assert shown == settings | own
    assert "--chaos-40001-rate" not in done.stdout
    assert len(done.stdout.splitlines()) < (140 if name == "up" else 110)  # up runs it all
    if name in ("ls", "check"):
        assert "--debounce-seconds" not in done.stdout and "--sessions-dir" not in done.stdout
        assert len(done.stdout.splitlines()) < 40


def test_hidden_flags_still_work_like_the_environment(plain_db: DbTarget) -> None:
    done = run("ls", "--debounce-seconds", "0", env=plain_db.env())
    assert done.returncode == 2
    assert "debounce_seconds: Input should be greater than or equal to 0.05" in done.stderr


def test_a_bad_flag_value_is_one_line_and_a_hint() -> None:
    done = run("restore", "--at", "yesterday")
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        "waha-sync restore: error: at: not an ISO 8601 time (got 'yesterday')",
        "Try: --at 2026-01-09T10:30:00Z (or 2026-01-09 for midnight, local time)",
    ]
    assert "usage:" not in done.stderr + done.stdout
    unknown = run("ls", "--frobnicate")
    assert unknown.returncode == 2
    assert unknown.stderr.splitlines() == [
        "waha-sync ls: error: unrecognized arguments: --frobnicate",
        "Try: waha-sync ls --help",
    ]


def test_a_malformed_url_says_what_it_got() -> None:
    done = run("ls", "--database-url", "postgres//nope@host/x")
    assert done.returncode == 2
    assert (
        "database_url: must start with postgresql:// or postgres:// (got 'postgres//...')"
        in done.stderr
    )
    assert "nope" not in done.stderr


def test_ls_of_an_unknown_instance_names_the_known_ones(db: DbTarget, tmp_path: Path) -> None:
    vol = tmp_path / "vol"
    (vol / "x").mkdir(parents=True)
    (vol / "x" / "a.json").write_text("{}")
    assert (
        run("push", "--sessions-dir", str(vol), "--instance", "alpha", env=db.env()).returncode == 0
    )
    done = run("ls", "--instance", "nosuch", env=db.env())
    assert done.returncode == 1
    assert "instance: unknown to this database (got 'nosuch'); known: alpha" in done.stderr
    assert "Try: --instance alpha" in done.stderr
    assert done.stdout == ""


def test_counts_of_one_are_singular(plain_db: DbTarget, tmp_path: Path) -> None:
    vol = tmp_path / "vol"
    (vol / "noweb" / "default").mkdir(parents=True)
    (vol / "noweb" / "default" / "creds.json").write_text('{"me": 1}')
    outputs = []
    pushed = run("push", "--sessions-dir", str(vol), env=plain_db.env())
    assert pushed.returncode == 0, pushed.stderr
    assert "scanned 1 file (0 left out)" in pushed.stderr
    back = tmp_path / "back"
    restored = run("restore", "--sessions-dir", str(back), env=plain_db.env())
    assert restored.returncode == 0, restored.stderr
    assert re.search(
        r"restored 1 file \(0 unchanged, (1 process|[2-9] processes)\)", restored.stderr
    )
    assert "commit 1, 1 file (1 written" in restored.stderr
    gone = run(
        "restore",
        "--sessions-dir",
        str(tmp_path / "x"),
        "--wait-seconds",
        "0",
        env=plain_db.env(WAHA_SYNC_DATABASE_URL="postgresql://u:p@127.0.0.1:1/x"),
    )
    assert gone.returncode == 1
    assert "gave up after 1 attempt in 0s" in gone.stderr
    outputs += [pushed.stderr, restored.stderr, gone.stderr]
    for text in outputs:
        assert not ONE_PLURAL.search(text), text


def test_push_into_another_database_says_so_and_how_to_copy(
    pg_server: Server, tmp_path: Path
) -> None:
    first = DbTarget(pg_server.create_database(serializable=False), "postgresql", 0.0)
    second = DbTarget(pg_server.create_database(serializable=False), "postgresql", 0.0)
    vol = tmp_path / "vol"
    (vol / "noweb" / "default").mkdir(parents=True)
    (vol / "noweb" / "default" / "creds.json").write_text('{"me": 1}')
    assert run("push", "--sessions-dir", str(vol), env=first.env()).returncode == 0
    refused = run("push", "--sessions-dir", str(vol), env=second.env())
    assert refused.returncode == 2
    assert (
        "this directory's marker (instance 'default', epoch 1) belongs to another database; "
        "this one does not know the instance" in refused.stderr
    )
    assert "must be restored into it first" not in refused.stderr
    assert "Try: waha-sync push --force to copy these sessions into this database" in (
        refused.stderr
    )
    copied = run("push", "--sessions-dir", str(vol), "--force", env=second.env())
    assert copied.returncode == 0, copied.stderr
    assert second.sql("SELECT count(*) FROM waha_sync_files") == [[1]]


def test_claims_name_the_pod_or_host_the_process_and_the_component(
    plain_db: DbTarget, tmp_path: Path
) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "waha_sync.cli", "restore", "--sessions-dir", str(tmp_path / "a")],
        env=plain_db.env(POD_NAME="waha-7d9f-x2"),
        stderr=subprocess.PIPE,
        text=True,
    )
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    holder = plain_db.sql("SELECT holder FROM waha_sync_instances")[0][0]
    assert holder == f"waha-7d9f-x2/restore[{proc.pid}]"

    env = plain_db.env()
    env.pop("POD_NAME", None)
    second = subprocess.Popen(
        [sys.executable, "-m", "waha_sync.cli", "restore", "--sessions-dir", str(tmp_path / "b")],
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    second.communicate(timeout=120)
    holder = plain_db.sql("SELECT holder FROM waha_sync_instances")[0][0]
    assert holder == f"{socket.gethostname()}/restore[{second.pid}]"
    pushed = run("push", "--sessions-dir", str(tmp_path / "a"), env=plain_db.env())
    assert pushed.returncode == 1
    assert f"was claimed by {holder} (epoch 2)" in pushed.stderr


def test_restore_and_gc_help_show_how_long_they_wait_for_the_database() -> None:
    for name in ("restore", "gc"):
        assert "--wait-seconds" in run(name, "--help").stdout, name


def test_a_read_only_volume_is_named_with_the_fix() -> None:
    import errno

    from waha_sync.common.errors import write_failure

    err = write_failure(
        "/vol/.waha-sync/restore.lock", OSError(errno.EROFS, "Read-only file system")
    )
    assert err.message == "/vol/.waha-sync/restore.lock: cannot write (Read-only file system)"
    assert err.hint is not None and "read-write" in err.hint

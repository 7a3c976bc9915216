"""The single container (Hugging Face Spaces, Render): its start script run for real.

``deploy/single/start.sh`` runs as a process with the dev venv's ``waha-sync`` on PATH, the
test database, and ``fake_waha.py`` as WAHA's command (the Dockerfile passes WAHA's own command
the same way, as CMD). Signals go to the script only, as tini passes them on in the image.
Also checked: the Dockerfile wires that script to WAHA's command, and render.yaml's service.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.dbtarget import DbTarget
from tests.support.imagefiles import REPO, SINGLE, entrypoint, healthcheck, instructions, of_kind
from tests.support.podsim import FAST, assert_same_tree, free_port, stored_tree
from tests.support.wahatree import make_noweb_session

START = REPO / "deploy" / "single" / "start.sh"
FAKE_WAHA = Path(__file__).parent / "support" / "fake_waha.py"
DB_URL_NAMES = ("WAHA_SYNC_DATABASE_URL", "WHATSAPP_SESSIONS_POSTGRESQL_URL", "DATABASE_URL")


class Single:
    """One run of the start script over a fresh sessions folder."""

    def __init__(self, db: DbTarget, where: Path, **env: str) -> None:
        self.root = where / "sessions"
        self.root.mkdir(parents=True)
        self.report = where / "waha.json"
        self.log_path = where / "start.log"
        self.env = db.env(
            **FAST,
            WAHA_SYNC_SESSIONS_DIR=str(self.root),
            WAHA_SYNC_PORT=str(free_port()),
            WAHA_SYNC_SHUTDOWN_TIMEOUT_SECONDS="10",
            **env,
        )
        self.env["PATH"] = f"{Path(sys.executable).parent}:{self.env['PATH']}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Single:
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [str(START), sys.executable, str(FAKE_WAHA), str(self.root), str(self.report)],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own group, so a failed test can kill it all
            )
        return self

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def waha(self, timeout: float = 60) -> dict[str, Any]:
        """What the fake WAHA reported when it started (waits for it)."""
        deadline = time.monotonic() + timeout
        while not self.report.exists():
            assert self.proc is not None and self.proc.poll() is None, self.log()
            assert time.monotonic() < deadline, f"WAHA never started:\n{self.log()}"
            time.sleep(0.05)
        report: dict[str, Any] = json.loads(self.report.read_text())
        return report

    def sidecar_pid(self) -> int:
        found = re.search(r"sidecar pid (\d+)", self.log())
        assert found, self.log()
        return int(found.group(1))

    def wait(self, timeout: float) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout)

    def kill_all(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)


@pytest.fixture
def runs() -> Iterator[list[Single]]:
    started: list[Single] = []
    yield started
    for run in started:
        run.kill_all()


def gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split()[2]
    except FileNotFoundError:
        return True
    return state == "Z"


def stored_paths(db: DbTarget) -> set[str]:
    return {str(r[0]) for r in db.sql("SELECT path FROM waha_sync_files")}


def wait_stored(db: DbTarget, path: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while path not in stored_paths(db):
        assert time.monotonic() < deadline, f"{path} never reached the database"
        time.sleep(0.1)


def test_restore_failure_exits_and_never_starts_waha(tmp_path: Path, runs: list[Single]) -> None:
    dead = DbTarget(f"postgresql://postgres@127.0.0.1:{free_port()}/none", "postgresql", 0.0)
    run = Single(dead, tmp_path, WAHA_SYNC_WAIT_SECONDS="1")
    runs.append(run.start())
    assert run.wait(60) == 1, run.log()
    assert not run.report.exists()  # WAHA never ran
    assert "restore failed (exit 1); WAHA is not started" in run.log()


def test_restored_before_waha_starts_and_its_writes_ship(
    plain_db: DbTarget, tmp_path: Path, runs: list[Single]
) -> None:
    seed = tmp_path / "seed"
    make_noweb_session(seed / "default" / "bob", prekeys=30)
    assert plain_db.cli("push", "--sessions-dir", str(seed)) == 0
    expected = {str(p.relative_to(seed)) for p in (seed / "default").rglob("*.json")}
    url = plain_db.url
    run = Single(plain_db, tmp_path / "pod", DATABASE_URL=url, WHATSAPP_SESSIONS_POSTGRESQL_URL=url)
    runs.append(run.start())
    waha = run.waha()
    assert set(waha["found"]) == expected  # every stored file was there before WAHA started
    assert not set(DB_URL_NAMES) & set(waha["env"])  # WAHA never sees a database URL
    wait_stored(plain_db, "default/alice/creds.json")  # WAHA's writes reach the database
    run.proc.send_signal(signal.SIGTERM)  # type: ignore[union-attr]
    assert run.wait(60) == 0, run.log()


def test_media_settings_reach_waha_and_shared_names_do_not(
    plain_db: DbTarget, tmp_path: Path, runs: list[Single]
) -> None:
    media = tmp_path / "pod" / "media"
    run = Single(
        plain_db,
        tmp_path / "pod",
        WAHA_MEDIA_STORAGE="POSTGRESQL",  # WAHA's name and spelling, read by waha-sync
        WAHA_MEDIA_POSTGRESQL_URL=plain_db.url,
        WAHA_SYNC_MEDIA_DIR=str(media),
        WHATSAPP_FILES_LIFETIME="180",
    )
    runs.append(run.start())
    waha = run.waha()
    # None of the names WAHA shares with waha-sync reaches WAHA, nor a database URL.
    shared = {"WAHA_MEDIA_STORAGE", "WAHA_MEDIA_POSTGRESQL_URL", *DB_URL_NAMES}
    assert not shared & set(waha["env"])
    # WAHA writes media into the synced folder and never deletes it.
    assert waha["files"] == {"WHATSAPP_FILES_FOLDER": str(media), "WHATSAPP_FILES_LIFETIME": "0"}
    run.proc.send_signal(signal.SIGTERM)  # type: ignore[union-attr]
    assert run.wait(60) == 0, run.log()
    log = run.log()
    assert "WHATSAPP_FILES_LIFETIME set to 0 (was 180)" in log
    assert "WAHA_MEDIA_STORAGE is waha-sync's setting here; not passed to WAHA" in log
    # restore and the sidecar each say once what the shared name would do to WAHA ...
    assert log.count("WAHA_MEDIA_STORAGE is read as WAHA_SYNC_MEDIA_STORAGE") == 2, log
    # ... and see the media settings WAHA got, so they have nothing to warn about.
    assert "media: WHATSAPP_FILES" not in log
    assert media.is_dir()


def test_sigterm_stops_waha_then_flushes(
    plain_db: DbTarget, tmp_path: Path, runs: list[Single]
) -> None:
    run = Single(plain_db, tmp_path / "pod")
    runs.append(run.start())
    waha = run.waha()
    sidecar = run.sidecar_pid()
    time.sleep(1.5)  # WAHA writing, the sidecar shipping
    late = run.root / "default" / "alice" / "written-just-before-sigterm.json"
    late.write_text('{"late": true}')
    began = time.monotonic()
    run.proc.send_signal(signal.SIGTERM)  # type: ignore[union-attr]
    assert run.wait(40) == 0, run.log()
    assert time.monotonic() - began < 25  # WAHA's stop plus the flush, well inside 30 s
    assert gone(waha["pid"]) and gone(sidecar)
    log = run.log()
    assert log.index("SIGTERM: stopping WAHA") < log.index("SIGTERM received: final flush")
    assert "WAHA exited 0, sidecar exited 0" in log
    # WAHA's own last write happened while it stopped: the sidecar was still there to ship it.
    assert (run.root / "default" / "alice" / "last-words.json").exists()
    assert_same_tree(run.root, stored_tree(plain_db, tmp_path / "stored"))


def test_sidecar_death_takes_waha_down(
    plain_db: DbTarget, tmp_path: Path, runs: list[Single]
) -> None:
    run = Single(plain_db, tmp_path / "pod")
    runs.append(run.start())
    waha = run.waha()
    os.kill(run.sidecar_pid(), signal.SIGKILL)
    assert run.wait(40) == 128 + signal.SIGKILL, run.log()  # non-zero: the platform restarts
    assert gone(waha["pid"])
    assert "stopping WAHA so the platform restarts both" in run.log()


def test_waha_exit_flushes_and_passes_its_status(
    plain_db: DbTarget, tmp_path: Path, runs: list[Single]
) -> None:
    run = Single(plain_db, tmp_path / "pod", FAKE_WAHA_EXIT_AFTER="1.5")
    runs.append(run.start())
    run.waha()
    sidecar = run.sidecar_pid()
    assert run.wait(40) == 3, run.log()  # fake_waha's own exit status
    assert gone(sidecar)
    assert "WAHA exited 3 by itself" in run.log()
    assert_same_tree(run.root, stored_tree(plain_db, tmp_path / "stored"))


def test_dockerfile_runs_start_script_with_wahas_command() -> None:
    image = of_kind(SINGLE, "ARG")[0].args.split("=", 1)[1]
    # A published, versioned tag (`<variant>-<version>`), never a floating one.
    assert re.fullmatch(r"devlikeapro/waha:[a-z]+(-[a-z]+)*-\d{4}\.\d+\.\d+", image), image
    # Every stage stands on WAHA's image (the last one through the first, with Python added).
    assert [i.args for i in of_kind(SINGLE, "FROM")] == [
        "${WAHA_IMAGE} AS python",
        "python AS build",
        "python",
    ]
    script = "/usr/local/bin/waha-sync-start"
    assert entrypoint(SINGLE) == ["/usr/bin/tini", "--", script, "/entrypoint.sh"]
    assert any(i.args == f"deploy/single/start.sh {script}" for i in of_kind(SINGLE, "COPY"))
    runs = " ".join(i.args for i in instructions(SINGLE) if i.keyword == "RUN")
    # The same install script and lock as the init and sidecar images, in a build stage of its
    # own: the final stage takes only the venv (no source, no script, no bind mounts, so the
    # legacy builder builds it too).
    assert "install.sh deps /opt/waha-sync deploy/images/requirements.txt" in runs
    assert "install.sh app /opt/waha-sync" in runs and "--mount" not in runs
    final = [
        i for i in instructions(SINGLE) if i.stage == max(s.stage for s in instructions(SINGLE))
    ]
    assert [i.args for i in final if i.keyword == "COPY" and "--from" in i.args] == [
        "--from=build /opt/waha-sync /opt/waha-sync"
    ]
    assert [i.args for i in of_kind(SINGLE, "EXPOSE")] == ["3000"]
    assert "/health" in healthcheck(SINGLE)[2]


def test_render_blueprint() -> None:
    blueprint = yaml.safe_load((REPO / "render.yaml").read_text())
    (service,) = blueprint["services"]
    assert service["type"] == "web" and service["runtime"] == "docker"
    assert (REPO / service["dockerfilePath"]).resolve() == SINGLE and service[
        "dockerContext"
    ] == "."
    assert service["healthCheckPath"] == "/ping"  # WAHA's open endpoint on the public port
    assert service["numInstances"] == 1
    # Render's wait after SIGTERM covers start.sh's WAHA stop (15 s) and final flush (20 s).
    assert service["maxShutdownDelaySeconds"] >= 15 + 20 + 5
    env = {e["key"]: e for e in service["envVars"]}
    assert env["PORT"]["value"] == of_kind(SINGLE, "EXPOSE")[0].args
    assert env["WAHA_SYNC_DATABASE_URL"] == {"key": "WAHA_SYNC_DATABASE_URL", "sync": False}
    for key, entry in env.items():
        if re.search(r"URL|KEY|PASSWORD", key):
            assert "value" not in entry, f"{key} must not be committed"

"""A pod simulation with the images' own entrypoints, in the order Kubernetes runs them.

The commands are read from Dockerfile.init and Dockerfile.sidecar (ENTRYPOINT + CMD), with
``waha-sync`` found on the image's PATH: the venv built by replaying the images' build stage.
Pod 1 shares one folder between its containers: the init container runs to completion, the
sidecar starts and becomes ready (/health 200), WAHA (``fake_waha.py``) starts writing; on
termination WAHA stops first, then the sidecar gets SIGTERM and flushes. Pod 2, on a fresh empty
volume, restores the identical tree.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support.dbtarget import DbTarget
from tests.support.imagefiles import INIT, SIDECAR, entrypoint, image_venv_once
from tests.support.podsim import FAST, assert_same_tree, free_port, http_get
from tests.support.wahatree import make_noweb_session

FAKE_WAHA = Path(__file__).parent / "support" / "fake_waha.py"


@pytest.fixture(scope="session")
def image_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return image_venv_once(tmp_path_factory)


def container(cmd: list[str], venv: Path) -> list[str]:
    """The argv a container runtime would exec: argv[0] looked up on the image's PATH."""
    found = venv / "bin" / cmd[0]
    assert found.is_file(), f"{cmd[0]} is not on the image's PATH"
    return [str(found), *cmd[1:]]


def wait_ready(url: str, proc: subprocess.Popen[bytes], log: Path, timeout: float = 60) -> None:
    """Poll the readiness probe as the kubelet does, until 200."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if http_get(url + "/health", timeout=2).status == 200:
                return
        except OSError:
            pass  # not listening yet
        assert proc.poll() is None, f"sidecar exited {proc.returncode}:\n{log.read_text()}"
        assert time.monotonic() < deadline, f"never ready:\n{log.read_text()}"
        time.sleep(0.1)


def test_two_pods_in_kubernetes_order(db: DbTarget, image_venv: Path, tmp_path: Path) -> None:
    # An earlier life of this WAHA left one session in the database.
    seed = tmp_path / "seed"
    make_noweb_session(seed / "default" / "bob", prekeys=40)
    assert db.cli("push", "--sessions-dir", str(seed)) == 0

    volume = tmp_path / "pod1"
    volume.mkdir()
    port = free_port()
    env = db.env(**FAST, WAHA_SYNC_SESSIONS_DIR=str(volume), WAHA_SYNC_PORT=str(port))
    env["PATH"] = f"{image_venv / 'bin'}:{env['PATH']}"

    # 1. init container: runs to completion before anything else starts
    init = subprocess.run(
        container(entrypoint(INIT), image_venv), env=env, capture_output=True, timeout=120
    )
    assert init.returncode == 0, init.stderr.decode()
    assert (volume / "default" / "bob" / "creds.json").is_file()

    # 2. sidecar: started, then ready
    log = tmp_path / "sidecar.log"
    with log.open("wb") as out:
        side = subprocess.Popen(
            container(entrypoint(SIDECAR), image_venv), env=env, stdout=out, stderr=out
        )
    waha: subprocess.Popen[bytes] | None = None
    try:
        wait_ready(f"http://127.0.0.1:{port}", side, log)
        assert http_get(f"http://127.0.0.1:{port}/livez").status == 200

        # 3. WAHA: writes a session; a key of the old one goes away meanwhile
        report = tmp_path / "waha.json"
        waha = subprocess.Popen([sys.executable, str(FAKE_WAHA), str(volume), str(report)])
        time.sleep(2.5)
        (volume / "default" / "bob" / "pre-key-7.json").unlink()
        time.sleep(0.5)
        assert "default/bob/creds.json" in json.loads(report.read_text())["found"]

        # 4. termination: main container first, then the sidecar
        waha.send_signal(signal.SIGTERM)
        assert waha.wait(20) == 0
        side.send_signal(signal.SIGTERM)
        assert side.wait(40) == 0, log.read_text()
    finally:
        for proc in (waha, side):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait(10)
    text = log.read_text()
    assert "SIGTERM received: final flush" in text
    assert "every change is in the database" in text
    assert (volume / "default" / "alice" / "last-words.json").is_file()

    # 5. the next pod: a fresh empty volume, the same init container
    fresh = tmp_path / "pod2"
    fresh.mkdir()
    env2 = {**env, "WAHA_SYNC_SESSIONS_DIR": str(fresh)}
    again = subprocess.run(
        container(entrypoint(INIT), image_venv), env=env2, capture_output=True, timeout=120
    )
    assert again.returncode == 0, again.stderr.decode()
    assert not (fresh / "default" / "bob" / "pre-key-7.json").exists()
    assert_same_tree(volume, fresh)
    first = json.loads((volume / ".waha-sync" / "restored.json").read_text())
    second = json.loads((fresh / ".waha-sync" / "restored.json").read_text())
    assert second["epoch"] > first["epoch"]  # the new pod holds the instance now

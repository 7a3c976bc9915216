"""The init and sidecar images, built for real and run as containers.

Both build (legacy builder, packages from the wheelhouse only), run as uid 1000 on a read-only
root filesystem, answer ``waha-sync --version``, hold no pip, and the sidecar image's own
HEALTHCHECK command turns the container healthy once the sidecar is ready, against a real
PostgreSQL on this host's loopback.
"""

from __future__ import annotations

import json
import subprocess
import time

from tests.containers.conftest import VERSION
from tests.containers.engine import Engine
from tests.support.dbtarget import DbTarget
from tests.support.podsim import free_port


def run(
    engine: Engine, image: str, *argv: str, entrypoint: str = ""
) -> subprocess.CompletedProcess[str]:
    args = ["run", "--rm", "--network", "host", "--read-only", "--tmpfs", "/tmp"]
    if entrypoint:
        args += ["--entrypoint", entrypoint]
    return engine.docker(*args, image, *argv, check=False, timeout=120)


def test_both_images_run_as_1000_on_a_read_only_root(
    engine: Engine, images: dict[str, str]
) -> None:
    for kind, image in images.items():
        config = json.loads(engine.docker("image", "inspect", image).stdout)[0]["Config"]
        assert config["User"] == "1000:1000", kind
        assert config["Entrypoint"] == ["waha-sync", "restore" if kind == "init" else "sidecar"]
        assert config["Labels"]["org.opencontainers.image.title"] == f"waha-sync-{kind}"
        version = run(engine, image, "--version", entrypoint="waha-sync")
        assert version.returncode == 0 and VERSION in version.stdout + version.stderr, version
        ids = run(
            engine, image, "-c", "import os; print(os.getuid(), os.getgid())", entrypoint="python"
        )
        assert ids.stdout.split() == ["1000", "1000"], ids
        # The root filesystem is read-only; the sessions folder exists and belongs to 1000.
        probe = (
            "import os, pathlib\n"
            "try:\n    pathlib.Path('/app/x').write_text('x'); print('writable')\n"
            "except OSError as e:\n    print('read-only', e.errno)\n"
            "s = os.stat('/app/.sessions'); print(s.st_uid, s.st_gid)\n"
            "import importlib.util; print('pip', importlib.util.find_spec('pip') is not None)"
        )
        out = run(engine, image, "-c", probe, entrypoint="python").stdout.split("\n")
        assert out[0] == "read-only 30", out  # EROFS
        assert out[1] == "1000 1000" and out[2] == "pip False", out


def test_sidecar_image_healthcheck_turns_healthy(
    engine: Engine, images: dict[str, str], plain_db: DbTarget
) -> None:
    port = free_port()
    volume = f"wst-health-{port}"
    env = ["-e", f"WAHA_SYNC_DATABASE_URL={plain_db.url}", "-e", "WAHA_SYNC_HOST=127.0.0.1"]
    env += ["-e", f"WAHA_SYNC_PORT={port}"]
    common = [
        "--network",
        "host",
        "--read-only",
        "--tmpfs",
        "/tmp",
        "-v",
        f"{volume}:/app/.sessions",
    ]
    restore = engine.docker("run", "--rm", *common, *env, images["init"], check=False, timeout=120)
    assert restore.returncode == 0, restore.stdout + restore.stderr
    assert "nothing stored for instance default" in restore.stdout + restore.stderr
    # The image's own probe, only ticking faster than its 15 s interval.
    cid = engine.docker(
        "run", "-d", *common, *env, "--health-interval", "1s", images["sidecar"]
    ).stdout.strip()
    try:
        probe = json.loads(engine.docker("inspect", cid).stdout)[0]["Config"]["Healthcheck"]["Test"]
        assert probe[0] == "CMD" and "/health" in probe[-1]
        deadline = time.monotonic() + 90
        status = ""
        while time.monotonic() < deadline:
            state = json.loads(engine.docker("inspect", cid).stdout)[0]["State"]
            status = state["Health"]["Status"]
            assert state["Running"], engine.docker("logs", cid).stderr
            if status == "healthy":
                break
            time.sleep(0.5)
        assert status == "healthy", engine.docker("logs", cid).stderr
        # The same command fails where nothing listens: it does probe the port.
        wrong = engine.docker(
            "exec", "-e", f"WAHA_SYNC_PORT={free_port()}", cid, *probe[1:], check=False
        )
        assert wrong.returncode != 0
        stop = engine.docker("stop", "-t", "30", cid, timeout=60)
        assert stop.returncode == 0
        state = json.loads(engine.docker("inspect", cid).stdout)[0]["State"]
        assert state["ExitCode"] == 0, engine.docker("logs", cid).stderr
        assert "final flush" in engine.docker("logs", cid).stderr
    finally:
        engine.docker("rm", "-f", "-v", cid, check=False)
        engine.docker("volume", "rm", volume, check=False)

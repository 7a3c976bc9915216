"""deploy/single/Dockerfile built on the WAHA stand-in and run as a container (uid 1000, as on
Hugging Face Spaces): a failed restore keeps WAHA from starting; SIGTERM to the container (a
``docker stop``) stops WAHA first, then the sidecar's final flush ships its last writes, all
within the stop timeout, and the database then holds exactly what the volume holds."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from tests.containers.conftest import FIGURES, tree
from tests.containers.engine import Engine
from tests.support.dbtarget import DbTarget
from tests.support.podsim import free_port, http_get

STOP_TIMEOUT = 40  # above WAHA's 15 s and the sidecar's 20 s budgets together, as documented


def logs(engine: Engine, cid: str) -> list[str]:
    """Both streams of the container, each line with its timestamp, in time order."""
    done = engine.docker("logs", "--timestamps", cid, check=False)
    return sorted((done.stdout + done.stderr).splitlines())


def index(lines: list[str], needle: str) -> int:
    found = [n for n, line in enumerate(lines) if needle in line]
    assert found, f"{needle!r} not logged:\n" + "\n".join(lines[-40:])
    return found[0]


def test_restore_failure_keeps_waha_from_starting(engine: Engine, single_image: str) -> None:
    closed = free_port()  # nothing listens there
    url = f"postgresql://waha_sync:x@127.0.0.1:{closed}/waha_sync?sslmode=disable"
    done = engine.docker(
        "run", "--rm", "--network", "host", "--user", "1000:1000",
        "-e", f"WAHA_SYNC_DATABASE_URL={url}", "-e", "WAHA_SYNC_WAIT_SECONDS=1",
        "-e", f"WHATSAPP_API_PORT={free_port()}", single_image,
        check=False, timeout=180,
    )  # fmt: skip
    out = done.stdout + done.stderr
    assert done.returncode == 1, out
    assert "restore failed (exit 1); WAHA is not started" in out
    assert "standin" not in out and "WAHA started" not in out


def test_sigterm_stops_waha_then_flushes(
    engine: Engine, single_image: str, plain_db: DbTarget, tmp_path: Path
) -> None:
    waha_port, side_port = free_port(), free_port()
    volume = f"wst-single-{waha_port}"
    cid = engine.docker(
        "run", "-d", "--network", "host", "--user", "1000:1000",
        "-v", f"{volume}:/app/.sessions",
        "-e", f"WAHA_SYNC_DATABASE_URL={plain_db.url}", "-e", "WAHA_SYNC_HOST=127.0.0.1",
        "-e", f"WAHA_SYNC_PORT={side_port}", "-e", f"WHATSAPP_API_PORT={waha_port}",
        "-e", "WHATSAPP_DEFAULT_ENGINE=NOWEB", single_image,
    ).stdout.strip()  # fmt: skip
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                if http_get(f"http://127.0.0.1:{waha_port}/health", timeout=2).status == 200:
                    break
            except OSError:
                pass
            state = json.loads(engine.docker("inspect", cid).stdout)[0]["State"]
            assert state["Running"] and time.monotonic() < deadline, "\n".join(logs(engine, cid))
            time.sleep(0.5)
        standin = json.loads(http_get(f"http://127.0.0.1:{waha_port}/api/standin").body)
        assert standin["uid"] == 1000 and standin["loaded"] is False
        time.sleep(3)  # Baileys churns, the sidecar ships
        started = time.monotonic()
        engine.docker("stop", "-t", str(STOP_TIMEOUT), cid, timeout=STOP_TIMEOUT + 30)
        took = time.monotonic() - started
        state = json.loads(engine.docker("inspect", cid).stdout)[0]["State"]
        lines = logs(engine, cid)
        assert state["ExitCode"] == 0, "\n".join(lines[-40:])
        assert took < STOP_TIMEOUT
        order = [
            index(lines, "[START] SIGTERM: stopping WAHA, then the sidecar"),
            index(lines, '"standin":"stopped"'),
            index(lines, "SIGTERM received: final flush"),
            index(lines, "[START] WAHA exited 0, sidecar exited 0"),
        ]
        assert order == sorted(order), order
        FIGURES.append(f"single image: docker stop took {took:.1f} s (limit {STOP_TIMEOUT} s)")
        # Everything WAHA wrote, up to its last write on the way out, is in the database.
        mount = engine.docker("volume", "inspect", "-f", "{{.Mountpoint}}", volume).stdout
        volume_tree = tree(Path(mount.strip()))
        restored = tmp_path / "restored"
        restored.mkdir()
        exe = str(Path(sys.executable).parent / "waha-sync")
        done = subprocess.run(
            [exe, "restore", "--sessions-dir", str(restored)],
            env=plain_db.env(),
            capture_output=True,
            text=True,
            timeout=180,
        )
        assert done.returncode == 0, done.stderr
        got = tree(restored)
        assert "default/default/creds.json" in got
        assert got == volume_tree, sorted(set(got.items()) ^ set(volume_tree.items()))[:10]
    finally:
        engine.docker("rm", "-f", "-v", cid, check=False)
        engine.docker("volume", "rm", volume, check=False)

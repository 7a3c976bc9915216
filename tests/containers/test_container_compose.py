"""deploy/compose.yaml run for real (postgres profile, host-network override).

The cycle: ``up`` starts the database, the restore (exits 0), the sidecar (healthy) and then the
WAHA stand-in, whose real Baileys writes a NOWEB session; ``down`` stops WAHA first, and the
sidecar's log shows its final flush; the sessions volume is removed; ``up`` again restores the
session byte for byte (checked before WAHA starts) and the stand-in loads it and uses every key.
Then the sidecar is killed by SIGKILL while Baileys writes; Docker restarts it, and once WAHA
and the sidecar have stopped, the database holds exactly the volume, and every file is whole.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from tests.containers.conftest import COMPOSE, FIGURES, OVERRIDE, Stack, tree
from tests.realclient import baileys
from tests.support.composefiles import compose_bin


def wait_exit(stack: Stack, service: str, seconds: float = 180) -> dict[str, Any]:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        state: dict[str, Any] = stack.inspect(service)["State"]
        if state["Status"] == "exited":
            return state
        time.sleep(0.5)
    raise AssertionError(f"{service} still running after {seconds} s\n{stack.logs(service)}")


def wait_healthy(stack: Stack, service: str, seconds: float = 120) -> dict[str, Any]:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        state: dict[str, Any] = stack.inspect(service)["State"]
        if state.get("Health", {}).get("Status") == "healthy":
            return state
        time.sleep(0.5)
    raise AssertionError(f"{service} not healthy after {seconds} s\n{stack.logs(service)}")


def restore_from_db(stack: Stack, into: Path) -> None:
    """``waha-sync restore`` of this host's install into ``into`` from the stack's database."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("WAHA_SYNC_")}
    env.update(WAHA_SYNC_DATABASE_URL=stack.url, WAHA_SYNC_SESSIONS_DIR=str(into))
    exe = str(Path(sys.executable).parent / "waha-sync")
    done = subprocess.run([exe, "restore"], env=env, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stdout + done.stderr


def events(stack: Stack, since: float) -> list[tuple[str, str, dict[str, str]]]:
    """The engine's container events of this project since ``since`` (epoch seconds), in
    order: ``(service, action, attributes)``; actions such as ``start``, ``die``, ``kill``,
    ``health_status: healthy``."""
    out = stack.engine.docker(
        "events", "--since", f"{since:.3f}", "--until", f"{time.time() + 1:.3f}",
        "--filter", f"label=com.docker.compose.project={stack.project}",
        "--filter", "type=container", "--format", "{{json .}}",
    ).stdout  # fmt: skip
    found = []
    for line in out.splitlines():
        event = json.loads(line)
        attrs = event["Actor"]["Attributes"]
        found.append(
            (int(event["timeNano"]), attrs["com.docker.compose.service"], event["Action"], attrs)
        )
    return [(svc, action, attrs) for _, svc, action, attrs in sorted(found, key=lambda e: e[0])]


def first(seen: list[tuple[str, str, dict[str, str]]], service: str, action: str) -> int:
    for n, (svc, act, _) in enumerate(seen):
        if svc == service and act == action:
            return n
    raise AssertionError(f"no {action!r} of {service} in {[(s, a) for s, a, _ in seen]}")


def test_compose_cycle(stack: Stack, tmp_path: Path) -> None:
    since = time.time()
    started = time.monotonic()
    stack.compose("up", "-d", "--no-build", timeout=400)
    info = stack.wait_waha()
    first_up = time.monotonic() - started
    # Order: database healthy -> restore exited 0 -> sidecar healthy -> WAHA starts.
    seen = events(stack, since)
    restore_died = first(seen, "restore", "die")
    assert seen[restore_died][2]["exitCode"] == "0", stack.logs("restore")
    assert first(seen, "postgres", "health_status: healthy") < first(seen, "restore", "start")
    assert restore_died < first(seen, "sidecar", "start")
    assert first(seen, "sidecar", "health_status: healthy") < first(seen, "waha", "start")
    # The stand-in wrote a new NOWEB session, as uid 1000.
    assert info["loaded"] is False and info["generate"]["files"] > 800, info
    assert (info["uid"], info["gid"]) == (1000, 1000)
    session = stack.mountpoint() / "default" / "default"
    assert (session / "creds.json").is_file() and (session / ".waha.session.config.json").is_file()
    time.sleep(3)  # Baileys churns; the sidecar ships

    # down: WAHA stops first; the sidecar's final flush ships what it wrote last.
    # Followed into a file from before the stop: `down` removes the containers and their logs.
    log_file = tmp_path / "compose.log"
    with log_file.open("w") as sink:
        logs = subprocess.Popen(
            [*stack_compose_argv(stack), "logs", "-f", "--no-color", "--timestamps"],
            stdout=sink,
            stderr=subprocess.STDOUT,
            env=stack.engine.env(),
        )
    time.sleep(1)
    mount = stack.mountpoint()
    since = time.time()
    t0 = time.monotonic()
    stack.compose("down", timeout=180)
    down_took = time.monotonic() - t0
    seen = events(stack, since)
    assert first(seen, "waha", "die") < first(seen, "sidecar", "kill"), seen
    side_died = seen[first(seen, "sidecar", "die")][2]
    assert side_died["exitCode"] == "0", side_died
    time.sleep(2)  # `logs -f` waits for new containers: it never ends by itself
    logs.terminate()
    logs.wait(30)
    lines = log_file.read_text().splitlines()
    side_lines = [ln for ln in lines if ln.startswith("sidecar")]
    flush = next((ln for ln in side_lines if "SIGTERM received: final flush" in ln), None)
    assert flush is not None, "\n".join(side_lines[-20:])
    # The stand-in ended its writes (Baileys' last creds.json) before the sidecar was told.
    stopped = next(ln for ln in lines if '"standin":"stopped"' in ln)
    assert stopped.split(" | ", 1)[1].split()[0] <= flush.split(" | ", 1)[1].split()[0]
    assert mount.is_dir()  # the volume stays after down
    before = tree(mount)
    assert "default/default/creds.json" in before and len(before) > 800
    stack.engine.docker("volume", "rm", stack.volume())
    assert not mount.exists()

    # up again: the restore alone first, to compare the volume before WAHA touches it.
    t0 = time.monotonic()
    stack.compose("up", "-d", "--no-build", "restore", timeout=300)
    state = wait_exit(stack, "restore")
    assert state["ExitCode"] == 0, stack.logs("restore")
    after = tree(stack.mountpoint())
    assert after == before, sorted(set(after.items()) ^ set(before.items()))[:10]
    stack.compose("up", "-d", "--no-build", timeout=400)
    info = stack.wait_waha()
    second_up = time.monotonic() - t0
    assert info["loaded"] is True and info["verify"]["problems"] == [], info
    assert info["verify"]["sessions"]["encrypted"] == info["verify"]["sessions"]["total"] > 0
    assert info["verify"]["appState"]["patched"] == info["verify"]["appState"]["versions"] > 0
    FIGURES.append(
        f"compose cycle: first up {first_up:.0f} s (to WAHA healthy), down {down_took:.0f} s, "
        f"volume removed, up again {second_up:.0f} s; session {len(before)} files"
    )


def stack_compose_argv(stack: Stack) -> list[str]:
    return [compose_bin(), "-f", str(COMPOSE), "-f", str(OVERRIDE), "--env-file",
            str(stack.env_file), "-p", stack.project]  # fmt: skip


def test_sidecar_sigkill_under_writes_converges(stack: Stack, tmp_path: Path) -> None:
    # The stack the cycle left running; brought up only when it is not (a second `up` on a
    # running stack starts the exited restore container again).
    try:
        running = stack.waha("/health")[0] == 200
    except OSError:
        running = False
    if not running:
        stack.compose("up", "-d", "--no-build", timeout=400)
        stack.wait_waha()
    wait_healthy(stack, "sidecar")
    time.sleep(2)  # Baileys churns, the sidecar ships
    side = stack.inspect("sidecar")
    restarts = side["RestartCount"]
    assert side["State"]["Running"] and side["State"]["Pid"] > 0
    # SIGKILL of the container's process from the host: a crash, not a stop Docker was asked
    # for, so the restart policy (unless-stopped) brings it back.
    subprocess.run(["kill", "-9", str(side["State"]["Pid"])], check=True)
    deadline = time.monotonic() + 60
    while stack.inspect("sidecar")["RestartCount"] == restarts:
        assert time.monotonic() < deadline, stack.logs("sidecar")
        time.sleep(0.3)
    wait_healthy(stack, "sidecar")
    _, standin = stack.waha("/api/standin")
    assert standin["status"] == "WORKING"
    time.sleep(3)  # writes go on after the restart
    # WAHA stops (Baileys finishes its writes), then the sidecar (final flush).
    stack.compose("stop", "waha", timeout=120)
    stack.compose("stop", "sidecar", timeout=120)
    assert stack.inspect("sidecar")["State"]["ExitCode"] == 0, stack.logs("sidecar")
    volume = tree(stack.mountpoint())
    restored = tmp_path / "restored"
    restored.mkdir()
    restore_from_db(stack, restored)
    got = tree(restored)
    assert got == volume, sorted(set(got.items()) ^ set(volume.items()))[:10]
    # Nothing torn: every JSON file parses, and Baileys loads the restored copy and uses it.
    session = restored / "default" / "default"
    for path in session.glob("*.json"):
        json.loads(path.read_bytes())
    report = baileys.verify(session, session / ".waha.session.standin.json", "6")
    # The group messages the manifest keeps were decrypted once already, when the stand-in
    # loaded the restored session: a received sender key that stored that step refuses them
    # now as a replay ("old counter"). Any other problem is a torn or lost key.
    replays = [p for p in report["problems"] if "Received message with old counter" in p]
    assert [p for p in report["problems"] if p not in replays] == [], report["problems"][:5]
    assert len(replays) <= report["senderKeys"]["total"] - report["senderKeys"]["ownEncrypted"]
    assert report["sessions"]["encrypted"] == report["sessions"]["total"] > 0
    assert report["senderKeys"]["ownEncrypted"] > 0
    assert report["appState"]["patched"] == report["appState"]["versions"] > 0

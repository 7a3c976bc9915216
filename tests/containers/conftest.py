"""The container suite's shared parts: its marker, a Docker engine, the images, a compose stack.

Every test here carries the ``containers`` marker. The session starts its own ``dockerd`` (see
``engine.py``: no bridge, host network only), loads or makes the stand-in base images, builds
``Dockerfile.init`` and ``Dockerfile.sidecar`` (legacy builder, wheels from the wheelhouse)
and stops the daemon at the end. Build times, image sizes and the compose cycle's times are
printed together at the end of the run.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.containers.engine import REPO, Engine, EngineError, prepare_base_images, wheelhouse
from tests.realclient import baileys
from tests.support.composefiles import compose_bin
from tests.support.podsim import free_port, http_get

FIGURES: list[str] = []
INIT_FILE = REPO / "Dockerfile.init"
SIDECAR_FILE = REPO / "Dockerfile.sidecar"
SINGLE_FILE = REPO / "deploy" / "single" / "Dockerfile"
COMPOSE = REPO / "deploy" / "compose.yaml"
OVERRIDE = Path(__file__).resolve().parent / "compose.host.yaml"
# Files the sync keeps out of the database: its own folder and SQLite's side files.
UNSTORED = re.compile(r"(^|/)\.waha-sync(/|$)|-(wal|shm|journal)$")


HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.path.resolve().is_relative_to(HERE):  # not by name: a checkout may be so named
            item.add_marker(pytest.mark.containers)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if FIGURES:
        terminalreporter.section("container figures")
        for line in FIGURES:
            terminalreporter.write_line(line)


def dockerfile_arg(path: Path, name: str) -> str:
    """The default of ``ARG name=...`` in a Dockerfile."""
    match = re.search(rf"^ARG {name}=(\S+)$", path.read_text(), re.MULTILINE)
    assert match, f"{path.name}: no ARG {name}"
    return match.group(1)


PYTHON_VERSION = dockerfile_arg(INIT_FILE, "PYTHON_VERSION")
WAHA_IMAGE = dockerfile_arg(SINGLE_FILE, "WAHA_IMAGE")
VERSION = dockerfile_arg(INIT_FILE, "WAHA_SYNC_VERSION")
INIT_IMAGE = f"waha-sync-init:{VERSION}"
SIDECAR_IMAGE = f"waha-sync-sidecar:{VERSION}"
SINGLE_IMAGE = f"waha-sync-single:{VERSION}"


def mib(n: int) -> str:
    return f"{n / 2**20:.0f} MiB"


@pytest.fixture(scope="session")
def engine() -> Iterator[Engine]:
    """A running ``dockerd`` holding every base image the repository's files name."""
    if os.geteuid() != 0:
        pytest.fail("the container tests start dockerd and debootstrap: run them as root")
    baileys.ensure_installed()
    eng = Engine()
    try:
        eng.start()
        started = time.monotonic()
        prepare_base_images(eng, PYTHON_VERSION, WAHA_IMAGE)
        FIGURES.append(f"base images ready in {time.monotonic() - started:.0f} s")
        yield eng
    except EngineError as exc:
        pytest.fail(str(exc))
    finally:
        for what, took in eng.times.items():
            FIGURES.append(f"{what}: {took:.1f} s")
        eng.stop()


@pytest.fixture(scope="session")
def images(engine: Engine) -> dict[str, str]:
    """``{"init": name, "sidecar": name}``, built from the repository with the wheelhouse."""
    house = wheelhouse().relative_to(REPO)
    built: dict[str, str] = {}
    for kind, path, tag in (
        ("init", INIT_FILE, INIT_IMAGE),
        ("sidecar", SIDECAR_FILE, SIDECAR_IMAGE),
    ):
        took = engine.build(
            tag, REPO, dockerfile=path, build_args={"WHEELHOUSE": str(house), "REVISION": "test"}
        )
        FIGURES.append(f"{tag}: built in {took:.0f} s, {mib(engine.image_size(tag))}")
        built[kind] = tag
    return built


@pytest.fixture(scope="session")
def single_image(engine: Engine) -> str:
    """The one-container image (deploy/single/Dockerfile) on the WAHA stand-in."""
    house = wheelhouse().relative_to(REPO)
    took = engine.build(
        SINGLE_IMAGE, REPO, dockerfile=SINGLE_FILE, build_args={"WHEELHOUSE": str(house)}
    )
    FIGURES.append(f"{SINGLE_IMAGE}: built in {took:.0f} s, {mib(engine.image_size(SINGLE_IMAGE))}")
    return SINGLE_IMAGE


def tree(root: Path) -> dict[str, str]:
    """``{relative path: sha256}`` of every regular file the sync stores under ``root``."""
    out: dict[str, str] = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        if path.is_file() and not path.is_symlink() and not UNSTORED.search(rel):
            out[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


@dataclass
class Stack:
    """deploy/compose.yaml with the host-network override, as project ``project``."""

    engine: Engine
    folder: Path
    project: str = field(default_factory=lambda: f"wst{secrets.token_hex(4)}")
    ports: dict[str, int] = field(default_factory=dict)
    password: str = field(default_factory=lambda: secrets.token_hex(8))

    def __post_init__(self) -> None:
        self.ports = {"postgres": free_port(), "sidecar": free_port(), "waha": free_port()}
        self.env_file = self.folder / "compose.env"
        url = (
            f"postgresql://waha_sync:{self.password}@127.0.0.1:{self.ports['postgres']}"
            "/waha_sync?sslmode=disable"
        )
        self.url = url
        settings = {
            "COMPOSE_PROFILES": "postgres",
            "WAHA_SYNC_DATABASE_URL": url,
            "POSTGRES_PASSWORD": self.password,
            "WAHA_API_KEY": secrets.token_hex(16),
            "WAHA_DASHBOARD_PASSWORD": secrets.token_hex(8),
            "WHATSAPP_DEFAULT_ENGINE": "NOWEB",
            "WAHA_IMAGE": WAHA_IMAGE,
            "WAHA_SYNC_IMAGE_TAG": VERSION,
            "TEST_POSTGRES_PORT": str(self.ports["postgres"]),
            "TEST_SIDECAR_PORT": str(self.ports["sidecar"]),
            "TEST_WAHA_PORT": str(self.ports["waha"]),
        }
        self.env_file.write_text("".join(f"{k}={v}\n" for k, v in settings.items()))

    def compose(
        self, *args: str, timeout: float = 300, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        argv = [compose_bin(), "-f", str(COMPOSE), "-f", str(OVERRIDE)]
        argv += ["--env-file", str(self.env_file), "-p", self.project, *args]
        done = subprocess.run(
            argv,
            capture_output=True,
            text=True,
            timeout=timeout,
            env=self.engine.env(),
            cwd=REPO,
            check=False,
        )
        if check and done.returncode != 0:
            raise AssertionError(f"compose {' '.join(args)}: exit {done.returncode}\n{done.stderr}")
        return done

    def container(self, service: str) -> str:
        """The id of the service's container (running or not)."""
        ids = self.compose("ps", "-a", "-q", service).stdout.split()
        assert len(ids) == 1, f"{service}: containers {ids}"
        return ids[0]

    def inspect(self, service: str) -> dict[str, Any]:
        out = self.engine.docker("inspect", self.container(service)).stdout
        result: dict[str, Any] = json.loads(out)[0]
        return result

    def volume(self) -> str:
        return f"{self.project}_sessions"

    def mountpoint(self) -> Path:
        """The sessions volume's folder on this host (the engine's data root)."""
        out = self.engine.docker("volume", "inspect", "-f", "{{.Mountpoint}}", self.volume())
        return Path(out.stdout.strip())

    def waha(self, path: str, timeout: float = 5) -> tuple[int, Any]:
        reply = http_get(f"http://127.0.0.1:{self.ports['waha']}{path}", timeout=timeout)
        return reply.status, json.loads(reply.body or b"null")

    def wait_waha(self, seconds: float = 180) -> dict[str, Any]:
        """Wait for the stand-in's /health to answer 200; returns its /api/standin."""
        deadline = time.monotonic() + seconds
        last: object = None
        while time.monotonic() < deadline:
            try:
                status, body = self.waha("/health")
                if status == 200:
                    result: dict[str, Any] = self.waha("/api/standin")[1]
                    return result
                last = body
                if body.get("status") == "FAILED":
                    break
            except OSError as exc:
                last = exc
            time.sleep(0.5)
        detail = self.waha("/api/standin")[1] if isinstance(last, dict) else last
        raise AssertionError(f"WAHA stand-in not healthy: {detail}\n{self.logs()}")

    def logs(self, *services: str) -> str:
        return self.compose("logs", "--no-color", "--timestamps", *services, check=False).stdout


@pytest.fixture(scope="module")
def stack(
    engine: Engine, images: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    """A compose project of its own (down with its volumes at the end)."""
    s = Stack(engine, tmp_path_factory.mktemp("compose"))
    try:
        yield s
    finally:
        s.compose("down", "-v", "--timeout", "30", check=False, timeout=180)

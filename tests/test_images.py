"""The init and sidecar images: one shared definition, lint-clean, and an install that works.

No Docker engine runs here. The Dockerfiles are read as data (their rules checked, their shared
part compared byte for byte), hadolint lints them, and the build stage is replayed with the
same install script and lock (``imagefiles.build_image_venv``): the resulting venv must hold
exactly the locked packages and no pip, and its ``waha-sync restore`` and ``waha-sync sidecar``
must work against the test database, the sidecar's HEALTHCHECK command included.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.support.dbtarget import DbTarget
from tests.support.imagefiles import (
    INIT,
    LOCK,
    REPO,
    SIDECAR,
    SINGLE,
    entrypoint,
    healthcheck,
    image_venv_once,
    instructions,
    of_kind,
    parse,
    shared_block,
)
from tests.support.podsim import FAST, free_port, http_get

PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())


@pytest.fixture(scope="session")
def image_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return image_venv_once(tmp_path_factory)


def lock_pins() -> dict[str, str]:
    pins: dict[str, str] = {}
    for line in LOCK.read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, sep, version = line.partition("==")
            assert sep and re.fullmatch(r"[0-9][0-9A-Za-z.]*", version), line
            pins[canonicalize_name(name)] = version
    return pins


def venv_distributions(venv: Path) -> dict[str, tuple[str, list[str]]]:
    """Every distribution installed in ``venv``: name -> (version, requirements)."""
    code = (
        "import importlib.metadata as m, json; print(json.dumps({d.metadata['Name']: "
        "[d.version, d.requires or []] for d in m.distributions()}))"
    )
    out = subprocess.run(
        [str(venv / "bin" / "python"), "-c", code], capture_output=True, text=True, check=True
    ).stdout
    return {canonicalize_name(k): (v[0], v[1]) for k, v in json.loads(out).items()}


def test_shared_definition_is_byte_identical() -> None:
    shared = shared_block(INIT)
    assert shared == shared_block(SIDECAR)
    # It is the whole build: both stages, the install, the user. Only the final block differs,
    # and it only names the command, its probe and labels.
    assert shared.count("\nFROM ") == 2 and "USER 1000:1000" in shared
    for path in (INIT, SIDECAR):
        tail = parse(path.read_text().split(shared, 1)[1])
        assert {i.keyword for i in tail} <= {"LABEL", "ENTRYPOINT", "CMD", "EXPOSE", "HEALTHCHECK"}
        assert any("org.opencontainers.image.title=" in i.args for i in tail)


def test_entrypoints_are_exec_form_with_empty_cmd() -> None:
    assert entrypoint(INIT) == ["waha-sync", "restore"]
    assert entrypoint(SIDECAR) == ["waha-sync", "sidecar"]
    assert [i.args for i in of_kind(INIT, "CMD")] == ["[]"]
    assert of_kind(INIT, "HEALTHCHECK") == []
    assert [i.args for i in of_kind(SIDECAR, "EXPOSE")] == ["3001"]
    probe = healthcheck(SIDECAR)
    assert probe[:2] == ["python", "-c"] and "/health" in probe[2]


def test_build_rules() -> None:
    steps = instructions(INIT)
    args = {
        i.args.split("=")[0]: i.args.split("=", 1)[1] for i in of_kind(INIT, "ARG") if "=" in i.args
    }
    # A Python patch release pinned, of the minor the lock's wheels are for (and >= 3.11).
    assert re.fullmatch(r"3\.\d+\.\d+", args["PYTHON_VERSION"])
    minor = ".".join(args["PYTHON_VERSION"].split(".")[:2])
    assert f"CPython {minor} " in LOCK.read_text()
    assert PYPROJECT["project"]["requires-python"] == ">=3.11" and minor >= "3.11"
    assert args["WAHA_SYNC_VERSION"] == PYPROJECT["project"]["version"]
    froms = of_kind(INIT, "FROM")
    assert len(froms) == 2 and all(
        f.args.startswith("python:${PYTHON_VERSION}-slim") for f in froms
    )
    build, final = [s for s in steps if s.stage == 0], [s for s in steps if s.stage == 1]
    # Dependencies are installed before any source file is copied (layer caching).
    runs = [n for n, s in enumerate(build) if s.keyword == "RUN"]
    sources = [n for n, s in enumerate(build) if s.keyword == "COPY" and "cli/" in s.args]
    assert "install.sh deps" in build[runs[0]].args and runs[0] < sources[0] < runs[1]
    # The final stage takes only the venv, installs nothing, and ends as the numeric user.
    copies = [s.args for s in final if s.keyword == "COPY"]
    assert copies == ["--from=build /opt/venv /opt/venv"]
    for run in (s.args for s in final if s.keyword == "RUN"):
        assert not re.search(r"apt-get|pip|gcc|install\.sh", run), run
    assert [s.args for s in final if s.keyword == "USER"] == ["1000:1000"]
    labels = " ".join(s.args for s in steps if s.keyword == "LABEL")
    for key in ("title", "description", "version", "revision", "licenses"):
        assert f"org.opencontainers.image.{key}=" in labels, key


def test_hadolint_finds_nothing() -> None:
    hadolint = Path(sys.executable).parent / "hadolint"
    done = subprocess.run(
        [str(hadolint), "--no-color", str(INIT), str(SIDECAR), str(SINGLE)],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0 and done.stdout == "", done.stdout + done.stderr
    # The linter really reads these files: a known mistake is reported.
    bad = subprocess.run(
        [str(hadolint), "--no-color", "-"],
        input="FROM python\nRUN cd /x\n",
        capture_output=True,
        text=True,
    )
    assert bad.returncode != 0 and "DL3006" in bad.stdout


def test_dockerignore_admits_every_copied_path() -> None:
    allowed = [
        line[1:].rstrip("/")
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line.startswith("!")
    ]
    used: list[str] = []
    for path in (INIT, SIDECAR, SINGLE):
        for step in instructions(path):
            words = step.args.split()
            if step.keyword == "COPY" and not words[0].startswith("--from"):
                used += [w for w in words[:-1] if not w.startswith("--")]
            for mount in re.findall(r"--mount=type=bind,(\S+)", step.args):
                source = dict(kv.split("=") for kv in mount.split(",") if "=" in kv).get("source")
                used.append(source or ".")
    for source in used:
        if source == ".":
            continue  # the whole (filtered) context
        clean = source.rstrip("/")
        assert any(
            clean == a or clean.startswith(a + "/") or a.startswith(clean + "/") for a in allowed
        ), source
    assert (REPO / "deploy" / "single" / "start.sh").stat().st_mode & 0o111


def test_lock_pins_exactly_the_runtime_closure(image_venv: Path) -> None:
    pins = lock_pins()
    installed = venv_distributions(image_venv)
    # The venv built from the lock holds the lock, waha-sync, and nothing else (no pip).
    assert {k: v[0] for k, v in installed.items() if k != "waha-sync"} == pins
    assert installed["waha-sync"][0] == PYPROJECT["project"]["version"]
    # Every runtime requirement, direct or transitive, is pinned, at a version it accepts.
    env = {"extra": ""}
    needed: set[str] = set()
    todo = [Requirement(r) for r in PYPROJECT["project"]["dependencies"]]
    while todo:
        req = todo.pop()
        if req.marker is not None and not req.marker.evaluate(env):
            continue
        name = canonicalize_name(req.name)
        assert name in pins, f"{req} is not in the lock"
        assert req.specifier.contains(pins[name], prereleases=True), f"{req} vs {pins[name]}"
        if name not in needed:
            needed.add(name)
            todo += [Requirement(r) for r in installed[name][1]]
    assert needed == set(pins), f"pinned but not needed: {set(pins) - needed}"


def test_image_venv_restores_and_serves_health(
    image_venv: Path, plain_db: DbTarget, tmp_path: Path
) -> None:
    bin_dir = image_venv / "bin"
    assert (
        subprocess.run(
            [str(bin_dir / "python"), "-c", "import pip"], capture_output=True
        ).returncode
        != 0
    )
    root = tmp_path / "sessions"
    root.mkdir()
    port = str(free_port())
    env = plain_db.env(
        **FAST, WAHA_SYNC_SESSIONS_DIR=str(root), WAHA_SYNC_PORT=port, PYTHONUNBUFFERED="1"
    )
    env["PATH"] = f"{bin_dir}:{env['PATH']}"

    def argv(cmd: list[str]) -> list[str]:  # the image's PATH lookup, done here
        return [str(bin_dir / cmd[0]), *cmd[1:]]

    restore = subprocess.run(
        argv(entrypoint(INIT)), env=env, capture_output=True, text=True, timeout=60
    )
    assert restore.returncode == 0, restore.stderr
    assert "nothing stored for instance default" in restore.stdout + restore.stderr
    assert (root / ".waha-sync" / "restored.json").is_file()

    probe = argv(healthcheck(SIDECAR))
    log = (tmp_path / "sidecar.log").open("wb")
    side = subprocess.Popen(
        argv(entrypoint(SIDECAR)), env=env, stdout=log, stderr=subprocess.STDOUT
    )
    try:
        assert subprocess.run(probe, env=env, capture_output=True).returncode != 0  # not up yet
        deadline = 60
        for _ in range(deadline * 10):
            try:
                if http_get(f"http://127.0.0.1:{port}/health", timeout=2).status == 200:
                    break
            except OSError:
                pass
            assert side.poll() is None, (tmp_path / "sidecar.log").read_text()
            subprocess.run(["sleep", "0.1"])
        else:
            raise AssertionError((tmp_path / "sidecar.log").read_text())
        assert subprocess.run(probe, env=env, capture_output=True).returncode == 0
        side.terminate()
        assert side.wait(30) == 0
    finally:
        if side.poll() is None:
            side.kill()
        log.close()
    assert subprocess.run(probe, env=env, capture_output=True).returncode != 0
    assert "every change is in the database" in (tmp_path / "sidecar.log").read_text()

"""The image definitions read as data, and the images' install replayed in a temp folder.

No Docker engine runs here, so the tests read the Dockerfiles' instructions and replay what a
build does: ``build_image_venv`` interprets the build stage of ``Dockerfile.init`` (``WORKDIR``,
``COPY``, ``RUN``) with the same files and the same commands, only with ``/src`` and
``/opt/venv`` moved into a temp folder. ``entrypoint`` gives ENTRYPOINT + CMD as an argv.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
INIT = REPO / "Dockerfile.init"
SIDECAR = REPO / "Dockerfile.sidecar"
SINGLE = REPO / "deploy" / "single" / "Dockerfile"
LOCK = REPO / "deploy" / "images" / "requirements.txt"
SHARED_BEGIN = "# ---- shared definition: begin"
SHARED_END = "# ---- shared definition: end"


@dataclass(frozen=True)
class Instruction:
    keyword: str  # upper case: FROM, RUN, COPY, ...
    args: str  # continuation lines joined, comments dropped
    stage: int  # 0 for the first FROM's stage; -1 before any FROM


def instructions(path: Path) -> list[Instruction]:
    """Every instruction of a Dockerfile, in order, with its build stage."""
    return parse(path.read_text())


def parse(text: str) -> list[Instruction]:
    """Every instruction of Dockerfile text (or a fragment of one), in order."""
    out: list[Instruction] = []
    stage = -1
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue  # Docker drops comment lines, even inside a continued instruction
        pending = f"{pending} {line}" if pending else line
        if pending.endswith("\\"):
            pending = pending[:-1].rstrip()
            continue
        keyword, _, args = pending.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            stage += 1
        out.append(Instruction(keyword, args.strip(), stage))
        pending = ""
    return out


def of_kind(path: Path, keyword: str) -> list[Instruction]:
    return [i for i in instructions(path) if i.keyword == keyword]


def exec_form(args: str) -> list[str]:
    """The JSON array of an exec-form instruction (fails the test for shell form)."""
    value = json.loads(args)
    assert isinstance(value, list), args
    assert all(isinstance(v, str) for v in value), args
    return value


def entrypoint(path: Path) -> list[str]:
    """What the container runs: the last ENTRYPOINT followed by the last CMD."""
    return exec_form(of_kind(path, "ENTRYPOINT")[-1].args) + exec_form(
        of_kind(path, "CMD")[-1].args
    )


def healthcheck(path: Path) -> list[str]:
    """The exec-form command of the last HEALTHCHECK (its options dropped)."""
    args = of_kind(path, "HEALTHCHECK")[-1].args
    return exec_form(args[args.index("CMD ") + 4 :])


def shared_block(path: Path) -> str:
    text = path.read_text()
    start = text.index(SHARED_BEGIN)
    return text[start : text.index(SHARED_END, start) + len(SHARED_END)]


def _copy_into(src: Path, dest: Path) -> None:
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")  # as .dockerignore says
    if src.is_dir():
        shutil.copytree(src, dest, ignore=ignore, dirs_exist_ok=True)
    else:
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, dest)


def build_image_venv(where: Path) -> Path:
    """Replay the build stage of Dockerfile.init in ``where``; the resulting venv."""
    build = [i for i in instructions(INIT) if i.stage == 0]
    root = where / "src"
    venv = where / "venv"
    workdir = root
    env = {**os.environ, "PYTHON": sys.executable}  # the base image's python3, here
    for step in build:
        if step.keyword == "WORKDIR":
            assert step.args == "/src", "the replay maps /src only"
            workdir = root
        elif step.keyword == "COPY":
            *sources, target = shlex.split(step.args)
            assert not any(s.startswith("--") for s in sources), step
            for source in sources:
                # Docker: a folder's contents go into the target; a file goes into a target
                # ending in "/" under its own name.
                into = workdir / target
                if (REPO / source).is_file() and target.endswith("/"):
                    into = into / Path(source).name
                _copy_into(REPO / source, into)
        elif step.keyword == "ARG":  # a build argument is in RUN's environment (its default)
            name, _, default = step.args.partition("=")
            env[name] = shlex.split(default)[0] if default else ""
        elif step.keyword == "RUN":
            command = step.args.replace("/opt/venv", str(venv)).replace(" /src", f" {root}")
            done = subprocess.run(
                ["sh", "-c", command], cwd=workdir, env=env, capture_output=True, text=True
            )
            assert done.returncode == 0, f"{command}\n{done.stdout}\n{done.stderr}"
        else:  # a new kind of step must be taught to the replay, never skipped
            assert step.keyword == "FROM", f"the replay cannot run {step.keyword} {step.args}"
    return venv


_built: dict[str, Path] = {}


def image_venv_once(factory: pytest.TempPathFactory) -> Path:
    """The images' virtualenv, built once per test session however many modules ask."""
    if "venv" not in _built:
        _built["venv"] = build_image_venv(factory.mktemp("image"))
    return _built["venv"]

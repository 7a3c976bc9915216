"""Shared parts of the hostile-input, disk-full, fencing and secrets scenarios.

Seeds are printed (``-s`` shows them; a failing test shows them anyway) and
can be pinned with ``CHAOS_SEED`` (as in the other chaos scenarios) to replay a run.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import random
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

from tests.chaos.conftest import draw_seed
from tests.support.dbtarget import DbTarget

# Root reads everything; without these capabilities it obeys file modes like anyone else,
# so "unreadable" files really are unreadable to the waha-sync process under test.
NO_DAC = ["setpriv", "--bounding-set=-dac_override,-dac_read_search"]
NOT_CLEAR = ("Traceback", "unexpected failure")


def seeded(scenario: str) -> random.Random:
    """A random generator for one scenario, its seed printed so a failure can be replayed."""
    seed = draw_seed()
    print(f"chaos seed: {scenario}: {seed}")
    return random.Random(seed)


def waha_sync(
    db: DbTarget | None,
    *args: str,
    prefix: list[str] | None = None,
    timeout: float = 120,
    **env: str,
) -> subprocess.CompletedProcess[str]:
    """Run the real command as a process (its own exit code, stdout and stderr)."""
    base = db.env(**env) if db is not None else _clean_env(**env)
    return subprocess.run(
        [*(prefix or []), sys.executable, "-m", "waha_sync.cli", *args],
        env=base,
        capture_output=True,
        text=True,
        errors="backslashreplace",
        timeout=timeout,
        check=False,
    )


def _clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WAHA_SYNC_", "WAHA_"))}
    for name in ("DATABASE_URL", "WHATSAPP_SESSIONS_POSTGRESQL_URL", "WHATSAPP_API_KEY"):
        env.pop(name, None)
    return {**env, **extra}


def unclear(text: str) -> list[str]:
    """Lines that show an error was not reported as one clear line (a traceback, a bug)."""
    return [line for line in text.splitlines() if any(bad in line for bad in NOT_CLEAR)]


def digest(root: Path, skip: str = ".waha-sync") -> dict[str, str]:
    """{relative path: sha256} of every regular file under ``root`` (symlinks left out)."""
    out: dict[str, str] = {}
    for folder, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if d != skip]
        for name in files:
            path = Path(folder, name)
            if not path.is_symlink() and path.is_file():
                out[path.relative_to(root).as_posix()] = hashlib.sha256(
                    path.read_bytes()
                ).hexdigest()
    return out


def stored(db: DbTarget, instance: str) -> dict[str, str]:
    """{path: sha256} of the instance's live stored files."""
    rows = db.sql(
        "SELECT path, sha256 FROM waha_sync_entries WHERE instance = :i AND NOT deleted",
        i=instance,
    )
    return {str(p): str(s) for p, s in rows}


@contextlib.contextmanager
def tmpfs(mount_point: Path, options: str) -> Iterator[Path]:
    """A small tmpfs at ``mount_point`` (root, as in CI), unmounted whatever happens."""
    mount_point.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(mount_point)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, (
        f"cannot mount a tmpfs ({done.stderr.strip()}): the disk-full scenario needs root "
        "with CAP_SYS_ADMIN, as CI has"
    )
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


def remount(mount_point: Path, options: str) -> None:
    subprocess.run(["mount", "-o", f"remount,{options}", str(mount_point)], check=True)

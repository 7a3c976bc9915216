"""Disk full while restoring: a real, small tmpfs as the target volume.

Each attempt pushes a random tree (JSON keys, incompressible media, some of it
over one 512 KiB chunk) and restores it into a tmpfs too small for it, by
bytes or by inodes (folders then fail to be created). The restore must exit 1
with one clear line naming what could not be written and saying the volume is
full, leave no marker, no temp file and no partial file under a final name;
after the volume is enlarged (``mount -o remount``) the same restore must
succeed with the exact tree. Some attempts retry once while still full, some
write with named temp files (as where ``O_TMPFILE`` is missing).
"""

from __future__ import annotations

import json
import random
import re
from collections import Counter
from pathlib import Path

import pytest

from tests.chaos.conftest import Chaos
from tests.chaos.hostile import digest, remount, seeded, tmpfs, unclear, waha_sync
from tests.support.dbtarget import DbTarget
from waha_sync.init import safepath

NAMED = re.compile(r"error: (.+): no space left on the target volume")


def _tree(root: Path, rng: random.Random) -> tuple[int, int]:
    """A WAHA-like tree of random shape; (bytes, files + folders)."""
    total = entries = 0
    for s in range(rng.randint(2, 12)):
        folder = root / "default" / f"session-{s}"
        folder.mkdir(parents=True)
        entries += 1
        for k in range(rng.randint(1, 25)):
            body = json.dumps({"k": k, "key": rng.randbytes(64).hex()}).encode()
            (folder / f"pre-key-{k}.json").write_bytes(body)
            total, entries = total + len(body), entries + 1
        if rng.random() < 0.6:
            media = rng.randbytes(rng.randint(50_000, 900_000))  # incompressible, 1-2 chunks
            (folder / "media.bin").write_bytes(media)
            total, entries = total + len(media), entries + 1
    return total, entries


def _full_attempt(
    db: DbTarget,
    tmp_path: Path,
    i: int,
    rng: random.Random,
    kinds: Counter[str],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> str | None:
    instance = f"full{i}"
    src = tmp_path / f"src{i}"
    size, entries = _tree(src, rng)
    assert db.cli("push", "--instance", instance, "--sessions-dir", str(src)) == 0
    want = digest(src)
    if rng.random() < 0.7:  # pages of 4 KiB: a fraction of what the tree needs
        options = f"size={max(8, int(size * rng.uniform(0.1, 0.9)) // 1024)}k"
    else:  # enough bytes, too few inodes: a folder or a file cannot even be created
        options = f"size=64m,nr_inodes={rng.randint(3, max(4, entries - 2))}"
        kinds["inodes"] += 1
    named = rng.random() < 0.3
    tries = 2 if rng.random() < 0.3 else 1
    kinds["named temp files"] += named
    kinds["retried while full"] += tries - 1
    with tmpfs(tmp_path / f"mnt{i}", options) as mnt:
        target = mnt / "sessions"
        for _ in range(tries):
            code, err = _restore(db, instance, target, named, capsys, monkeypatch)
            problem = _check_failure(code, err, target, want, options)
            if problem:
                return problem
        remount(mnt, "size=64m,nr_inodes=100000")  # the space is freed
        code, err = _restore(db, instance, target, named, capsys, monkeypatch)
        if code != 0:
            return f"{options}: rerun after freeing space exited {code}: {err[-500:]}"
        if digest(target) != want:
            return f"{options}: rerun after freeing space restored a different tree"
        if not (target / ".waha-sync" / "restored.json").is_file():
            return f"{options}: rerun wrote no marker"
    return None


def _restore(
    db: DbTarget,
    instance: str,
    target: Path,
    named: bool,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> tuple[int, str]:
    """Restore as a process, or in this one with named temp files (forked writers inherit it)."""
    if not named:
        proc = waha_sync(db, "restore", "--instance", instance, "--sessions-dir", str(target))
        return proc.returncode, proc.stderr
    capsys.readouterr()
    with monkeypatch.context() as m:
        m.setattr(safepath, "USE_UNNAMED", False)
        code = db.cli("restore", "--instance", instance, "--sessions-dir", str(target))
    return code, capsys.readouterr().err


def _check_failure(code: int, err: str, target: Path, want: dict[str, str], how: str) -> str | None:
    if code != 1:
        return f"{how}: restore into a full volume exited {code}: {err[-500:]}"
    if unclear(err) or "Try: free space or enlarge the volume" not in err:
        return f"{how}: unclear error: {err[-800:]}"
    found = NAMED.search(err)
    if found is None:
        return f"{how}: the error names no path: {err[-500:]}"
    named = found.group(1)
    known = named.endswith("/.waha-sync/restored.json") or any(
        p == named or p.startswith(named + "/") for p in want
    )
    if not known:
        return f"{how}: the error names {named!r}, which is nothing being restored"
    if (target / ".waha-sync" / "restored.json").exists():
        return f"{how}: a marker was written by a failed restore"
    got = digest(target) if target.exists() else {}
    partial = [p for p, sha in got.items() if want.get(p) != sha]
    if partial:
        return f"{how}: partial or foreign files under final names: {partial[:3]}"
    if target.exists() and any(safepath.TMP_MARK in p.name for p in target.rglob("*")):
        return f"{how}: temp files left behind"
    return None


def test_disk_full_while_restoring(
    plain_db: DbTarget,
    tmp_path: Path,
    chaos: Chaos,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    tally = chaos.scenario("disk full while restoring")
    rng = seeded("disk full")
    kinds: Counter[str] = Counter()
    for i in range(int(chaos.size(4, 40))):
        tally.attempt(_full_attempt(plain_db, tmp_path, i, rng, kinds, capsys, monkeypatch))
    tally.figures.update(
        (k, str(kinds[k])) for k in ("inodes", "named temp files", "retried while full")
    )
    tally.check()

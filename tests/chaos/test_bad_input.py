"""Hostile input on both sides: rows planted in the database, files planted in the volume.

Restore side: random hostile paths (traversal, absolute, empty or dot
components, backslashes, names over 255 bytes, a symlink planted in the
target) are inserted next to good rows, and random corruptions are applied to
one stored file's content (a flipped byte, a cut, a lost or an extra chunk, a
wrong size, an unknown codec). Every restore must exit 1 naming the path,
write nothing outside the target, no marker and no partial file under a final
name; a differing local copy of a corrupt file stays as it was. Damage that
does not change what decodes (bytes after a complete zstd frame) may restore,
but only byte-exact (SHA-256 verified); such attempts are counted apart. Odd but valid
names (255 bytes, multi-byte, spaces, newlines) must restore exactly.

Push and sidecar side: random combinations of symlink loops, links out of
the tree, 255-byte names, non-UTF-8 names, FIFOs, files over
``--max-file-bytes`` and unreadable files and folders, before the start and
while the sidecar watches. The process runs without root's DAC capabilities
(``setpriv``), so mode 000 really is unreadable to it. Each item must get its
own ``skipped <path>: <reason>`` line, nothing may crash or print a traceback,
and exactly the good files (255-byte names included) are stored.

PostgreSQL's TEXT refuses NUL bytes, so a stored path with one cannot exist
and is not tried here (``check_rel`` refuses it anyway).
"""

from __future__ import annotations

import hashlib
import random
import time
from collections import Counter
from pathlib import Path

from tests.chaos.conftest import Chaos
from tests.chaos.hostile import NO_DAC, digest, seeded, stored, unclear, waha_sync
from tests.chaos.planted import (
    KINDS,
    Expect,
    corrupt,
    hostile_path,
    item,
    plant,
    said,
    spoil_stored,
)
from tests.support.dbtarget import DbTarget
from tests.support.podsim import SidecarProc
from waha_sync.init.safepath import TMP_MARK


def _good_tree(root: Path, rng: random.Random, files: int) -> None:
    for n in range(files):
        rel = root / "default" / f"s{n % 3}" / f"pre-key-{n}.json"
        rel.parent.mkdir(parents=True, exist_ok=True)
        rel.write_text(f'{{"n": {n}, "key": "{rng.randbytes(24).hex()}"}}')


def _outside_snapshot(top: Path, target: Path) -> set[str]:
    """Every path under ``top`` except the target's own content (what a leak would change)."""
    return {
        str(p)
        for p in top.rglob("*")
        if target not in p.parents and p.relative_to(top).parts[0] != "src"
    }


def _paths_attempt(db: DbTarget, base: Path, i: int, rng: random.Random) -> str | None:
    instance = f"bad{i}"
    src, top = base / "src", base / "a"
    target = top / "b" / "c" / "target"  # ../ leads into folders we watch
    target.mkdir(parents=True)
    _good_tree(src, rng, rng.randint(3, 12))
    assert db.cli("push", "--instance", instance, "--sessions-dir", str(src)) == 0
    want = digest(src)
    like = sorted(want)[0]
    hostile = list(dict.fromkeys(hostile_path(rng, top) for _ in range(rng.randint(1, 3))))
    for path in hostile:
        plant(db, instance, path, like)
    planted_link = rng.random() < 0.25  # a symlink where the restore will want a folder
    if planted_link:
        (target / "default").mkdir()
        (target / "default" / "s0").symlink_to(top / "b", target_is_directory=True)
    before = _outside_snapshot(base, target)
    mode = rng.choice([[], ["--read-only"], ["--at", "2100-01-01T00:00:00+00:00"]])
    args = ["restore", "--instance", instance, "--sessions-dir", str(target), *mode]
    proc = waha_sync(db, *args)
    err = proc.stderr
    what = f"{hostile!r} {mode}{' and a planted symlink' if planted_link else ''}"
    if proc.returncode != 1:
        return f"{what}: exit {proc.returncode}: {err[-400:]}"
    named = any(f"{p!r}: refusing" in err for p in hostile)
    if unclear(err) or not (named or (planted_link and "which is a symlink" in err)):
        return f"{what}: the error does not name the path: {err[-400:]}"
    if _outside_snapshot(base, target) != before:
        return f"{what}: something was written outside the target"
    if (target / ".waha-sync" / "restored.json").exists():
        return f"{what}: a failed restore wrote its marker"
    wrong = [p for p, sha in digest(target).items() if want.get(p) != sha]
    if wrong or any(TMP_MARK in p.name for p in target.rglob("*")):
        return f"{what}: partial, foreign or temp files in the target: {wrong[:3]}"
    return None


def _odd_names_attempt(db: DbTarget, base: Path, i: int, rng: random.Random) -> str | None:
    """Valid names at the edges: they must be stored and restored exactly."""
    instance = f"odd{i}"
    src = base / "src"
    names = ["n" * 255, "é" * 127 + "x", "with space.json", "new\nline.json", "-dash", "ü/ß/ö.json"]
    for name in rng.sample(names, rng.randint(2, len(names))):
        path = src / "default" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        data = rng.randbytes(rng.randint(0, 3000))
        path.write_bytes(f'{{"v": "{data.hex()}"}}'.encode() if name.endswith(".json") else data)
    assert db.cli("push", "--instance", instance, "--sessions-dir", str(src)) == 0
    proc = waha_sync(db, "restore", "--instance", instance, "--sessions-dir", str(base / "t"))
    if proc.returncode != 0 or digest(base / "t") != digest(src):
        return f"odd names: exit {proc.returncode}, trees equal: False: {proc.stderr[-400:]}"
    return None


def _corrupt_attempt(
    db: DbTarget, base: Path, i: int, rng: random.Random, harmless: Counter[str]
) -> str | None:
    instance = f"rot{i}"
    src, target = base / "src", base / "target"
    _good_tree(src, rng, rng.randint(2, 10))
    big = src / "default" / "s0" / "media.bin"
    big.write_bytes(rng.randbytes(rng.randint(10_000, 1_200_000)))  # one to three chunks
    assert db.cli("push", "--instance", instance, "--sessions-dir", str(src)) == 0
    victim = rng.choice(sorted(digest(src)))
    old = None
    if rng.random() < 0.4:  # the target holds an older, good copy that must survive
        assert db.cli("restore", "--instance", instance, "--sessions-dir", str(target)) == 0
        old = (target / victim).read_bytes()
        fresh = rng.randbytes(len(old) + 7)
        (src / victim).write_bytes(
            f'{{"v": "{fresh.hex()}"}}'.encode() if victim.endswith(".json") else fresh
        )
        assert db.cli("push", "--force", "--instance", instance, "--sessions-dir", str(src)) == 0
    marker = target / ".waha-sync" / "restored.json"
    marker_before = marker.read_bytes() if marker.exists() else None
    sha = stored(db, instance)[victim]
    kind = corrupt(db, sha, rng)
    proc = waha_sync(db, "restore", "--instance", instance, "--sessions-dir", str(target))
    what = f"{kind} in {victim} ({'over an old copy' if old else 'empty target'})"
    if proc.returncode == 0 and digest(target) == digest(src):  # e.g. bytes after a zstd frame
        harmless[kind] += 1  # the damage did not change what decodes: verified, exact
        return None
    if proc.returncode != 1:
        return f"{what}: exit {proc.returncode}: {proc.stderr[-400:]}"
    if unclear(proc.stderr) or f"{victim}: stored " not in proc.stderr:
        return f"{what}: the error does not name the file clearly: {proc.stderr[-400:]}"
    have = (target / victim).read_bytes() if (target / victim).exists() else None
    if have != old:
        return f"{what}: the file under its final name is not the old copy (half-written?)"
    if (marker.read_bytes() if marker.exists() else None) != marker_before:
        return f"{what}: the failed restore changed the marker"
    good = digest(src)
    wrong = [p for p, s in digest(target).items() if p != victim and good.get(p) != s]
    if wrong or any(TMP_MARK in p.name for p in target.rglob("*")):
        return f"{what}: partial or temp files: {wrong[:3]}"
    return None


def test_hostile_rows_and_corrupt_content_on_restore(
    plain_db: DbTarget, tmp_path: Path, chaos: Chaos
) -> None:
    rng = seeded("hostile rows")
    paths = chaos.scenario("bad input: hostile stored paths")
    rot = chaos.scenario("bad input: corrupt stored content")
    for i in range(int(chaos.size(8, 80))):
        paths.attempt(_paths_attempt(plain_db, tmp_path / f"p{i}", i, rng))
        if i % 4 == 0:  # the negative control: valid edge names restore exactly
            paths.attempt(_odd_names_attempt(plain_db, tmp_path / f"o{i}", i, rng))
    harmless: Counter[str] = Counter()
    for i in range(int(chaos.size(8, 80))):
        rot.attempt(_corrupt_attempt(plain_db, tmp_path / f"c{i}", i, rng, harmless))
    rot.figures["harmless (restored exactly)"] = str(sum(harmless.values()))
    paths.check()
    rot.check()


def _files_attempt(db: DbTarget, base: Path, i: int, rng: random.Random, mode: str) -> str | None:
    instance = f"loc{i}"
    root = base / "vol"
    assert db.cli("restore", "--instance", instance, "--sessions-dir", str(root)) == 0
    _good_tree(root, rng, 9)  # s0, s1, s2 with three files each
    assert db.cli("push", "--instance", instance, "--sessions-dir", str(root)) == 0
    before = stored(db, instance)
    limit = rng.randint(2000, 8000)
    kinds = rng.sample(KINDS, rng.randint(3, len(KINDS)))
    good: dict[str, bytes] = {}
    expect: Expect = []
    args = ["--instance", instance, "--sessions-dir", str(root), "--max-file-bytes", str(limit)]

    def scatter(few: list[str], n: int) -> None:
        folder = root / "default" / f"h{n}"
        folder.mkdir()
        for kind in few:
            expect.extend(item(kind, folder, rng, limit, good))
        if rng.random() < 0.5:
            expect.extend(spoil_stored(root, rng))

    live = kinds[: rng.randint(0, len(kinds))] if mode == "sidecar" else []
    scatter([k for k in kinds if k not in live], 0)
    if mode == "push":
        proc = waha_sync(db, "push", *args, prefix=NO_DAC)
        log, code = proc.stderr, proc.returncode
    else:
        side = SidecarProc(db, root, base / "sidecar.log")
        side.prefix = NO_DAC
        side.start(*args[2:], "--instance", instance).ready()
        if live:
            scatter(live, 1)
        _wait_for_lines(side, expect)
        code, log = side.term(), side.log()
    what = f"{mode} with {kinds} ({len(live)} live)"
    if code != 0:
        return f"{what}: exit {code}: {log[-600:]}"
    if unclear(log) or "cannot sync" in log:
        return f"{what}: a crash or a stuck sync: {log[-600:]}"
    if missing := said(log, expect):
        return f"{what}: no log line for {missing[:3]}: {log[-600:]}"
    want = dict(before)
    for rel, data in good.items():
        want[rel] = hashlib.sha256(data).hexdigest()
    if (got := stored(db, instance)) != want:
        diff = sorted(set(got.items()) ^ set(want.items()))
        return f"{what}: stored files differ from the good ones: {diff[:3]}"
    return None


def _wait_for_lines(side: SidecarProc, expect: Expect, timeout: float = 20) -> None:
    """Until the sidecar has reported every hostile item (or the time is up: then it fails)."""
    deadline = time.monotonic() + timeout
    while said(side.log(), expect) and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(0.5)  # good files created with them ship within the debounce


def test_hostile_files_in_the_volume(plain_db: DbTarget, tmp_path: Path, chaos: Chaos) -> None:
    rng = seeded("hostile files")
    tally = chaos.scenario("bad input: hostile files (push and sidecar)")
    for i in range(int(chaos.size(4, 60))):
        mode = "push" if i % 2 == 0 else "sidecar"
        tally.attempt(_files_attempt(plain_db, tmp_path / f"f{i}", i, rng, mode))
    tally.check()

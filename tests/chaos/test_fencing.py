"""Two sidecars on one instance: once B has claimed it, A writes nothing.

Each attempt restores an instance into volume A and runs sidecar A while a
writer keeps creating files with unique content there. At a random moment
a second pod takes the instance over: ``restore`` into volume B and sidecar
B (as a new pod does), or a read-only copy and ``sidecar --force`` (the
sidecar claims by itself). The writer keeps going in A (or A is idle, and
its ``/health`` must turn 503 with the fenced reason before anything is
written). Afterwards, read from the database itself:

- commits under A's epoch after the claim: 0 (counted in the same snapshot
  that first shows the new epoch, and again at the end);
- versions or content of any file A's writer created after the claim: 0;
- A exits 1 with ``[SYNC] fenced: instance X was claimed by ... (epoch N)``;
- B ships its own writer's files and ends with the database equal to volume B.

Both database modes run (CockroachDB-like injects 40001 into the commits
being fenced). Timings are random per attempt.
"""

from __future__ import annotations

import hashlib
import random
import threading
import time
from pathlib import Path

from tests.chaos.conftest import Chaos
from tests.chaos.hostile import digest, seeded, stored
from tests.support.dbtarget import DbTarget
from tests.support.podsim import SidecarProc


class MarkedWriter(threading.Thread):
    """Creates ``<tag>-<n>.json`` files with unique content; remembers when each began."""

    def __init__(self, folder: Path, tag: str, rng: random.Random) -> None:
        super().__init__(daemon=True)
        self.folder, self.tag = folder, tag
        self.rng = random.Random(rng.random())
        self.made: list[tuple[float, str, str]] = []  # (monotonic start, rel path, sha256)
        self.halt = threading.Event()
        folder.mkdir(parents=True, exist_ok=True)

    def run(self) -> None:
        n = 0
        while not self.halt.is_set():
            n += 1
            began = time.monotonic()
            data = f'{{"from": "{self.tag}", "n": {n}, "k": "{self.rng.randbytes(16).hex()}"}}'
            (self.folder / f"{self.tag}-{n}.json").write_text(data)
            rel = f"{self.folder.name}/{self.tag}-{n}.json"
            self.made.append((began, rel, hashlib.sha256(data.encode()).hexdigest()))
            self.halt.wait(self.rng.uniform(0.01, 0.08))

    def stop(self) -> None:
        self.halt.set()
        self.join(10)


def _epoch_and_commits(db: DbTarget, instance: str, epoch: int) -> tuple[int, int]:
    """The instance's epoch and its commits under ``epoch``, in one snapshot."""
    row = db.sql(
        "SELECT i.epoch, (SELECT count(*) FROM waha_sync_commits c "
        "WHERE c.instance = i.instance AND c.epoch = :e) "
        "FROM waha_sync_instances i WHERE i.instance = :i",
        i=instance,
        e=epoch,
    )[0]
    return int(row[0]), int(row[1])  # type: ignore[call-overload]


def _attempt(
    db: DbTarget, base: Path, i: int, rng: random.Random, how: dict[str, int]
) -> str | None:
    instance = f"fence{i}"
    vol_a, vol_b = base / "a", base / "b"
    assert db.cli("restore", "--instance", instance, "--sessions-dir", str(vol_a)) == 0
    env = {"WAHA_SYNC_INSTANCE": instance}
    side_a = SidecarProc(db, vol_a, base / "a.log", **env).start().ready()
    epoch_a = _epoch_and_commits(db, instance, 0)[0]
    writer_a = MarkedWriter(vol_a / "default", "a", rng)
    writer_a.start()
    time.sleep(rng.uniform(0.2, 2.0))
    idle = rng.random() < 0.3
    if idle:  # A has shipped everything and sits waiting
        writer_a.stop()
        side_a.wait_for("shipped", timeout=30)
        time.sleep(1.0)
    force = rng.random() < 0.4
    how["sidecar --force" if force else "restore"] += 1
    how["idle A"] += idle
    side_b = SidecarProc(db, vol_b, base / "b.log", **env)
    if force:
        assert (
            db.cli("restore", "--read-only", "--instance", instance, "--sessions-dir", str(vol_b))
            == 0
        )
        side_b.start("--force")
        deadline = time.monotonic() + 30
        while (now := _epoch_and_commits(db, instance, epoch_a))[0] == epoch_a:
            assert time.monotonic() < deadline, "sidecar --force never claimed the instance"
            time.sleep(0.02)
    else:
        assert db.cli("restore", "--instance", instance, "--sessions-dir", str(vol_b)) == 0
        now = _epoch_and_commits(db, instance, epoch_a)
        side_b.start()
    claimed_at = time.monotonic()  # the claim is committed: from here on A must write nothing
    epoch_b, commits_a = now
    side_b.wait_for("in sync with the database")
    writer_b = MarkedWriter(vol_b / "default", "b", rng)
    writer_b.start()
    problem = None
    if idle:
        problem = _health_says_fenced(side_a, instance)
        (vol_a / "default" / "after-claim.json").write_text('{"late": true}')
    else:
        time.sleep(rng.uniform(0.5, 2.0))  # A's writer goes on after the claim
    code = side_a.wait(30)
    writer_a.stop()
    how["files A made after the claim"] += sum(m[0] > claimed_at for m in writer_a.made)
    time.sleep(rng.uniform(0.2, 1.0))
    writer_b.stop()
    side_b.stop_ok()
    return problem or _verdict(
        db, instance, (epoch_a, epoch_b, commits_a), claimed_at, code, side_a, writer_a, vol_b
    )


def _health_says_fenced(side: SidecarProc, instance: str) -> str | None:
    """Idle A's readiness turns 503 naming the claim (a failed probe may come first)."""
    deadline = time.monotonic() + 15
    said = ""
    while time.monotonic() < deadline:
        reply = side.get("/health")
        said = reply.body.decode(errors="replace")
        if reply.status == 503 and f"fenced: instance {instance} was claimed by" in said:
            return None
        time.sleep(0.1)
    return f"idle A's /health never said it was fenced; last: {said[:300]}"


def _verdict(
    db: DbTarget,
    instance: str,
    epochs: tuple[int, int, int],
    claimed_at: float,
    code: int,
    side_a: SidecarProc,
    writer_a: MarkedWriter,
    vol_b: Path,
) -> str | None:
    epoch_a, epoch_b, commits_a = epochs
    late_commits = _epoch_and_commits(db, instance, epoch_a)[1] - commits_a
    if late_commits:
        return f"A committed {late_commits} times after B's claim (epoch {epoch_b})"
    late = {rel: sha for began, rel, sha in writer_a.made if began > claimed_at}
    late["default/after-claim.json"] = ""
    versions = db.sql(
        "SELECT count(*) FROM waha_sync_versions WHERE instance = :i AND path = ANY(:p)",
        i=instance,
        p=list(late),
    )[0][0]
    shas = [s for s in late.values() if s]
    blobs = (
        db.sql("SELECT count(*) FROM waha_sync_blobs WHERE sha256 = ANY(:s)", s=shas)[0][0]
        if shas
        else 0
    )
    if versions or blobs:
        return f"A wrote {versions} versions and {blobs} blobs of files made after the claim"
    log = side_a.log()
    if code != 1 or f"[SYNC] fenced: instance {instance} was claimed by" not in log:
        return f"A exited {code} without saying it was fenced:\n{log[-800:]}"
    if f"(epoch {epoch_b})" not in log:
        return f"A's fenced line does not name epoch {epoch_b}:\n{log[-800:]}"
    if stored(db, instance) != digest(vol_b):
        return "the database is not equal to B's volume after B stopped"
    return None


def test_two_sidecars_on_one_instance(db: DbTarget, tmp_path: Path, chaos: Chaos) -> None:
    rng = seeded(f"fencing {db.mode}")
    tally = chaos.scenario(f"fencing: two sidecars on one instance ({db.mode})")
    how = dict.fromkeys(("restore", "sidecar --force", "idle A", "files A made after the claim"), 0)
    for i in range(int(chaos.size(2, 25))):
        tally.attempt(_attempt(db, tmp_path / f"pod{i}", i, rng, how))
    tally.figures.update(
        {(f"claims by {k}" if "A" not in k else k): str(v) for k, v in how.items()}
    )
    tally.check()

"""What "the database holds one committed state" means, checked from the outside.

``replay`` rebuilds the tree after commit N from the raw history
(``waha_sync_versions``, applied commit by commit), independently of the
product's own "tree as of" query. ``check_committed`` compares that with the
live table and with what ``restore --read-only`` writes into a fresh folder,
and checks the content itself: every JSON file parses and is a version its
writer really wrote in full; every SQLite database passes
``PRAGMA integrity_check`` and holds a gap-free prefix of the writer's rows.
Also the pieces both chaos files use: seeds, churn, and "DB equals disk".
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sqlite3
import threading
import time
from pathlib import Path

from tests.support.dbtarget import DbTarget
from tests.support.podsim import BaileysWriter, assert_same_tree, stored_tree
from tests.support.wahatree import SqliteWriter, make_noweb_session, make_sqlite, tree_digest
from waha_sync.common.sync.content import sha256_hex
from waha_sync.common.sync.pieces import file_list_digest

INSTANCE = "default"


class RecordingWriter(BaileysWriter):
    """A ``BaileysWriter`` that remembers the SHA-256 of every complete version it wrote."""

    def __init__(self, folder: Path, root: Path, files: int, rate: float, seed: int) -> None:
        super().__init__(folder, files=files, rate=rate, seed=seed)
        self.prefix = folder.relative_to(root).as_posix() + "/"
        self.versions: dict[str, set[str]] = {}
        self.lock = threading.Lock()

    def write(self, name: str) -> None:
        self.counter += 1
        body = {"n": self.counter, "key": self.rng.randbytes(48).hex(), "pad": "x" * 300}
        data = json.dumps(body).encode()
        with self.lock:  # recorded before the first byte lands, so no race with a check
            self.versions.setdefault(self.prefix + name, set()).add(
                hashlib.sha256(data).hexdigest()
            )
        with (self.folder / name).open("wb") as f:  # truncate + two writes, not atomic
            f.write(data[: len(data) // 2])
            f.flush()
            time.sleep(0.001)
            f.write(data[len(data) // 2 :])

    def wrote(self, rel: str, sha: str) -> bool | None:
        """Whether ``sha`` is a version written to ``rel``; None if ``rel`` is not ours."""
        if not rel.startswith(self.prefix):
            return None
        with self.lock:
            return sha in self.versions.get(rel, set())


def restored(db: DbTarget, root: Path) -> Path:
    """A volume restored (and so claimed) for a sidecar to run on."""
    root.mkdir(parents=True, exist_ok=True)
    assert db.cli("restore", "--sessions-dir", str(root)) == 0
    return root


def replay(db: DbTarget, upto: int) -> dict[str, str]:
    """{path: sha256} of the live tree right after commit ``upto``, from the raw history."""
    rows = db.sql(
        "SELECT path, commit_id, sha256 FROM waha_sync_versions "
        "WHERE instance = :n AND commit_id <= :c ORDER BY commit_id, path",
        n=INSTANCE,
        c=upto,
    )
    state: dict[str, str] = {}
    for path, _, sha in rows:
        if sha is None:
            state.pop(str(path), None)
        else:
            state[str(path)] = str(sha)
    return state


def sqlite_problem(path: Path, committed: int | None) -> str | None:
    """Why a restored SQLite copy is not a consistent snapshot, or None."""
    conn = sqlite3.connect(path)
    try:
        check = conn.execute("PRAGMA integrity_check").fetchone()[0]
        if check != "ok":
            return f"{path.name}: integrity_check {check}"
        ids = [r[0] for r in conn.execute("SELECT id FROM events ORDER BY id")]
    finally:
        conn.close()
    if ids != list(range(1, len(ids) + 1)):
        return f"{path.name}: rows are not a gap-free prefix"
    if committed is not None and len(ids) > committed:
        return f"{path.name}: {len(ids)} rows, the writer had committed {committed}"
    return None


def check_committed(
    db: DbTarget, into: Path, writer: RecordingWriter | None, sqlite_committed: int | None
) -> tuple[str | None, int]:
    """(first problem or None, torn or corrupt files) for the state the database holds now.

    Call it with no sidecar running, so the last commit cannot move meanwhile.
    """
    rows = db.sql("SELECT last_commit FROM waha_sync_instances WHERE instance = :n", n=INSTANCE)
    last = int(str(rows[0][0]))
    ids = sorted(int(str(r[0])) for r in db.sql("SELECT id FROM waha_sync_commits"))
    if ids != list(range(1, last + 1)):
        return f"commit records {ids[:3]}..{ids[-3:]} are not 1..{last}", 0
    want = replay(db, last)
    live = db.sql(
        "SELECT path, sha256 FROM waha_sync_entries WHERE instance = :n AND NOT deleted", n=INSTANCE
    )
    if {str(p): str(s) for p, s in live} != want:
        return f"live entries differ from the history replayed to commit {last}", 0
    if db.cli("restore", "--read-only", "--sessions-dir", str(into)) != 0:
        return "restore --read-only failed", 0
    try:
        marker = json.loads((into / ".waha-sync" / "restored.json").read_text())
        got = stored_digests(into, db)
        problem = None if marker["commit_id"] == last else f"restored commit {marker['commit_id']}"
        if problem is None and got != want:
            extra, missing = sorted(set(got) - set(want)), sorted(set(want) - set(got))
            changed = sorted(k for k in set(got) & set(want) if got[k] != want[k])
            problem = (
                f"restored tree is not commit {last}: +{extra[:3]} -{missing[:3]} ~{changed[:3]}"
            )
        torn = 0
        for rel, sha in sorted(got.items()):
            path = into / rel
            why = None
            if rel.endswith(".json"):
                try:
                    json.loads(path.read_bytes())
                except ValueError:
                    why = f"{rel}: torn JSON"
                if why is None and writer is not None and writer.wrote(rel, sha) is False:
                    why = f"{rel}: content the writer never wrote in full"
            elif path.read_bytes()[:16] == b"SQLite format 3\x00":
                why = sqlite_problem(path, sqlite_committed)
            if why is not None:
                torn += 1
                problem = problem or why
        return problem, torn
    finally:
        shutil.rmtree(into, ignore_errors=True)


GOWS = "default/bob/gows.db"


def stored_digests(root: Path, db: DbTarget) -> dict[str, str]:
    """{path: digest} of the files under ``root``, each as the database records it: the
    SHA-256 of the file, or of its piece list for a file stored as pieces."""
    got = {k: v[0] for k, v in tree_digest(root).items()}
    rows = db.sql("SELECT path, piece_bytes FROM waha_sync_files WHERE piece_bytes IS NOT NULL")
    for rel, pb in rows:
        path = root / str(rel)
        if str(rel) in got:
            got[str(rel)] = file_list_digest(str(path), path.stat().st_size, int(str(pb)))
    return got


def stored(db: DbTarget) -> dict[str, str]:
    """{path: sha256} of the live stored files."""
    rows = db.sql("SELECT path, sha256 FROM waha_sync_entries WHERE NOT deleted")
    return {str(p): str(s) for p, s in rows}


def write_json(path: Path, obj: object) -> str:
    """Write ``obj`` as JSON; the SHA-256 the database must end up holding for it."""
    data = json.dumps(obj).encode()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return sha256_hex(data)


def churn(root: Path, rng_seed: int) -> tuple[BaileysWriter, SqliteWriter]:
    """A quiet session, NOWEB-like JSON churn and a SQLite writer, started."""
    make_noweb_session(root / "default" / "carol", prekeys=20)
    make_sqlite(root / GOWS, rows=10)
    writer = BaileysWriter(root / "default" / "alice", files=80, rate=100, seed=rng_seed)
    sqlw = SqliteWriter(root / GOWS, rate_per_s=50)
    writer.start()
    sqlw.start()
    return writer, sqlw


def lost_updates(root: Path, db: DbTarget, into: Path) -> int:
    """Paths whose stored state differs from the disk (0 after a clean stop)."""
    try:
        assert_same_tree(root, stored_tree(db, into), (GOWS,))
    except AssertionError:
        skip = (".waha-sync",)
        mine = {
            k: v for k, v in tree_digest(root, skip).items() if not k.endswith(("-wal", "-shm"))
        }
        theirs = tree_digest(into, skip)
        return len(set(mine.items()) ^ set(theirs.items())) or 1
    return 0

"""Retention GC on a real PostgreSQL (both test modes): history before the horizon and
unreferenced content go, every state from the horizon on restores exactly as before."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import threading
import time
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from tests.support.dbtarget import DbTarget, backdate
from tests.support.podsim import SidecarProc, wait_until
from tests.support.wahatree import tree_digest
from waha_sync.common.db.database import Database
from waha_sync.common.db.retry import RetryPolicy
from waha_sync.common.db.schema import LATEST, migrate, schema_version
from waha_sync.common.db.url import parse_url
from waha_sync.common.store.base import GcBatch, StoredEntry
from waha_sync.common.store.postgres import PgStore
from waha_sync.common.sync.content import encode
from waha_sync.common.sync.gc import collect

WEEK = timedelta(hours=168)


def store_of(db: DbTarget, attempts: int = 12) -> PgStore:
    """A store in the test's mode (more retries for big setup commits under chaos)."""
    retry = RetryPolicy(attempts=attempts, base_seconds=0.001)
    conn = Database(parse_url(db.url), chaos_40001_rate=db.chaos_rate, retry=retry)
    migrate(conn)
    return PgStore(conn)


def content(rel: str, version: int) -> bytes:
    return json.dumps({"file": rel, "version": version, "pad": "x" * version}).encode()


def sha(rel: str, version: int) -> str:
    return hashlib.sha256(content(rel, version)).hexdigest()


def put(root: Path, rel: str, version: int) -> None:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content(rel, version))
    past = time.time_ns() - 60_000_000_000 + version  # quiet already: pushed without waiting
    os.utime(path, ns=(past, past))


def push(db: DbTarget, root: Path, age_hours: float) -> int:
    """Push ``root`` as one commit made ``age_hours`` ago (setup: fewer injected 40001s, or a
    six-statement commit spends all 12 attempts about once in 300 pushes)."""
    setup = dataclasses.replace(db, chaos_rate=min(db.chaos_rate, 0.05))
    assert setup.cli("push", "--sessions-dir", str(root)) == 0
    return backdate(db, int(str(db.sql("SELECT max(id) FROM waha_sync_commits")[0][0])), age_hours)


def restored(db: DbTarget, out: Path, *flags: str) -> dict[str, tuple[str, int]]:
    assert db.cli("restore", "--read-only", "--sessions-dir", str(out), *flags) == 0
    return tree_digest(out)


def shas(digest: dict[str, tuple[str, int]]) -> dict[str, str]:
    return {rel: s for rel, (s, _) in digest.items()}


def stored(db: DbTarget, digest: str) -> tuple[int, int]:
    """How many blob rows and chunk rows hold ``digest``."""
    blob, chunks = "waha_sync_blobs WHERE sha256 = :s", "waha_sync_chunks WHERE sha256 = :s"
    row = db.sql(f"SELECT (SELECT count(*) FROM {blob}), (SELECT count(*) FROM {chunks})", s=digest)
    return int(str(row[0][0])), int(str(row[0][1]))


def test_gc_keeps_every_state_from_the_horizon_on(db: DbTarget, tmp_path: Path) -> None:
    root = tmp_path / "s"
    for rel in ("a.json", "b.json", "c.json", "d.json", "e.json"):
        put(root, rel, 1)
    assert push(db, root, 240) == 1
    put(root, "a.json", 2)
    (root / "b.json").unlink()
    (root / "e.json").unlink()
    assert push(db, root, 216) == 2
    put(root, "a.json", 3)
    (root / "c.json").unlink()
    put(root, "e.json", 3)
    assert push(db, root, 192) == 3  # the horizon commit: last one before now - 168 h
    put(root, "a.json", 4)
    (root / "d.json").unlink()
    put(root, "b.json", 4)
    assert push(db, root, 24) == 4
    put(root, "a.json", 5)
    assert push(db, root, 0) == 5
    # Content last used two hours ago, except e.json's first version (just used).
    db.sql(
        "UPDATE waha_sync_blobs SET used_at = now() - INTERVAL '2 hours' WHERE sha256 <> :s",
        s=sha("e.json", 1),
    )
    dead = [sha("a.json", 1), sha("a.json", 2), sha("b.json", 1), sha("c.json", 1)]
    query = "SELECT sum(stored_bytes) FROM waha_sync_blobs WHERE sha256 = ANY(:s)"
    dead_bytes = int(str(db.sql(query, s=dead)[0][0]))
    now = db.sql("SELECT now()")[0][0]
    assert isinstance(now, datetime)
    at_horizon = (now - WEEK + timedelta(hours=1)).isoformat()
    at_yesterday = (now - timedelta(hours=12)).isoformat()
    before = {
        "horizon": restored(db, tmp_path / "h0", "--at", at_horizon),
        "yesterday": restored(db, tmp_path / "y0", "--at", at_yesterday),
        "now": restored(db, tmp_path / "n0"),
    }
    assert shas(before["horizon"]) == {
        r: sha(r, v) for r, v in [("a.json", 3), ("d.json", 1), ("e.json", 3)]
    }
    assert shas(before["yesterday"]) == {
        r: sha(r, v) for r, v in [("a.json", 4), ("b.json", 4), ("e.json", 3)]
    }
    assert before["now"] == tree_digest(root)

    store = store_of(db)
    report = collect(store, "default", WEEK)

    # a1, a2 and e1 replaced; b1, c1 deleted; e2 (a tombstone) replaced by e3.
    assert (report.versions_deleted, report.tombstones_deleted) == (6, 2)  # + tombstones b2, c3
    assert (report.entries_deleted, report.commits_deleted) == (1, 2)  # c's entry; commits 1, 2
    assert report.blobs_deleted == 4 and report.bytes_freed == dead_bytes
    versions = db.sql("SELECT path, commit_id FROM waha_sync_versions ORDER BY path, commit_id")
    assert [(str(p), int(str(c))) for p, c in versions] == [
        ("a.json", 3), ("a.json", 4), ("a.json", 5), ("b.json", 4), ("d.json", 1), ("d.json", 4),
        ("e.json", 3),
    ]  # fmt: skip
    assert [r[0] for r in db.sql("SELECT id FROM waha_sync_commits ORDER BY id")] == [3, 4, 5]
    assert [r[0] for r in db.sql("SELECT path FROM waha_sync_entries ORDER BY path")] == [
        "a.json", "b.json", "d.json", "e.json",
    ]  # fmt: skip
    for digest in dead:
        assert stored(db, digest) == (0, 0)
    assert stored(db, sha("e.json", 1)) == (1, 1)  # unreferenced, but used within the grace
    assert stored(db, sha("d.json", 1)) == (1, 1)  # d's last state before its tombstone

    assert restored(db, tmp_path / "h1", "--at", at_horizon) == before["horizon"]
    assert restored(db, tmp_path / "y1", "--at", at_yesterday) == before["yesterday"]
    assert restored(db, tmp_path / "n1") == before["now"]

    again = collect(store, "default", WEEK)
    assert again.rows_deleted == 0 and again.bytes_freed == 0

    db.sql("UPDATE waha_sync_blobs SET used_at = now() - INTERVAL '2 hours'")
    late = collect(store, "default", WEEK)
    assert (late.blobs_deleted, late.rows_deleted) == (1, 1)
    assert stored(db, sha("e.json", 1)) == (0, 0)

    live = tmp_path / "live"
    assert db.cli("restore", "--sessions-dir", str(live)) == 0  # claims: reads the live entries
    assert tree_digest(live) == tree_digest(root)


def test_a_blob_reported_present_survives_gc(db: DbTarget) -> None:
    store = store_of(db)
    kept, control, reput = (encode(f'{{"blob": {n}}}'.encode()) for n in range(3))
    store.put_blobs([kept, control, reput])
    db.sql("UPDATE waha_sync_blobs SET used_at = now() - INTERVAL '2 hours'")

    unknown = "0" * 64
    assert store.missing_blobs([kept.sha256, unknown]) == {unknown}  # marks `kept` in use
    store.put_blobs([reput])  # a duplicate put marks it in use too
    report = collect(store, "i", WEEK)

    assert (report.blobs_deleted, report.bytes_freed) == (1, control.stored_bytes)
    assert stored(db, control.sha256) == (0, 0)
    assert stored(db, kept.sha256) == stored(db, reput.sha256) == (1, 1)
    # The writer goes on to commit what it was told is stored; the content is all there.
    epoch = store.claim("i", "me").epoch
    entry = StoredEntry("k.json", kept.sha256, kept.size_bytes, 0o600, 1)
    assert store.commit("i", epoch, "me", [entry], []).commit_id == 1
    assert store.read_blobs([entry]) == {kept.sha256: list(kept.chunks)}


def test_gc_alongside_a_writer_never_loses_referenced_content(db: DbTarget) -> None:
    writer, setup = store_of(db, attempts=40), store_of(db)  # real SSI conflicts too
    blobs = [encode(content(f"f{n}.json", 1)) for n in range(40)]
    setup.put_blobs(blobs)
    db.sql("UPDATE waha_sync_blobs SET used_at = now() - INTERVAL '2 hours'")
    epoch = writer.claim("i", "me").epoch
    done = threading.Event()
    freed: list[int] = []
    failed: list[BaseException] = []

    def collector() -> None:
        store = store_of(db, attempts=40)
        try:
            while not done.is_set():
                freed.append(collect(store, "i", WEEK).blobs_deleted)
        except BaseException as exc:  # reported by the assertion below
            failed.append(exc)

    gc = threading.Thread(target=collector)
    gc.start()
    try:
        for n, blob in enumerate(blobs):  # what ship does: ask, put what is missing, commit
            writer.put_blobs([blob] if writer.missing_blobs([blob.sha256]) else [])
            entry = StoredEntry(f"f{n}.json", blob.sha256, blob.size_bytes, 0o600, 1)
            writer.commit("i", epoch, "me", [entry], [])
            time.sleep(0.005)
    finally:
        done.set()
        gc.join()
    assert failed == []
    assert len(freed) > 1 and sum(freed) > 0  # GC ran alongside, and deleted orphans
    entries = [e for page in writer.live_entries("i") for e in page]
    assert len(entries) == 40
    assert writer.read_blobs(entries) == {b.sha256: list(b.chunks) for b in blobs}


def test_gc_works_in_small_batches(db: DbTarget) -> None:
    setup, store = store_of(db, attempts=40), store_of(db)
    epoch = setup.claim("i", "me").epoch
    names = [f"keys/f{n:04d}.json" for n in range(1100)]

    def commit(version: int, changed: list[str], deleted: list[str], age_hours: float) -> None:
        blobs = [encode(content(p, version)) for p in changed]
        setup.put_blobs(blobs)
        entries = [
            StoredEntry(p, b.sha256, b.size_bytes, 0o600, version)
            for p, b in zip(changed, blobs, strict=True)
        ]
        backdate(db, setup.commit("i", epoch, "me", entries, deleted).commit_id, age_hours)

    commit(1, names, [], 200)
    commit(2, names[:500], names[500:], 190)  # the horizon commit: 600 tombstones
    commit(3, names[:1], [], 1)
    db.sql("UPDATE waha_sync_blobs SET used_at = now() - INTERVAL '2 hours'")

    def tree(cid: int) -> list[StoredEntry]:
        return [e for page in store.tree("i", cid) for e in page]

    before = {cid: tree(cid) for cid in (2, 3)}
    assert [len(t) for t in before.values()] == [500, 500]
    batches: list[GcBatch] = list(store.collect_garbage("i", WEEK, timedelta(hours=1)))

    def total(field: str) -> int:
        return sum(getattr(b, field) for b in batches)

    assert [total(f) for f in ("versions", "tombstones", "entries", "commits", "blobs")] == [
        1100, 600, 600, 1, 1100,
    ]  # fmt: skip
    assert all(b.versions + b.tombstones <= 500 and b.entries <= 500 for b in batches)
    assert all(b.blobs <= 500 for b in batches)
    assert len([b for b in batches if b.blobs]) >= 3 and len([b for b in batches if b.entries]) == 2
    assert db.sql("SELECT count(*) FROM waha_sync_versions")[0][0] == 501
    assert db.sql("SELECT count(*) FROM waha_sync_blobs")[0][0] == 501
    assert {cid: tree(cid) for cid in (2, 3)} == before
    assert list(store.collect_garbage("i", WEEK, timedelta(hours=1))) == []


def test_gc_command(db: DbTarget, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "s"
    put(root, "creds.json", 1)
    put(root, "old.json", 1)
    push(db, root, 300)
    put(root, "creds.json", 2)
    (root / "old.json").unlink()
    push(db, root, 200)
    put(root, "creds.json", 3)
    push(db, root, 0)
    assert schema_version(Database(parse_url(db.url))) == LATEST == 4
    db.sql("UPDATE waha_sync_blobs SET used_at = now() - INTERVAL '2 hours'")
    capsys.readouterr()

    assert db.cli("gc") == 0
    assert (
        "[SYNC] gc done: instance default: deleted 2 old versions, 2 tombstones, 1 commit, "
        "2 unreferenced blobs" in capsys.readouterr().err
    )
    assert stored(db, sha("old.json", 1)) == stored(db, sha("creds.json", 1)) == (0, 0)
    assert db.sql("SELECT path, commit_id FROM waha_sync_versions ORDER BY commit_id") == [
        ["creds.json", 2],
        ["creds.json", 3],
    ]
    assert db.cli("gc") == 0
    assert "gc done: instance default: nothing to delete" in capsys.readouterr().err

    db.sql("UPDATE waha_sync_commits SET created_at = now() - INTERVAL '2 hours' WHERE id = 3")
    assert db.cli("gc", "--retention-hours", "1") == 0
    assert db.sql("SELECT path, commit_id FROM waha_sync_versions") == [["creds.json", 3]]
    assert [r[0] for r in db.sql("SELECT id FROM waha_sync_commits")] == [3]
    assert stored(db, sha("creds.json", 2)) == (0, 0) and stored(db, sha("creds.json", 3)) == (1, 1)
    out = tmp_path / "out"
    assert db.cli("restore", "--sessions-dir", str(out)) == 0
    assert shas(tree_digest(out)) == {"creds.json": sha("creds.json", 3)}


def test_sidecar_collects_old_history_in_the_background(plain_db: DbTarget, tmp_path: Path) -> None:
    vol = tmp_path / "vol"
    vol.mkdir()
    (vol / "creds.json").write_text('{"v": 1}')
    assert plain_db.cli("push", "--sessions-dir", str(vol)) == 0
    (vol / "creds.json").write_text('{"v": 2, "newer": true}')
    assert plain_db.cli("push", "--sessions-dir", str(vol)) == 0
    old = "now() - interval '3 days'"
    plain_db.sql(f"UPDATE waha_sync_commits SET created_at = {old}")
    plain_db.sql(f"UPDATE waha_sync_blobs SET used_at = {old}")
    assert plain_db.sql("SELECT count(*) FROM waha_sync_versions")[0][0] == 2
    side = SidecarProc(
        plain_db,
        vol,
        tmp_path / "side.log",
        WAHA_SYNC_GC_INTERVAL_SECONDS="1",
        WAHA_SYNC_RETENTION_HOURS="24",
    ).start()
    side.ready()
    wait_until(lambda: plain_db.sql("SELECT count(*) FROM waha_sync_versions")[0][0] == 1)
    wait_until(lambda: plain_db.sql("SELECT count(*) FROM waha_sync_blobs")[0][0] == 1)
    side.stop_ok()
    assert "gc done: instance default: deleted 1 old version," in side.log()
    got = plain_db.sql("SELECT size_bytes FROM waha_sync_entries WHERE path = 'creds.json'")
    assert got == [[len('{"v": 2, "newer": true}')]]  # the live tree is untouched

"""One contract suite for every ``Store``: ``MemoryStore`` and ``PgStore`` (in both database
modes of ``tests/conftest.py``: plain PostgreSQL, and crdb-like with injected 40001).

Each test states behaviour of ``waha_sync.common.store.base.Store`` and checks it through
the Protocol alone, so the in-memory store the fast engine tests use is held to what the
database does. Where the two legitimately differ, the test says so. Time: ``Subject.age``
makes everything stored so far older (PostgreSQL: ``created_at``/``used_at`` moved back;
memory: its clock moved forward), ``Subject.now`` is the store's clock.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

import pytest

from tests.support.dbtarget import CHAOS_RATE
from waha_sync.common.db.database import Database, Tx
from waha_sync.common.db.retry import RetryPolicy
from waha_sync.common.db.url import parse_url
from waha_sync.common.errors import FencedError, IntegrityError
from waha_sync.common.store.base import GcBatch, Instance, Store, StoredEntry
from waha_sync.common.store.memory import MemoryStore
from waha_sync.common.store.postgres import PgStore
from waha_sync.common.sync.content import CHUNK_BYTES, decode, encode

PAGE = 1000  # PgStore's and MemoryStore's page of live_entries and tree
WEEK = timedelta(hours=168)
HOUR = timedelta(hours=1)


class Clock:
    """A MemoryStore's database clock, moved forward by the test."""

    def __init__(self) -> None:
        self.at = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.at


@dataclass
class Subject:
    kind: str  # "memory", "postgresql" or "crdb-like"
    store: Store
    age: Callable[[float], None]  # hours: everything stored so far becomes that much older
    now: Callable[[], datetime]


@pytest.fixture(params=["memory", "postgresql", "crdb-like"])
def subject(request: pytest.FixtureRequest) -> Iterator[Subject]:
    """A fresh, empty store of each kind (PostgreSQL: a new database, as the `db` fixture
    makes one; asked for lazily, so the memory cases never start a server)."""
    if request.param == "memory":
        clock = Clock()

        def forward(hours: float) -> None:
            clock.at += timedelta(hours=hours)

        yield Subject("memory", MemoryStore(clock), forward, clock)
        return
    crdb = request.param == "crdb-like"
    url = request.getfixturevalue("pg_server").create_database(serializable=crdb)
    retry = RetryPolicy(attempts=20, base_seconds=0.001)
    store = PgStore(
        Database(parse_url(url), chaos_40001_rate=CHAOS_RATE if crdb else 0.0, retry=retry)
    )
    store.ensure_schema()
    admin = Database(parse_url(url))

    def back(hours: float) -> None:
        def run(tx: Tx) -> None:
            a = f"{hours} hours"
            tx.run(
                "UPDATE waha_sync_commits SET created_at = created_at - CAST(:a AS INTERVAL)", a=a
            )
            tx.run("UPDATE waha_sync_blobs SET used_at = used_at - CAST(:a AS INTERVAL)", a=a)

        admin.transaction(run)

    try:
        yield Subject(request.param, store, back, lambda: datetime.now(UTC))
    finally:
        store.close()
        admin.close()


# -- helpers --


def blob_entry(path: str, data: bytes, mode: int = 0o644, mtime_ns: int = 1) -> StoredEntry:
    return StoredEntry(path, hashlib.sha256(data).hexdigest(), len(data), mode, mtime_ns, "x/y")


def put_files(s: Subject, files: dict[str, bytes]) -> list[StoredEntry]:
    """Blobs stored for ``files``; the entries to commit."""
    s.store.put_blobs([encode(d) for d in files.values()])
    return [blob_entry(p, d) for p, d in files.items()]


def claim(s: Subject, name: str = "inst", holder: str = "h/test[1]") -> Instance:
    return s.store.claim(name, holder)


def live(s: Subject, name: str = "inst") -> dict[str, StoredEntry]:
    return {e.path: e for page in s.store.live_entries(name) for e in page}


def tree(s: Subject, cid: int, name: str = "inst") -> dict[str, str]:
    return {e.path: e.sha256 for page in s.store.tree(name, cid) for e in page}


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def piece(idx: int, data: bytes) -> tuple[int, bytes, str, bytes]:
    return (idx, hashlib.sha256(data).digest(), "identity", data)


def pieced_entry(path: str, size: int, pb: int) -> StoredEntry:
    return StoredEntry(path, "list-" + path + str(size), size, 0o600, 2, None, piece_bytes=pb)


def gc(s: Subject, retention: timedelta = WEEK, grace: timedelta = HOUR) -> GcBatch:
    """The sum of one collection's batches."""
    total: dict[str, int] = {}
    for b in s.store.collect_garbage("inst", retention, grace):
        for k in ("versions", "tombstones", "entries", "commits", "blobs", "pieces"):
            total[k] = total.get(k, 0) + getattr(b, k)
        total["bytes_freed"] = total.get("bytes_freed", 0) + b.bytes_freed
    return GcBatch(**total)


# -- identity, schema, claims --


def test_database_id_is_made_once_and_stays(subject: Subject) -> None:
    first = subject.store.database_id()
    assert len(first) == 32 and int(first, 16) >= 0
    subject.store.ensure_schema()  # idempotent
    subject.store.close()  # the next call reconnects (memory: the data simply stays)
    assert subject.store.database_id() == first


def test_claim_takes_a_new_higher_epoch(subject: Subject) -> None:
    st = subject.store
    assert st.instance("inst") is None
    one = st.claim("inst", "a/restore[1]")
    assert (one.name, one.epoch, one.holder, one.last_commit) == ("inst", 1, "a/restore[1]", 0)
    assert one.claimed_at is not None
    two = st.claim("inst", "b/push[2]")
    assert (two.epoch, two.holder) == (2, "b/push[2]")
    assert st.instance("inst") == two
    assert st.claim("other", "c/push[3]").epoch == 1  # instances are independent
    assert st.instance("inst") == two


def test_commit_ids_are_gap_free(subject: Subject) -> None:
    inst = claim(subject)
    ids = []
    for n in range(4):
        changed = put_files(subject, {f"f{n}": f"v{n}".encode()})
        r = subject.store.commit("inst", inst.epoch, inst.holder, changed, [])
        assert (r.files_changed, r.files_deleted) == (1, 0)
        ids.append(r.commit_id)
    empty = subject.store.commit("inst", inst.epoch, inst.holder, [], [])  # still a commit
    assert [*ids, empty.commit_id] == [1, 2, 3, 4, 5]
    again = claim(subject)  # a new claim goes on from the last commit
    assert again.last_commit == 5
    assert subject.store.commit("inst", again.epoch, again.holder, [], []).commit_id == 6
    got = subject.store.instance("inst")
    assert got is not None and got.last_commit == 6


def test_a_superseded_epoch_cannot_commit(subject: Subject) -> None:
    st = subject.store
    old = claim(subject, holder="a/sidecar[1]")
    st.commit("inst", old.epoch, old.holder, put_files(subject, {"keep": b"1"}), [])
    new = claim(subject, holder="b/restore[2]")
    with pytest.raises(FencedError) as caught:
        st.commit("inst", old.epoch, old.holder, put_files(subject, {"lost": b"2"}), ["keep"])
    assert "b/restore[2] (epoch 2)" in caught.value.message
    assert "holds epoch 1" in caught.value.message
    assert caught.value.hint
    now = st.instance("inst")
    assert now is not None and now.last_commit == 1  # nothing was written
    assert set(live(subject)) == {"keep"}
    assert st.commit("inst", new.epoch, new.holder, [], ["keep"]).commit_id == 2  # no gap
    with pytest.raises(FencedError, match=r"nobody \(no lease row\)"):
        st.commit("never-claimed", 1, "x", [], [])
    assert st.instance("never-claimed") is None


def test_a_superseded_epoch_cannot_write_pieces(subject: Subject) -> None:
    st = subject.store
    old = claim(subject)
    first = st.put_pieces("inst", old.epoch, None, "db", [piece(0, b"aaaa")])
    assert first == 1
    new = claim(subject)
    with pytest.raises(FencedError):
        st.put_pieces("inst", old.epoch, first, "db", [piece(1, b"bbbb")])
    with pytest.raises(FencedError):
        st.put_pieces("inst", old.epoch, None, "db", [piece(1, b"bbbb")])
    with pytest.raises(FencedError):
        st.begin_pieces("inst", old.epoch)
    # Nothing of the fenced writer's: the new holder's upload starts clean.
    assert st.begin_pieces("inst", new.epoch) == 1
    st.put_pieces("inst", new.epoch, 1, "db", [piece(0, b"cccc")])
    st.commit("inst", new.epoch, new.holder, [pieced_entry("db", 4, 4)], [], pieces_for=1)
    assert st.piece_data("inst", "db", 1, 0, 1) == [piece(0, b"cccc")]
    with pytest.raises(IntegrityError):
        st.piece_data("inst", "db", 1, 0, 2)  # piece 1 of the fenced writer never landed


def test_pieces_numbered_for_a_commit_another_writer_took_are_fenced(subject: Subject) -> None:
    st = subject.store
    inst = claim(subject)
    cid = st.begin_pieces("inst", inst.epoch)
    assert cid == 1
    st.put_pieces("inst", inst.epoch, cid, "db", [piece(0, b"aaaa")])
    st.commit("inst", inst.epoch, inst.holder, [], [])  # another writer of this epoch: 1
    with pytest.raises(FencedError):
        st.put_pieces("inst", inst.epoch, cid, "db", [piece(1, b"bbbb")])
    with pytest.raises(FencedError):
        st.commit("inst", inst.epoch, inst.holder, [pieced_entry("db", 8, 4)], [], pieces_for=cid)
    got = st.instance("inst")
    assert got is not None and got.last_commit == 1  # the fenced commit wrote nothing
    assert "db" not in live(subject)


# -- the tree: current state, history, tombstones, pages --


def test_live_entries_tree_and_commit_history(subject: Subject) -> None:
    st = subject.store
    inst = claim(subject)
    c1 = st.commit(
        "inst", inst.epoch, inst.holder, put_files(subject, {"a": b"a1", "b": b"b1"}), []
    )
    a2 = put_files(subject, {"a": b"a2" * 500})
    c2 = st.commit("inst", inst.epoch, inst.holder, a2, ["b"])
    assert (c2.files_changed, c2.files_deleted) == (1, 1)
    c3 = st.commit("inst", inst.epoch, inst.holder, put_files(subject, {"c/d": b"cd"}), [])
    assert tree(subject, 0) == {}
    assert tree(subject, c1.commit_id) == {"a": sha(b"a1"), "b": sha(b"b1")}
    assert tree(subject, c2.commit_id) == {"a": sha(b"a2" * 500)}
    assert tree(subject, c3.commit_id) == {"a": sha(b"a2" * 500), "c/d": sha(b"cd")}
    now = live(subject)
    assert list(now) == ["a", "c/d"]  # path order
    a = now["a"]
    blob = encode(b"a2" * 500)
    assert (a.sha256, a.size_bytes, a.mode, a.mtime_ns, a.mime) == (
        sha(b"a2" * 500),
        1000,
        0o644,
        1,
        "x/y",
    )
    assert (a.codec, a.stored_bytes, a.piece_bytes) == (blob.codec, blob.stored_bytes, None)
    assert a.codec == "zstd" and a.stored_bytes < 1000
    assert a.updated_at is not None and a.commit_id == c2.commit_id
    assert now["c/d"].commit_id == c3.commit_id
    old = [e for page in st.tree("inst", c1.commit_id) for e in page]
    assert [(e.path, e.commit_id, e.updated_at) for e in old] == [("a", 1, None), ("b", 1, None)]


def test_tombstones(subject: Subject) -> None:
    st = subject.store
    inst = claim(subject)
    st.commit("inst", inst.epoch, inst.holder, put_files(subject, {"x": b"x", "y": b"y"}), [])
    r = st.commit("inst", inst.epoch, inst.holder, [], ["x", "never-stored"])
    assert (r.commit_id, r.files_changed, r.files_deleted) == (2, 0, 1)  # only what was live
    again = st.commit("inst", inst.epoch, inst.holder, [], ["x"])
    assert again.files_deleted == 0  # already a tombstone
    assert set(live(subject)) == {"y"}
    back = st.commit("inst", inst.epoch, inst.holder, put_files(subject, {"x": b"x2"}), [])
    assert live(subject)["x"].sha256 == sha(b"x2")
    assert tree(subject, 2) == {"y": sha(b"y")}
    assert tree(subject, back.commit_id) == {"x": sha(b"x2"), "y": sha(b"y")}


def test_a_refused_commit_writes_nothing(subject: Subject) -> None:
    """A path twice in one batch is refused as a whole. The error differs: PostgreSQL's
    own (a row upserted twice) from PgStore, ``ValueError`` from MemoryStore."""
    st = subject.store
    inst = claim(subject)
    st.commit("inst", inst.epoch, inst.holder, put_files(subject, {"p": b"1"}), [])
    with pytest.raises(Exception) as caught:
        st.commit(
            "inst", inst.epoch, inst.holder, put_files(subject, {"p": b"2", "q": b"3"}), ["p"]
        )
    assert not isinstance(caught.value, FencedError)
    if subject.kind == "memory":
        assert isinstance(caught.value, ValueError)
    got = st.instance("inst")
    assert got is not None and got.last_commit == 1
    assert {p: e.sha256 for p, e in live(subject).items()} == {"p": sha(b"1")}


def test_reads_come_in_pages_in_path_order(subject: Subject) -> None:
    st = subject.store
    inst = claim(subject)
    paths = [f"d{n % 7}/f{n:05d}" for n in range(2 * PAGE + 150)]
    entries = [StoredEntry(p, sha(p.encode()), 1, 0o644, n) for n, p in enumerate(paths)]
    st.commit("inst", inst.epoch, inst.holder, entries, [])  # content need not be stored
    pages = list(st.live_entries("inst"))
    assert [len(p) for p in pages] == [PAGE, PAGE, 150]
    assert [e.path for p in pages for e in p] == sorted(paths)
    gone = sorted(paths)[PAGE - 10 : PAGE + 500]  # the tree's pages count tombstones too
    st.commit("inst", inst.epoch, inst.holder, [], gone)
    shown = [[e.path for e in p] for p in st.tree("inst", 2)]
    assert all(shown)  # no empty page
    assert [p for page in shown for p in page] == sorted(set(paths) - set(gone))
    assert [len(p) for p in shown] == [PAGE - 10, PAGE - 500, 150]
    assert sum(len(p) for p in st.tree("inst", 1)) == len(paths)
    assert list(st.live_entries("nobody")) == [] and list(st.tree("nobody", 5)) == []


def test_commit_at_finds_the_last_commit_at_or_before_a_time(subject: Subject) -> None:
    st = subject.store
    inst = claim(subject)
    assert st.commit_at("inst", subject.now()) is None
    st.commit("inst", inst.epoch, inst.holder, [], [])
    subject.age(10)
    st.commit("inst", inst.epoch, inst.holder, [], [])
    subject.age(1)
    st.commit("inst", inst.epoch, inst.holder, [], [])
    now = subject.now()
    assert st.commit_at("inst", now - timedelta(hours=12)) is None
    assert st.commit_at("inst", now - timedelta(hours=5)) == 1
    assert st.commit_at("inst", now - timedelta(minutes=30)) == 2
    assert st.commit_at("inst", now + timedelta(minutes=1)) == 3
    assert st.commit_at("other", now) is None


# -- content --


def test_blobs_missing_put_and_read(subject: Subject) -> None:
    st = subject.store
    small, big = b"hello " * 100, os.urandom(2 * CHUNK_BYTES + 1000)  # big: 3 chunks
    blobs = [encode(small), encode(big)]
    assert len(blobs[1].chunks) == 3
    shas = [b.sha256 for b in blobs]
    assert st.missing_blobs(shas + shas) == set(shas)
    assert st.missing_blobs([]) == set()
    st.put_blobs(blobs[:1])
    assert st.missing_blobs(shas) == {shas[1]}
    st.put_blobs(blobs + blobs)  # idempotent, duplicates harmless
    assert st.missing_blobs(shas) == set()
    entries = [blob_entry("s", small), blob_entry("b", big), blob_entry("s2", small)]
    got = st.read_blobs(entries)
    assert set(got) == set(shas)
    assert got[shas[1]] == list(blobs[1].chunks)
    assert decode(shas[1], len(big), "identity", got[shas[1]], "b") == big
    assert decode(shas[0], len(small), blobs[0].codec, got[shas[0]], "s") == small
    unknown = blob_entry("u", b"never stored")
    assert st.read_blobs([unknown]) == {unknown.sha256: []}  # decode then fails, by path


# -- pieces --


def test_piece_lists_are_the_newest_row_at_or_before_a_commit(subject: Subject) -> None:
    st = subject.store
    inst = claim(subject)
    cid = st.begin_pieces("inst", inst.epoch)
    assert cid == 1
    v1 = [piece(0, b"aaaa"), piece(1, b"bbbb"), piece(2, b"cc")]
    assert st.put_pieces("inst", inst.epoch, cid, "db", v1) == 1
    assert st.put_pieces("inst", inst.epoch, cid, "db", v1) == 1  # idempotent
    st.commit("inst", inst.epoch, inst.holder, [pieced_entry("db", 10, 4)], [], pieces_for=1)
    # Version 2 rewrites piece 1 only; the first put of an upload may begin it (None).
    assert st.put_pieces("inst", inst.epoch, None, "db", [piece(1, b"BBBB")]) == 2
    st.commit("inst", inst.epoch, inst.holder, [pieced_entry("db", 10, 4)], [], pieces_for=2)
    assert st.piece_data("inst", "db", 1, 0, 3) == v1
    assert st.piece_data("inst", "db", 2, 0, 3) == [v1[0], piece(1, b"BBBB"), v1[2]]
    assert st.piece_data("inst", "db", 2, 1, 2) == [piece(1, b"BBBB")]
    assert st.piece_data("inst", "db", 2, 3, 3) == []
    digests = b"".join(st.piece_digests("inst", "db", 2, 3))
    assert digests == v1[0][1] + piece(1, b"BBBB")[1] + v1[2][1]
    assert list(st.piece_digests("inst", "db", 2, 0)) == []
    with pytest.raises(IntegrityError, match=r"db: stored pieces 0\.\.3 are incomplete"):
        list(st.piece_digests("inst", "db", 2, 4))
    with pytest.raises(IntegrityError):
        st.piece_data("inst", "db", 0, 0, 1)  # nothing at or before commit 0
    with pytest.raises(IntegrityError):
        st.piece_data("inst", "other", 2, 0, 1)
    assert live(subject)["db"].piece_bytes == 4 and live(subject)["db"].commit_id == 2


def test_an_unfinished_upload_is_cleared_by_the_next(subject: Subject) -> None:
    st = subject.store
    inst = claim(subject)
    st.put_pieces("inst", inst.epoch, None, "db", [piece(0, b"aaaa"), piece(1, b"bb")])
    st.commit("inst", inst.epoch, inst.holder, [pieced_entry("db", 6, 4)], [], pieces_for=1)
    # An upload that never committed (a crash): rows under commit 2.
    st.put_pieces("inst", inst.epoch, None, "db", [piece(0, b"XXXX")])
    st.put_pieces("inst", inst.epoch, 2, "other", [piece(0, b"YYYY")])
    assert st.piece_data("inst", "db", 2, 0, 1) == [piece(0, b"XXXX")]  # visible by number
    assert st.usage("inst")["db"] == (6, 6)  # not counted: above the last commit
    assert st.begin_pieces("inst", inst.epoch) == 2  # the next upload clears them
    assert st.piece_data("inst", "db", 2, 0, 2) == [piece(0, b"aaaa"), piece(1, b"bb")]
    with pytest.raises(IntegrityError):
        st.piece_data("inst", "other", 2, 0, 1)
    # put_pieces(None) begins the same way.
    st.put_pieces("inst", inst.epoch, 2, "other", [piece(0, b"YYYY")])
    st.put_pieces("inst", inst.epoch, None, "db", [piece(1, b"cc")])
    with pytest.raises(IntegrityError):
        st.piece_data("inst", "other", 2, 0, 1)
    # A commit drops rows of its number that belong to no pieced entry it records.
    st.put_pieces("inst", inst.epoch, 2, "stray", [piece(0, b"ZZZZ")])
    st.commit("inst", inst.epoch, inst.holder, [pieced_entry("db", 6, 4)], [], pieces_for=2)
    assert st.piece_data("inst", "db", 2, 0, 2) == [piece(0, b"aaaa"), piece(1, b"cc")]
    with pytest.raises(IntegrityError):
        st.piece_data("inst", "stray", 2, 0, 1)
    # A commit without pieces drops rows at or above its number too.
    st.put_pieces("inst", inst.epoch, None, "db", [piece(0, b"WWWW")])
    st.commit("inst", inst.epoch, inst.holder, [], [])
    assert st.piece_data("inst", "db", 3, 0, 1) == [piece(0, b"aaaa")]


# -- usage --


def test_usage_counts_live_and_retained_bytes_per_path(subject: Subject) -> None:
    st = subject.store
    inst = claim(subject)
    b1, b2 = encode(b"one" * 300), encode(b"two" * 400)
    st.put_blobs([b1, b2])
    e1, e2 = blob_entry("f", b"one" * 300), blob_entry("f", b"two" * 400)
    st.commit("inst", inst.epoch, inst.holder, [e1, replace(e1, path="same")], [])
    st.commit("inst", inst.epoch, inst.holder, [e2], [])
    st.put_pieces("inst", inst.epoch, None, "db", [piece(0, b"aaaa"), piece(1, b"bb")])
    st.commit("inst", inst.epoch, inst.holder, [pieced_entry("db", 6, 4)], [], pieces_for=3)
    st.put_pieces("inst", inst.epoch, None, "db", [piece(1, b"cc")])
    st.commit("inst", inst.epoch, inst.holder, [pieced_entry("db", 6, 4)], ["same"], pieces_for=4)
    got = st.usage("inst")
    assert got["f"] == (b2.stored_bytes, b1.stored_bytes + b2.stored_bytes)
    assert got["same"] == (0, b1.stored_bytes)  # deleted, its history retained
    assert got["db"] == (6, 8)  # live: pieces 0 (4) and the new 1 (2); history adds 2
    assert set(got) == {"f", "same", "db"}
    assert st.usage("nobody") == {}


# -- garbage collection --


def test_gc_keeps_every_state_from_the_horizon_on(subject: Subject) -> None:
    st = subject.store
    inst = claim(subject)
    st.commit("inst", inst.epoch, inst.holder, put_files(subject, {"a": b"a1", "b": b"b1"}), [])
    st.commit("inst", inst.epoch, inst.holder, put_files(subject, {"a": b"a2"}), ["b"])
    subject.age(200)
    st.commit("inst", inst.epoch, inst.holder, put_files(subject, {"a": b"a3", "c": b"c3"}), [])
    horizon = st.commit_at("inst", subject.now() - WEEK)
    assert horizon == 2
    before = {c: tree(subject, c) for c in (2, 3)}
    now = {p: e.sha256 for p, e in live(subject).items()}
    freed = sum(encode(d).stored_bytes for d in (b"a1", b"b1"))
    assert gc(subject) == GcBatch(
        versions=2,  # a@1 (a@2 replaces it), b@1 (its tombstone replaces it)
        tombstones=1,  # b's tombstone: all that was left of b at the horizon
        entries=1,  # b's tombstone row in the current state
        commits=1,  # commit 1
        blobs=2,  # a1 and b1: nothing refers to them any more
        bytes_freed=freed,
    )
    assert {c: tree(subject, c) for c in (2, 3)} == before
    assert {p: e.sha256 for p, e in live(subject).items()} == now
    assert st.commit_at("inst", subject.now() - WEEK) == 2
    assert st.missing_blobs([sha(b"a1"), sha(b"a2"), sha(b"a3")]) == {sha(b"a1")}
    assert gc(subject) == GcBatch()  # nothing more to do


def test_gc_spares_content_in_use_within_grace(subject: Subject) -> None:
    st = subject.store
    inst = claim(subject)
    orphan, relied = encode(b"orphan"), encode(b"relied on")
    st.put_blobs([orphan, relied])
    assert gc(subject) == GcBatch()  # put just now: within the grace period
    subject.age(2)
    assert st.missing_blobs([relied.sha256]) == set()  # marks it in use
    assert gc(subject) == GcBatch(blobs=1, bytes_freed=orphan.stored_bytes)
    st.commit("inst", inst.epoch, inst.holder, [blob_entry("r", b"relied on")], [])
    subject.age(2)
    assert gc(subject) == GcBatch()  # referenced: kept however old
    assert st.read_blobs([blob_entry("r", b"relied on")])[relied.sha256] == list(relied.chunks)
    st.commit("inst", inst.epoch, inst.holder, [], ["r"])
    subject.age(2)
    assert gc(subject).blobs == 0  # its history (and its tombstone row) still name it


def test_gc_drops_pieces_the_horizon_version_does_not_use(subject: Subject) -> None:
    st = subject.store
    inst = claim(subject)
    v1 = [piece(0, b"aaaa"), piece(1, b"bbbb"), piece(2, b"cc")]
    st.put_pieces("inst", inst.epoch, None, "db", v1)
    st.commit("inst", inst.epoch, inst.holder, [pieced_entry("db", 10, 4)], [], pieces_for=1)
    st.put_pieces("inst", inst.epoch, None, "db", [piece(1, b"BBBB")])  # shrinks to 8 bytes
    st.commit("inst", inst.epoch, inst.holder, [pieced_entry("db", 8, 4)], [], pieces_for=2)
    subject.age(200)
    st.put_pieces("inst", inst.epoch, None, "db", [piece(0, b"AAAA")])
    st.commit("inst", inst.epoch, inst.holder, [pieced_entry("db", 8, 4)], [], pieces_for=3)
    at2 = st.piece_data("inst", "db", 2, 0, 2)
    at3 = st.piece_data("inst", "db", 3, 0, 2)
    # b"bbbb" replaced at the horizon, b"cc" past the horizon version's end.
    assert gc(subject) == GcBatch(versions=1, commits=1, pieces=2, bytes_freed=6)
    assert st.piece_data("inst", "db", 2, 0, 2) == at2
    assert st.piece_data("inst", "db", 3, 0, 2) == at3
    assert st.usage("inst")["db"] == (8, 12)


def test_gc_with_no_commit_old_enough_only_collects_content(subject: Subject) -> None:
    st = subject.store
    inst = claim(subject)
    st.commit("inst", inst.epoch, inst.holder, put_files(subject, {"a": b"1"}), [])
    st.commit("inst", inst.epoch, inst.holder, put_files(subject, {"a": b"2"}), [])
    st.put_blobs([encode(b"loose")])
    subject.age(2)
    assert gc(subject) == GcBatch(blobs=1, bytes_freed=encode(b"loose").stored_bytes)
    assert tree(subject, 1) == {"a": sha(b"1")}
    assert list(st.collect_garbage("nobody", WEEK, HOUR)) == []


# -- concurrency --


def test_concurrent_commits_of_one_epoch_are_numbered_without_gaps(subject: Subject) -> None:
    """One store shared by threads. PgStore holds one connection and is not thread-safe,
    so each thread opens its own on the same database there; MemoryStore takes a lock."""
    inst = claim(subject)
    stores: list[Store] = []
    for _ in range(4):
        if isinstance(subject.store, PgStore):
            db = subject.store.db
            stores.append(PgStore(Database(db.params, chaos_40001_rate=db.chaos_rate)))
        else:
            stores.append(subject.store)
    got: list[int] = []

    def work(st: Store, n: int) -> None:
        for i in range(5):
            e = StoredEntry(f"t{n}/{i}", sha(b"%d" % i), 1, 0o644, i)
            got.append(st.commit("inst", inst.epoch, inst.holder, [e], []).commit_id)

    threads = [threading.Thread(target=work, args=(st, n)) for n, st in enumerate(stores)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for st in stores:
        if st is not subject.store:
            st.close()
    assert sorted(got) == list(range(1, 21))
    assert len(live(subject)) == 20


# -- MemoryStore only: its page and GC step sizes (PgStore's are module constants) --


def test_memory_store_pages_and_gc_steps_of_any_size_give_the_same_result() -> None:
    def run(st: MemoryStore, clock: Clock) -> tuple[list[int], GcBatch, dict[str, str]]:
        inst = st.claim("inst", "h")
        for n in range(4):
            changed = [
                StoredEntry(f"f{i:02d}", sha(b"%d.%d" % (i, n)), 1, 0o644, n) for i in range(9)
            ]
            st.put_blobs([encode(b"%d.%d" % (i, n)) for i in range(9)])
            st.commit("inst", inst.epoch, inst.holder, changed, [f"g{n}"])
            clock.at += timedelta(hours=100)
        sizes = [len(p) for p in st.live_entries("inst")]
        total = GcBatch()
        for b in st.collect_garbage("inst", WEEK, HOUR):
            total = GcBatch(
                *(getattr(total, k) + getattr(b, k) for k in GcBatch.__dataclass_fields__)
            )
        return sizes, total, {e.path: e.sha256 for p in st.tree("inst", 4) for e in p}

    small_clock, big_clock = Clock(), Clock()
    small = run(MemoryStore(small_clock, page=4, gc_rows=2), small_clock)
    big = run(MemoryStore(big_clock), big_clock)
    assert small[0] == [4, 4, 1] and big[0] == [9]
    assert small[1] == big[1] and small[1].versions == 18 and small[1].blobs == 18
    assert small[2] == big[2] and len(small[2]) == 9

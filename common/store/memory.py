"""``Store`` in this process's memory, for fast engine tests (not a product backend).

``MemoryStore`` implements the whole ``waha_sync.common.store.base.Store`` contract with
``PgStore``'s semantics, so the sync engine (push, ship, restore, gc) can be tested in
one process without PostgreSQL: the same claims and fencing epochs, gap-free commit
numbers, tombstones, version history, blobs marked in use, pieces written under
``last_commit + 1`` and cleared by the next upload, "newest piece row at or before C"
lists, usage and garbage collection with a horizon. ``tests/test_store_contract.py``
runs one suite against it and ``PgStore``.

Its tables are dictionaries guarded by one lock: every method, and every page of a paged
read or garbage collection, is one atomic step, as a transaction is on the database.
Nothing survives the process; ``close`` keeps the data (a new connection to the same
database). ``DatabaseUnavailable`` is never raised and there is no 40001 to retry. A
commit naming a path twice (in ``changed``, or in ``changed`` and ``deleted``) raises
``ValueError`` and writes nothing; PostgreSQL refuses it too, with its own error.
Time is ``clock()`` (UTC, timezone-aware; ``datetime.now`` unless given), the database
clock of this store: a test advances it to age commits for ``commit_at`` and the GC
horizon. Paths sort by code point (PostgreSQL sorts by the database collation, which is
the same under ``C``).
"""

from __future__ import annotations

import secrets
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import NoReturn

from waha_sync.common.errors import IntegrityError, writer_fenced
from waha_sync.common.store.base import CommitResult, GcBatch, Instance, StoredEntry
from waha_sync.common.sync.content import EncodedBlob

PAGE = 1000  # files per page of live_entries and tree, as PgStore
DIGEST_WINDOW = 8192  # piece indexes per window of piece_digests, as PgStore
GC_ROWS = 500  # rows one garbage-collection step looks at or deletes, as PgStore

PieceRow = tuple[bytes, str, bytes]  # raw sha256, codec, encoded bytes


@dataclass
class _Instance:
    epoch: int
    holder: str
    claimed_at: datetime | None
    last_commit: int = 0


@dataclass
class _Blob:
    size_bytes: int
    codec: str
    chunks: tuple[bytes, ...]
    used_at: datetime

    @property
    def stored_bytes(self) -> int:
        return sum(len(c) for c in self.chunks)


@dataclass(frozen=True)
class _Version:
    """One row of the history; ``sha256`` None is a tombstone."""

    sha256: str | None
    size_bytes: int
    mode: int
    mtime_ns: int
    mime: str | None
    piece_bytes: int | None


@dataclass
class _Entry:
    """The current state of one path; a tombstone keeps its last content's ``sha256``."""

    version: _Version
    deleted: bool
    commit_id: int
    first_uploaded_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class _Commit:
    epoch: int
    holder: str
    created_at: datetime
    files_changed: int
    files_deleted: int
    bytes_raw: int


@dataclass
class _Tables:
    """One instance's rows."""

    entries: dict[str, _Entry] = field(default_factory=dict)
    versions: dict[str, dict[int, _Version]] = field(default_factory=dict)  # path, commit
    commits: dict[int, _Commit] = field(default_factory=dict)
    pieces: dict[tuple[str, int], dict[int, PieceRow]] = field(default_factory=dict)


def _now() -> datetime:
    return datetime.now(UTC)


class MemoryStore:
    """The Store implementation over dictionaries in this process (tests only).

    ``clock``: the store's "database clock" (timezone-aware UTC ``datetime``); ``page``
    and ``gc_rows`` set how many rows one page or one GC step holds (PgStore's sizes
    unless given, smaller to exercise paging). Thread-safe: one lock.
    """

    def __init__(
        self,
        clock: Callable[[], datetime] = _now,
        *,
        page: int = PAGE,
        gc_rows: int = GC_ROWS,
    ) -> None:
        self.clock = clock
        self.page = page
        self.gc_rows = gc_rows
        self._lock = threading.RLock()
        self._id = ""
        self._instances: dict[str, _Instance] = {}
        self._tables: dict[str, _Tables] = {}
        self._blobs: dict[str, _Blob] = {}

    # -- connection and schema: nothing to do in memory --

    def close(self) -> None:
        """Nothing to release: the data stays (as a database outlives a connection)."""

    def ensure_schema(self) -> None:
        """Nothing to create: the tables are dictionaries."""

    def database_id(self) -> str:
        with self._lock:
            if not self._id:
                self._id = secrets.token_hex(16)
            return self._id

    # -- claims --

    def _t(self, name: str) -> _Tables:
        got = self._tables.get(name)
        if got is None:
            got = self._tables[name] = _Tables()
        return got

    def instance(self, name: str) -> Instance | None:
        with self._lock:
            i = self._instances.get(name)
            return (
                None
                if i is None
                else Instance(name, i.epoch, i.holder, i.last_commit, i.claimed_at)
            )

    def claim(self, name: str, holder: str) -> Instance:
        with self._lock:
            now = self.clock()
            i = self._instances.get(name)
            if i is None:
                i = self._instances[name] = _Instance(1, holder, now)
            else:
                i.epoch, i.holder, i.claimed_at = i.epoch + 1, holder, now
            return Instance(name, i.epoch, i.holder, i.last_commit, i.claimed_at)

    def _fenced(self, name: str, epoch: int) -> NoReturn:
        now = self._instances.get(name)
        raise writer_fenced(name, (now.holder, now.epoch) if now else None, epoch)

    def _fence(self, name: str, epoch: int) -> int:
        """The instance's last commit; ``FencedError`` if ``epoch`` is not the instance's."""
        i = self._instances.get(name)
        if i is None or i.epoch != epoch:
            self._fenced(name, epoch)
        return i.last_commit

    # -- reading the tree --

    def _entry(
        self, path: str, v: _Version, commit_id: int, updated: datetime | None
    ) -> StoredEntry:
        blob = self._blobs.get(v.sha256) if v.sha256 is not None else None
        return StoredEntry(
            path,
            v.sha256 or "",
            v.size_bytes,
            v.mode,
            v.mtime_ns,
            v.mime,
            blob.codec if blob else "",
            blob.stored_bytes if blob else 0,
            updated,
            v.piece_bytes,
            commit_id,
        )

    def _pages(
        self, step: Callable[[str | None], tuple[list[StoredEntry], str | None]]
    ) -> Iterator[list[StoredEntry]]:
        """Pages of ``step(after)`` (one locked step each, ``after`` None for the first);
        ``step`` returns the page and the last key it looked at (None: no more)."""
        after: str | None = None
        while True:
            with self._lock:
                page, after = step(after)
            if page:
                yield page
            if after is None:
                return

    @staticmethod
    def _next_keys(keys: Iterable[str], after: str | None, n: int) -> tuple[list[str], str | None]:
        chosen = sorted(k for k in keys if after is None or k > after)[:n]
        return chosen, (chosen[-1] if len(chosen) == n else None)

    def live_entries(self, name: str) -> Iterator[list[StoredEntry]]:
        def step(after: str | None) -> tuple[list[StoredEntry], str | None]:
            rows = self._t(name).entries
            live = (p for p, e in rows.items() if not e.deleted)
            keys, last = self._next_keys(live, after, self.page)
            page = [
                self._entry(p, rows[p].version, rows[p].commit_id, rows[p].updated_at) for p in keys
            ]
            return page, last

        return self._pages(step)

    def commit_at(self, name: str, when: datetime) -> int | None:
        with self._lock:
            ids = [c for c, row in self._t(name).commits.items() if row.created_at <= when]
            return max(ids) if ids else None

    def tree(self, name: str, commit_id: int) -> Iterator[list[StoredEntry]]:
        def step(after: str | None) -> tuple[list[StoredEntry], str | None]:
            history = self._t(name).versions
            known = (p for p, vs in history.items() if any(c <= commit_id for c in vs))
            keys, last = self._next_keys(known, after, self.page)
            page = []
            for p in keys:
                cid = max(c for c in history[p] if c <= commit_id)
                v = history[p][cid]
                if v.sha256 is not None:  # a tombstone: the path was deleted by then
                    page.append(self._entry(p, v, cid, None))
            return page, last

        return self._pages(step)

    # -- content --

    def missing_blobs(self, shas: Iterable[str]) -> set[str]:
        with self._lock:
            now = self.clock()
            missing = set()
            for sha in set(shas):
                blob = self._blobs.get(sha)
                if blob is None:
                    missing.add(sha)
                else:
                    blob.used_at = now
            return missing

    def put_blobs(self, blobs: Sequence[EncodedBlob]) -> None:
        with self._lock:
            now = self.clock()
            for b in blobs:
                have = self._blobs.get(b.sha256)
                if have is not None:  # stored already: only marked in use, as PgStore
                    have.used_at = now
                else:
                    chunks = tuple(bytes(c) for c in b.chunks)
                    self._blobs[b.sha256] = _Blob(b.size_bytes, b.codec, chunks, now)

    def read_blobs(self, entries: Sequence[StoredEntry]) -> dict[str, list[bytes]]:
        with self._lock:
            out: dict[str, list[bytes]] = {}
            for sha in sorted({e.sha256 for e in entries}):
                blob = self._blobs.get(sha)
                out[sha] = list(blob.chunks) if blob is not None else []
            return out

    # -- pieces --

    def _window(
        self, name: str, path: str, commit_id: int, lo: int, hi: int
    ) -> list[tuple[int, PieceRow]]:
        """Per index ``lo..hi-1``: the row of the highest commit at or before ``commit_id``;
        ``IntegrityError`` when any is missing."""
        pieces = self._t(name).pieces
        out = []
        for idx in range(lo, hi):
            rows = pieces.get((path, idx), {})
            best = max((c for c in rows if c <= commit_id), default=None)
            if best is None:
                found = len(
                    [
                        i
                        for i in range(lo, hi)
                        if any(c <= commit_id for c in pieces.get((path, i), {}))
                    ]
                )
                raise IntegrityError(
                    f"{path}: stored pieces {lo}..{hi - 1} are incomplete ({found} found)",
                    "push the file again from a good copy, or restore --at an earlier time",
                )
            out.append((idx, rows[best]))
        return out

    def piece_digests(self, name: str, path: str, commit_id: int, count: int) -> Iterator[bytes]:
        for lo in range(0, count, DIGEST_WINDOW):
            hi = min(count, lo + DIGEST_WINDOW)
            with self._lock:
                rows = self._window(name, path, commit_id, lo, hi)
            yield b"".join(r[0] for _, r in rows)

    def piece_data(
        self, name: str, path: str, commit_id: int, lo: int, hi: int
    ) -> list[tuple[int, bytes, str, bytes]]:
        with self._lock:
            rows = self._window(name, path, commit_id, lo, hi)
        return [(idx, sha, codec, data) for idx, (sha, codec, data) in rows]

    def _drop_pieces(self, name: str, keep: Callable[[str, int], bool]) -> None:
        """Delete the instance's piece rows for which ``keep(path, commit_id)`` is false."""
        pieces = self._t(name).pieces
        for key in list(pieces):
            rows = pieces[key]
            for cid in [c for c in rows if not keep(key[0], c)]:
                del rows[cid]
            if not rows:
                del pieces[key]

    def begin_pieces(self, name: str, epoch: int) -> int:
        with self._lock:
            last = self._fence(name, epoch)
            self._drop_pieces(name, lambda _p, c: c <= last)
            return last + 1

    def put_pieces(
        self,
        name: str,
        epoch: int,
        commit_id: int | None,
        path: str,
        rows: Sequence[tuple[int, bytes, str, bytes]],
    ) -> int:
        with self._lock:
            last = self._fence(name, epoch)
            if commit_id is None:  # the first rows of this upload: begin_pieces, in this step
                self._drop_pieces(name, lambda _p, c: c <= last)
            elif last + 1 != commit_id:
                self._fenced(name, epoch)
            pieces = self._t(name).pieces
            for idx, sha, codec, data in rows:
                pieces.setdefault((path, idx), {})[last + 1] = (bytes(sha), codec, bytes(data))
            return last + 1

    # -- commits --

    def commit(
        self,
        name: str,
        epoch: int,
        holder: str,
        changed: Sequence[StoredEntry],
        deleted: Sequence[str],
        pieces_for: int | None = None,
    ) -> CommitResult:
        paths = [e.path for e in changed]
        if len(set(paths)) != len(paths) or set(paths) & set(deleted):
            # PostgreSQL refuses these too (a row upserted twice, a version key twice).
            raise ValueError("commit: a path occurs twice among changed and deleted")
        with self._lock:
            last = self._fence(name, epoch)
            cid = last + 1
            if pieces_for is not None and cid != pieces_for:
                self._fenced(name, epoch)  # another writer of this epoch committed meanwhile
            t = self._t(name)
            now = self.clock()
            pieced = {e.path for e in changed if e.piece_bytes is not None}
            self._drop_pieces(name, lambda p, c: c < cid or (c == cid and p in pieced))
            for e in changed:
                v = _Version(e.sha256, e.size_bytes, e.mode, e.mtime_ns, e.mime, e.piece_bytes)
                old = t.entries.get(e.path)
                first = now if old is None or old.deleted else old.first_uploaded_at
                t.entries[e.path] = _Entry(v, False, cid, first, now)
                t.versions.setdefault(e.path, {})[cid] = v
            gone = 0
            for path in dict.fromkeys(deleted):
                old = t.entries.get(path)
                if old is None or old.deleted:
                    continue
                old.deleted, old.commit_id, old.updated_at = True, cid, now
                was = old.version
                t.versions.setdefault(path, {})[cid] = _Version(
                    None, 0, was.mode, was.mtime_ns, None, None
                )
                gone += 1
            raw = sum(e.size_bytes for e in changed)
            t.commits[cid] = _Commit(epoch, holder, now, len(changed), gone, raw)
            self._instances[name].last_commit = cid
            return CommitResult(cid, len(changed), gone)

    # -- usage and garbage collection --

    def usage(self, name: str) -> dict[str, tuple[int, int]]:
        with self._lock:
            t = self._t(name)
            out: dict[str, tuple[int, int]] = {}

            def add(path: str, live: int, total: int) -> None:
                was = out.get(path, (0, 0))
                out[path] = (was[0] + live, was[1] + total)

            # Whole blobs: each (path, content) pair once, live when the live entry has it.
            pairs: dict[tuple[str, str], bool] = {}
            for path, e in t.entries.items():
                v = e.version
                if not e.deleted and v.piece_bytes is None and v.sha256 is not None:
                    pairs[(path, v.sha256)] = True
            for path, vs in t.versions.items():
                for v in vs.values():
                    if v.sha256 is not None and v.piece_bytes is None:
                        pairs.setdefault((path, v.sha256), False)
            for (path, sha), live in pairs.items():
                blob = self._blobs.get(sha)
                if blob is not None:
                    add(path, blob.stored_bytes if live else 0, blob.stored_bytes)
            # Pieces up to the last commit: live when newest of its index and within the
            # live version's pieces.
            inst = self._instances.get(name)
            last = inst.last_commit if inst is not None else None
            for (path, idx), rows in t.pieces.items():
                committed = [c for c in rows if last is not None and c <= last]
                if not committed:
                    continue
                cur = t.entries.get(path)
                now = cur.version if cur is not None and not cur.deleted else None
                reaches = (
                    now is not None
                    and now.piece_bytes is not None
                    and idx * now.piece_bytes < now.size_bytes
                )
                newest = max(committed)
                for c in committed:
                    n = len(rows[c][2])
                    add(path, n if reaches and c == newest else 0, n)
            return out

    def collect_garbage(
        self, name: str, retention: timedelta, grace: timedelta
    ) -> Iterator[GcBatch]:
        with self._lock:
            cutoff = self.clock() - retention
            made = [c for c, row in self._t(name).commits.items() if row.created_at <= cutoff]
        if made:
            keep = max(made)
            yield from self._gc_history(name, keep)
            yield from self._gc_pieces(name, keep)
            yield from self._gc_entries(name, keep)
            yield from self._gc_commits(name, keep)
        yield from self._gc_blobs(grace)

    def _gc_history(self, name: str, keep: int) -> Iterator[GcBatch]:
        after: tuple[str, int] = ("", -1)
        while True:
            with self._lock:
                history = self._t(name).versions
                keys = sorted(
                    (p, c) for p, vs in history.items() for c in vs if c <= keep and (p, c) > after
                )[: self.gc_rows]
                old = moot = 0
                for p, c in keys:  # superseded: a later version at or before the horizon
                    if c < keep and any(c < w <= keep for w in history[p]):
                        del history[p][c]
                        old += 1
                for p, c in keys:  # a tombstone that is all that is left at the horizon
                    vs = history[p]
                    v = vs.get(c)
                    if (
                        v is not None
                        and v.sha256 is None
                        and not any(w != c and w <= keep for w in vs)
                    ):
                        del vs[c]
                        moot += 1
                for p, _ in keys:
                    if p in history and not history[p]:
                        del history[p]
            if old or moot:
                yield GcBatch(versions=old, tombstones=moot)
            if len(keys) < self.gc_rows:
                return
            after = keys[-1]

    def _gc_pieces(self, name: str, keep: int) -> Iterator[GcBatch]:
        after: tuple[str, int, int] = ("", -1, -1)
        while True:
            with self._lock:
                t = self._t(name)
                keys = sorted(
                    (p, i, c)
                    for (p, i), rows in t.pieces.items()
                    for c in rows
                    if c <= keep and (p, i, c) > after
                )[: self.gc_rows]
                gone, freed = 0, 0
                for p, i, c in keys:
                    rows = t.pieces.get((p, i), {})
                    if c not in rows:
                        continue
                    replaced = any(c < q <= keep for q in rows)
                    vs = t.versions.get(p, {})
                    at = max((w for w in vs if w <= keep), default=None)
                    h = vs[at] if at is not None else None
                    used = (
                        h is not None
                        and h.piece_bytes is not None
                        and i * h.piece_bytes < h.size_bytes
                    )
                    if replaced or not used:
                        freed += len(rows.pop(c)[2])
                        gone += 1
                        if not rows:
                            del t.pieces[(p, i)]
            if gone:
                yield GcBatch(pieces=gone, bytes_freed=freed)
            if len(keys) < self.gc_rows:
                return
            after = keys[-1]

    def _gc_entries(self, name: str, keep: int) -> Iterator[GcBatch]:
        after = ""
        while True:
            with self._lock:
                rows = self._t(name).entries
                dead = (p for p, e in rows.items() if e.deleted and e.commit_id <= keep)
                keys = sorted(p for p in dead if p > after)[: self.gc_rows]
                for p in keys:
                    del rows[p]
            if keys:
                yield GcBatch(entries=len(keys))
            if len(keys) < self.gc_rows:
                return
            after = keys[-1]

    def _gc_commits(self, name: str, keep: int) -> Iterator[GcBatch]:
        while True:
            with self._lock:
                commits = self._t(name).commits
                ids = sorted(c for c in commits if c < keep)[: self.gc_rows]
                for c in ids:
                    del commits[c]
            if ids:
                yield GcBatch(commits=len(ids))
            if len(ids) < self.gc_rows:
                return

    def _referenced(self) -> set[str]:
        """Every content any entry (live or tombstone) or version of any instance names."""
        shas: set[str] = set()
        for t in self._tables.values():
            shas.update(e.version.sha256 for e in t.entries.values() if e.version.sha256)
            for vs in t.versions.values():
                shas.update(v.sha256 for v in vs.values() if v.sha256)
        return shas

    def _gc_blobs(self, grace: timedelta) -> Iterator[GcBatch]:
        after = ""
        while True:
            with self._lock:
                cutoff = self.clock() - grace
                keys = sorted(s for s in self._blobs if s > after)[: self.gc_rows]
                used = self._referenced()
                unused = [s for s in keys if self._blobs[s].used_at < cutoff and s not in used]
                freed = sum(self._blobs.pop(s).stored_bytes for s in unused)
            if unused:
                yield GcBatch(blobs=len(unused), bytes_freed=freed)
            if len(keys) < self.gc_rows:
                return
            after = keys[-1]

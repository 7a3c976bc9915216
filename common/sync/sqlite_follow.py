"""A consistent scratch copy of a live SQLite database, kept current at the cost of what changed.

``SqliteFollower(db, scratch).snapshot()`` leaves in ``scratch`` a complete,
consistent copy of ``db`` at one commit and says which pages may differ from
the last snapshot the caller acknowledged. The first call copies the whole
database; later calls apply only the frames the application appended to its
write-ahead log (``db-wal``) since, so a ship costs O(changed pages).

Format and rules cited: the WAL file format,
https://www.sqlite.org/fileformat2.html#walformat (sections 4.1-4.3), and the
WAL design, https://www.sqlite.org/wal.html (checkpointing, "WAL reset").

Full sync (first call; no WAL or not WAL mode; anything not provable below)
    The source is opened read-only (``mode=ro``), a read transaction is
    started (``BEGIN`` and a ``SELECT`` on ``sqlite_master``), the WAL header
    is read inside it, and the backup API copies the database into the
    scratch file inside that same transaction: ``sqlite3_backup_step`` opens
    a read transaction on the source only when none is open, and otherwise
    uses the open one (backup.c, "If there is no open read-transaction on the
    source database, open one now"; checked from Python's ``sqlite3`` in
    tests/test_sqlite_follow.py::test_backup_reuses_open_read_transaction).
    The copy is the database at the transaction's snapshot S. Still inside the
    transaction, every valid committed frame of the WAL generation is replayed
    onto the copy, from frame 1 to the last commit frame C,
    and the file is cut to C's database size. This is idempotent: S is the
    base of that generation (the database file when it started) plus its
    frames 1..m for some m <= C, or, for a reader that SQLite let read the
    database file alone (all of the WAL already checkpointed), the base plus
    every frame; replaying frames 1..C in order leaves each page with its
    last version in 1..C, or its version in S if no frame in 1..C wrote it
    (then none in 1..m did either), which is exactly the state at commit C.
    The replay runs inside the transaction: a reader holding a read mark in the
    log keeps any checkpoint from restarting it, so its frames stay put while
    they are read (a writer as busy as whatsmeow in a history sync restarts
    the log every second, and a copy of a large database takes longer). A
    reader SQLite let read the database file alone (mark 0) does not hold the
    log, but it blocks checkpoints, so the log can restart at most once, before
    anything is written to it: the new generation is then replayed from frame
    1 instead. ``quick_check``
    then runs on the copy (full syncs only); ``changed_pages`` is None.

Incremental (same generation: same salts, checkpoint sequence, page size)
    Frames after the saved position are verified the way SQLite's recovery
    does (salts equal the header's, cumulative checksum continuing from the
    saved value, byte order from the magic). Only frames up to and including
    the last valid commit frame are applied; trailing uncommitted or torn
    frames stay for next time. Applying a prefix of the commits in order is
    always a consistent state. Frames are verified in a first pass and
    applied in a second. Within one generation a committed frame is never
    rewritten (only frames past the last commit are reused after a
    rollback); a later generation may overwrite it, but SQLite writes a
    frame's header before its page, so each frame's header is read again
    after its page: unchanged, it proves the page read is that frame's. A
    frame overwritten between the passes makes a full sync (the scratch
    holds part of a transaction); the log restarting before the first pass
    reached a frame only ends the chain early, at an earlier commit.

Generation change (a checkpoint restarted the log)
    SQLite restarts the log only when a checkpoint has copied every frame
    into the database file and no reader uses the WAL; the next writer then
    rewrites the header with the checkpoint sequence incremented and salt-1
    incremented (salt-2 random) and overwrites frames from the start, never
    truncating (fileformat2 4.3; wal.c ``walRestartHeader``). So the new
    generation's base is the old generation's last commit. The follower
    bridges when the new header is exactly the next one (sequence + 1, salt-1
    + 1, same page size and byte order) by reading the old generation from its
    saved position to its end, then the new one from frame 1. The new
    generation writes frames strictly in order from frame 1 (every write is at
    the last committed frame + 1), so the positions it has written always
    form a prefix of the file. After applying, the follower re-reads our last
    applied old frame k: still carrying the old salts and exactly the saved
    checksum, it proves the new generation had written no position >= k by
    then, so every old frame read after k was genuinely the old
    generation's. Where the old chain stops must then be its end: end of file
    right after a commit frame, a frame from an older generation (other
    salts), or an old-generation frame that breaks the chain (left by a
    rolled-back transaction: SQLite's recovery stops there too). A stop at
    the new generation's salts (overwritten), a partial frame (the file was
    truncated, e.g. by ``journal_size_limit``, or torn), frame k gone
    (``wal_checkpoint(TRUNCATE)`` empties the file), or more frames to read
    than a full sync would cost: full sync.
    One case is not provable and is accepted: ``journal_size_limit`` set to a
    byte count that is an exact frame boundary, truncating the old
    generation's tail exactly after one of its commit frames; SQLite truncates
    to that limit only at the first commit after a restart, and neither
    whatsmeow nor Baileys stores set the pragma.

Never in the application's way
    The source is only ever opened read-only and read with ``pread``; the
    follower never checkpoints, never writes the application's files, and
    holds a read transaction only while the backup copies locally. In WAL
    mode readers never block the writer, so a writer with ``busy_timeout=0``
    sees no ``SQLITE_BUSY`` (tested); a read-only connection cannot take the
    exclusive lock needed to checkpoint and delete the WAL on close (tested:
    after the application stopped, the follower's close leaves the WAL and
    its frames). A database in rollback-journal mode (or in WAL mode with no
    or an empty log) is copied by the backup API whenever its file's size,
    mtime or ctime changed (no log to follow); in rollback mode a reader does
    delay writers: WAHA's engines use WAL mode.

Cost and memory
    Memory does not depend on the database's size: one frame is read at a
    time (``pread``), written with ``pwrite``; the backup API streams pages
    through SQLite's page cache. ``changed_pages`` is capped at
    ``MAX_CHANGED_PAGES`` (past that it is None: compare all). Verifying a
    frame costs a Python checksum loop; a full sync costs a C copy of every
    page plus the caller's comparison of every page. When bridging needs more
    than ``BRIDGE_RATIO`` x pages frames verified (for example the log of a
    ``VACUUM`` followed by a restart) the full sync is cheaper, and is made
    (why that ratio: see ``BRIDGE_RATIO``). Within one generation it never
    is: a full sync replays that generation's frames as well.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from dataclasses import dataclass, replace
from pathlib import Path

from waha_sync.common.sync.wal import (
    FRAME_HEADER_BYTES,
    Scan,
    WalHeader,
    read_frame_header,
    read_header,
    scan,
)

# More distinct changed pages than this since the last acknowledgement: report None
# (compare all). Bounds the set's memory, whatever the size of the database.
MAX_CHANGED_PAGES = 65_536
# A bridge over a log restart verifies at most this fraction of the database's pages
# in frames before a full sync is preferred: verifying and applying a frame costs far
# more CPU than copying a page in a full sync (backup + quick_check), but the caller then
# compares every page; the ratio sits a little under the break-even of the two, leaving
# margin for the caller's cheaper incremental work (the follower's CPU: BENCHMARKS.md,
# "Large, busy SQLite").
BRIDGE_RATIO = 0.05
BRIDGE_MIN_FRAMES = 2_000
FULL_SYNC_ATTEMPTS = 5
_UNACKED_KEPT = 32  # older unacknowledged deltas are merged (conservatively)
_MASK = 0xFFFFFFFF


@dataclass(frozen=True)
class Snapshot:
    """One consistent state of the database, in the follower's scratch file.

    ``path``: the scratch file, a complete SQLite database at one commit point,
    valid until the next ``snapshot()``. ``size_bytes``: page_count * page_size.
    ``changed_pages``: 1-based page numbers that may differ from the last
    acknowledged snapshot (None: unknown, compare every page). ``full``: made by
    a full copy rather than by applying WAL frames.
    """

    path: str
    size_bytes: int
    page_size: int
    changed_pages: frozenset[int] | None
    full: bool


@dataclass(frozen=True)
class _Position:
    """Where the scratch stands in the WAL: after commit frame ``frame`` of ``hdr``."""

    hdr: WalHeader
    wal_id: tuple[int, int]  # st_dev, st_ino of the -wal file
    frame: int  # last applied frame (a commit frame), 0: none
    chain: tuple[int, int]  # the checksum chain after it


@dataclass(frozen=True)
class _State:
    page_size: int
    pages: int
    db_id: tuple[int, int]  # st_dev, st_ino of the database file
    db_stat: tuple[int, int, int]  # size, mtime_ns, ctime_ns before the full sync
    wal: _Position | None  # None: no WAL generation seen (no log, empty log, rollback mode)


_Incremental = tuple[_State, frozenset[int] | None, str]  # new state, changed pages, kind


class _Fallback(Exception):
    """The incremental path cannot prove its result: make a full sync."""


class SqliteFollower:
    """Keeps ``scratch_path`` a consistent copy of the SQLite database at ``db_path``.

    ``scratch_path``'s folder must exist, on the same filesystem as the
    database's volume (not a tmpfs, which counts as memory). Not thread-safe:
    one caller at a time. ``last_kind`` says how the last snapshot was made:
    ``"full"``, ``"incremental"``, ``"bridged"`` (across a log restart) or
    ``"unchanged"``; ``last_reason`` why the last full sync was made.
    """

    def __init__(self, db_path: str, scratch_path: str) -> None:
        self._db = db_path
        self._wal = db_path + "-wal"
        self._scratch = scratch_path
        self._state: _State | None = None
        self._unacked: list[tuple[Snapshot, frozenset[int] | None]] = []
        self.last_kind = ""
        self.last_reason = ""  # why the last full sync was needed ("" on the first call)

    def _why(self, reason: str) -> _Incremental | None:
        """Record why a full sync is needed; None (no incremental result)."""
        self.last_reason = reason
        return None

    # -- public -----------------------------------------------------------------

    def snapshot(self) -> Snapshot:
        """Bring the scratch file to the database's latest commit and describe it.

        Raises FileNotFoundError if the database does not exist, sqlite3.Error
        if it is not a usable database (or its copy fails ``quick_check``),
        OSError if the scratch file cannot be written.
        """
        st = Path(self._db).stat()
        state = self._state
        delta: frozenset[int] | None = None
        got = None
        if state is None:
            self._why("first snapshot, or the last one failed")
        elif (st.st_dev, st.st_ino) != state.db_id:
            self._why("the database file was replaced")
        else:
            self._state = None  # until this call succeeds, the scratch is not trusted
            try:
                got = self._incremental(state, st)
            except (_Fallback, OSError) as exc:
                got = self._why(str(exc))
        if got is not None:
            state, delta, self.last_kind = got
            full = False
        else:
            self._state = None
            state = self._full()
            self.last_kind, full = "full", True
        self._state = state
        snap = Snapshot(
            self._scratch,
            state.pages * state.page_size,
            state.page_size,
            self._report(delta, state.pages),
            full,
        )
        self._unacked.append((snap, delta))
        if len(self._unacked) > _UNACKED_KEPT:  # merged under the later snapshot: safe
            (_, d1), (s2, d2) = self._unacked[0], self._unacked[1]
            self._unacked[:2] = [(s2, None if d1 is None or d2 is None else d1 | d2)]
        return snap

    def acknowledge(self, snap: Snapshot) -> None:
        """The caller stored ``snap``: pages changed up to it are no longer reported.

        Unknown or already acknowledged snapshots are ignored.
        """
        for i, (s, _) in enumerate(self._unacked):
            if s is snap:
                del self._unacked[: i + 1]
                return

    def close(self) -> None:
        """Remove the scratch file; never raises."""
        self._state = None
        self._unacked.clear()
        for p in _scratch_files(self._scratch):
            with contextlib.suppress(OSError):
                Path(p).unlink(missing_ok=True)

    # -- reporting --------------------------------------------------------------

    def _report(self, delta: frozenset[int] | None, pages: int) -> frozenset[int] | None:
        deltas = [d for _, d in self._unacked] + [delta]
        if any(d is None for d in deltas):
            return None
        out: set[int] = set()
        for d in deltas:
            assert d is not None
            out.update(p for p in d if p <= pages)
            if len(out) > MAX_CHANGED_PAGES:
                return None
        return frozenset(out)

    # -- incremental ------------------------------------------------------------

    def _incremental(self, state: _State, st: os.stat_result) -> _Incremental | None:
        """Apply what the WAL added since ``state``; None when only a full sync can tell."""
        untouched = state.wal is None and state.db_stat == _stat_key(st)
        try:
            fd = os.open(self._wal, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            if untouched:
                return (state, frozenset(), "unchanged")
            return self._why("no WAL file")
        try:
            hdr = read_header(fd)
            if hdr is None:
                if untouched:
                    return (state, frozenset(), "unchanged")
                return self._why("the WAL is empty (truncated) or has no valid header")
            pos = state.wal
            wst = os.fstat(fd)
            if (
                pos is None
                or (wst.st_dev, wst.st_ino) != pos.wal_id
                or hdr.page_size != state.page_size
            ):
                return self._why("no WAL position to continue from, or another WAL file")
            if hdr == pos.hdr:
                sc = scan(fd, hdr, pos.frame, pos.chain)
                if sc.last_commit == pos.frame:
                    return (state, frozenset(), "unchanged")
                runs = [(hdr, pos.frame + 1, sc.last_commit, sc.commit_pages)]
                new_pos = replace(pos, frame=sc.last_commit, chain=sc.commit_checksum)
                kind = "incremental"
            elif _follows(pos.hdr, hdr) and pos.frame > 0:
                budget = max(BRIDGE_MIN_FRAMES, int(state.pages * BRIDGE_RATIO))
                old = scan(fd, pos.hdr, pos.frame, pos.chain, budget)
                if not _old_generation_ended(old, hdr):
                    return self._why(f"old log generation not provably ended ({old.stop})")
                new = scan(fd, hdr, 0, hdr.checksum, budget - (old.last_valid - pos.frame))
                if new.stop == "budget":
                    return self._why("too many frames to bridge: a full copy is cheaper")
                runs = [
                    (pos.hdr, pos.frame + 1, old.last_commit, old.commit_pages),
                    (hdr, 1, new.last_commit, new.commit_pages),
                ]
                new_pos = _Position(hdr, pos.wal_id, new.last_commit, new.commit_checksum)
                kind = "bridged"
            else:
                return self._why("the log restarted more than once, or was recreated")
            pages, delta = self._apply(fd, runs, state.page_size, state.pages)
            # The end of the old generation, proven after every frame was read.
            if kind == "bridged":
                fh = read_frame_header(fd, pos.hdr, pos.frame)
                if (
                    fh is None
                    or (fh.salt1, fh.salt2) != (pos.hdr.salt1, pos.hdr.salt2)
                    or fh.checksum != pos.chain
                ):
                    raise _Fallback("the new log generation reached our position")
            return (replace(state, pages=pages, wal=new_pos), delta, kind)
        finally:
            os.close(fd)

    def _apply(
        self,
        fd: int,
        runs: list[tuple[WalHeader, int, int, int]],
        page_size: int,
        pages: int,
    ) -> tuple[int, frozenset[int] | None]:
        """Copy frames ``first..last`` of each run onto the scratch; cut it to the last commit.

        Returns the new page count and the pages written (None past
        ``MAX_CHANGED_PAGES``). Pages that a shrink removed and a later commit
        re-added are counted as changed.
        """
        changed: set[int] | None = set()
        low = pages
        sfd = os.open(self._scratch, os.O_RDWR | os.O_CLOEXEC)
        try:
            for hdr, first, last, commit_pages in runs:
                size = hdr.frame_bytes()
                for index in range(first, last + 1):
                    raw = os.pread(fd, size, hdr.frame_offset(index))
                    if len(raw) < size:
                        raise _Fallback("a verified frame was cut short")
                    # A writer writes a frame's header before its page: the header
                    # unchanged after the page was read proves the page is this frame's.
                    if os.pread(fd, FRAME_HEADER_BYTES, hdr.frame_offset(index)) != raw[:24]:
                        raise _Fallback("a frame was overwritten while it was read")
                    pgno = int.from_bytes(raw[:4], "big")
                    os.pwrite(sfd, memoryview(raw)[24:], (pgno - 1) * page_size)
                    if changed is not None:
                        changed.add(pgno)
                        if len(changed) > MAX_CHANGED_PAGES:
                            changed = None
                    if raw[4:8] != b"\0\0\0\0":
                        low = min(low, int.from_bytes(raw[4:8], "big"))
                if last >= first:
                    pages = commit_pages
            os.ftruncate(sfd, pages * page_size)
        finally:
            os.close(sfd)
        if changed is not None and pages > low:
            if pages - low > MAX_CHANGED_PAGES:
                changed = None
            else:
                changed.update(range(low + 1, pages + 1))
        if changed is None:
            return pages, None
        return pages, frozenset(p for p in changed if p <= pages)

    # -- full sync --------------------------------------------------------------

    def _full(self) -> _State:
        """Copy the whole database (backup API), then replay its WAL generation."""
        for _ in range(FULL_SYNC_ATTEMPTS):
            got = self._full_once()
            if got is not None:
                self._quick_check()
                return got
        raise sqlite3.OperationalError(
            f"{self._db}: the WAL restarted during each of {FULL_SYNC_ATTEMPTS} copies"
        )

    def _full_once(self) -> _State | None:
        st = Path(self._db).stat()
        uri = f"{Path(self._db).absolute().as_uri()}?mode=ro"
        try:
            src = sqlite3.connect(uri, uri=True, timeout=5, isolation_level=None)
        except sqlite3.OperationalError:
            if not Path(self._db).exists():
                raise FileNotFoundError(self._db) from None
            raise
        wal_fd: int | None = None
        try:
            src.execute("BEGIN")
            src.execute("SELECT count(*) FROM sqlite_master").fetchone()
            page_size = int(src.execute("PRAGMA page_size").fetchone()[0])
            if str(src.execute("PRAGMA journal_mode").fetchone()[0]).lower() == "wal":
                with contextlib.suppress(FileNotFoundError):
                    wal_fd = os.open(self._wal, os.O_RDONLY | os.O_CLOEXEC)
            self._backup(src)
            self._copy_header_page(page_size)
            pages = Path(self._scratch).stat().st_size // page_size
            # The replay too runs inside the read transaction: while it holds a read mark
            # in the log, no checkpoint can restart the log, so the frames stay put (a
            # busy writer restarts it every second or so; a copy takes longer).
            got = (
                _State(page_size, pages, (st.st_dev, st.st_ino), _stat_key(st), None)
                if wal_fd is None
                else self._replay_generation(wal_fd, page_size, pages, st)
            )
            src.execute("COMMIT")
            return got
        finally:
            if wal_fd is not None:
                os.close(wal_fd)
            src.close()

    def _replay_generation(
        self, wal_fd: int, page_size: int, pages: int, st: os.stat_result
    ) -> _State | None:
        """Bring the fresh copy to the log's last commit (inside the copy's read transaction).

        A reader that SQLite let read the database file alone (the log all checkpointed:
        read mark 0) does not hold the log still: the next writer may restart it once,
        before it writes anything (a second restart needs a checkpoint, which that reader
        blocks). Every frame after the copy is then in the new generation: replay it from
        frame 1. None (copy again) when the page size differs or the log moved otherwise.
        """
        for _ in range(2):
            wst = os.fstat(wal_fd)
            hdr = read_header(wal_fd)
            if hdr is None:
                return _State(page_size, pages, (st.st_dev, st.st_ino), _stat_key(st), None)
            if hdr.page_size != page_size:
                return None
            sc = scan(wal_fd, hdr, 0, hdr.checksum)
            try:
                done, _ = self._apply(
                    wal_fd, [(hdr, 1, sc.last_commit, sc.commit_pages)], page_size, pages
                )
            except _Fallback:
                done = None
            now = read_header(wal_fd)
            if done is not None and now == hdr:
                pos = _Position(hdr, (wst.st_dev, wst.st_ino), sc.last_commit, sc.commit_checksum)
                return _State(page_size, done, (st.st_dev, st.st_ino), _stat_key(st), pos)
            if now is None or not _follows(hdr, now):
                return None
            # Restarted while we read it: a read mark 0 reader's copy is the database file,
            # which already holds every frame of the old generation.
        return None

    def _backup(self, src: sqlite3.Connection) -> None:
        for p in _scratch_files(self._scratch):
            Path(p).unlink(missing_ok=True)
        dst = sqlite3.connect(self._scratch, isolation_level=None)
        try:
            dst.execute("PRAGMA journal_mode=OFF")
            dst.execute("PRAGMA synchronous=OFF")
            src.backup(dst)  # one step, inside src's open read transaction
        finally:
            dst.close()

    def _copy_header_page(self, page_size: int) -> None:
        """Page 1 as the database file holds it, over the backup's (still inside the read
        transaction). The backup API writes its own change counter and schema cookie into
        the copy; the file's page 1 is the snapshot's unless the WAL generation has a newer
        one, which the replay that follows writes over it (a checkpoint backfills only up to
        our read mark). So a database at rest is copied byte for byte."""
        fd = os.open(self._db, os.O_RDONLY | os.O_CLOEXEC)
        try:
            page = os.pread(fd, page_size, 0)
        finally:
            os.close(fd)
        if len(page) != page_size:
            return
        out = os.open(self._scratch, os.O_WRONLY | os.O_CLOEXEC)
        try:
            os.pwrite(out, page, 0)
        finally:
            os.close(out)

    def _quick_check(self) -> None:
        uri = f"{Path(self._scratch).absolute().as_uri()}?mode=ro&immutable=1"
        con = sqlite3.connect(uri, uri=True)
        try:
            check = con.execute("PRAGMA quick_check").fetchone()[0]
        finally:
            con.close()
        if check != "ok":
            raise sqlite3.DatabaseError(f"{self._db}: copy failed quick_check ({check})")


def _scratch_files(scratch: str) -> tuple[str, ...]:
    return (scratch, scratch + "-journal", scratch + "-wal", scratch + "-shm")


def _stat_key(st: os.stat_result) -> tuple[int, int, int]:
    return (st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def _follows(old: WalHeader, new: WalHeader) -> bool:
    """Whether ``new`` is the generation right after ``old`` (one restart, same file)."""
    return (
        new.checkpoint_seq == (old.checkpoint_seq + 1) & _MASK
        and new.salt1 == (old.salt1 + 1) & _MASK
        and new.big_endian == old.big_endian
        and new.page_size == old.page_size
    )


def _old_generation_ended(old: Scan, new_hdr: WalHeader) -> bool:
    """Whether the old generation's chain stopped at its true end (not at an overwrite)."""
    if old.stop == "eof":
        return old.last_valid == old.last_commit  # the file ends right after a commit
    if old.stop == "checksum":
        return True  # an old-generation frame off the chain: left by a rollback
    if old.stop == "salt":
        return old.stop_salts not in ((new_hdr.salt1, new_hdr.salt2), (0, 0))
    return False  # "short", "pgno", "budget"

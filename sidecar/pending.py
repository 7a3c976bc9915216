"""Debouncing: which changed paths are ready to ship, and when the next one will be.

A path is ready once it has been quiet for ``debounce`` seconds, or
``max_delay`` seconds after its first change however often it changes. A SQLite
database written through its ``-wal`` or ``-journal`` is ready ``debounce`` seconds
after its first change however busy its writer stays: it is snapshotted at a commit
(``waha_sync.common.sync.sqlite_follow``), so there is nothing half-written to wait out,
and a writer such as whatsmeow is never quiet for long.
Only paths are kept (content is read at ship time), and at most ``limit``
of them: past that the set is dropped and ``overflowed`` asks the caller
for one full rescan instead, so memory stays bounded through any outage.
"""

from __future__ import annotations

from collections.abc import Iterable

# Paths becoming ready this close together ship in the same commit, so files
# written together (creds.json and its keys) stay consistent in the database.
COALESCE_SECONDS = 0.05


class Pending:
    def __init__(self, debounce: float, max_delay: float, limit: int = 200_000) -> None:
        self.debounce = debounce
        self.max_delay = max_delay
        self.limit = limit
        self.first: dict[str, float] = {}
        self.last: dict[str, float] = {}
        self.eager: set[str] = set()  # SQLite databases: ready debounce after the first change
        self.overflowed = False
        self.oldest_taken: float | None = None  # first change among the last paths taken

    def __len__(self) -> int:
        return len(self.first)

    def touch(self, rel: str, now: float, *, eager: bool = False) -> None:
        """Record a change of ``rel`` at ``now`` (monotonic seconds); ``eager``: a SQLite
        database's committed write (its -wal or -journal), due ``debounce`` after the first."""
        if self.overflowed:
            return
        self.first.setdefault(rel, now)
        self.last[rel] = now
        if eager:
            self.eager.add(rel)
        if len(self.first) > self.limit:
            self._overflow()

    def _overflow(self) -> None:
        self.first.clear()
        self.last.clear()
        self.eager.clear()
        self.overflowed = True

    def _due_at(self, rel: str) -> float:
        if rel in self.eager:
            return self.first[rel] + self.debounce
        return min(self.last[rel] + self.debounce, self.first[rel] + self.max_delay)

    def next_due(self) -> float | None:
        """When the earliest path becomes ready (monotonic seconds), None if nothing waits."""
        if not self.first:
            return None
        return min(self._due_at(rel) for rel in self.first)

    def take_ready(self, now: float) -> list[str]:
        """Remove and return every path ready at ``now`` (plus those a moment from ready)."""
        ready = [rel for rel in self.first if self._due_at(rel) <= now + COALESCE_SECONDS]
        return self.take(ready)

    def take_all(self) -> list[str]:
        """Remove and return everything (for the final flush)."""
        return self.take(list(self.first))

    def take(self, paths: Iterable[str]) -> list[str]:
        out = []
        self.oldest_taken = None
        for rel in paths:
            first = self.first.pop(rel, None)
            if first is not None:
                del self.last[rel]
                self.eager.discard(rel)
                out.append(rel)
                self.oldest_taken = min(first, self.oldest_taken or first)
        return out

    def put_back(self, paths: Iterable[str], now: float) -> None:
        """Return paths a failed shipment took; they are ready again at once."""
        for rel in paths:
            when = now - self.max_delay
            self.first[rel] = min(self.first.get(rel, when), when)
            self.last.setdefault(rel, now)
        if len(self.first) > self.limit:
            self._overflow()

    def clear_overflow(self) -> bool:
        """True (once) if the set overflowed; the caller then rescans everything."""
        was, self.overflowed = self.overflowed, False
        return was

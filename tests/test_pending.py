"""Debouncing rules, on explicit times (the clock is a parameter, not mocked)."""

from __future__ import annotations

from waha_sync.sidecar.pending import Pending


def test_a_path_ships_once_quiet_for_the_debounce() -> None:
    p = Pending(debounce=1.0, max_delay=10.0)
    p.touch("a.json", 100.0)
    assert p.take_ready(100.5) == []
    assert p.next_due() == 101.0
    assert p.take_ready(101.0) == ["a.json"]
    assert len(p) == 0 and p.next_due() is None


def test_continuous_writes_ship_no_later_than_max_delay() -> None:
    p = Pending(debounce=1.0, max_delay=10.0)
    t = 100.0
    while t < 109.9:
        p.touch("gows.db", t)
        assert p.take_ready(t) == []
        t += 0.5
    p.touch("gows.db", 109.95)
    assert p.next_due() == 110.0
    assert p.take_ready(110.0) == ["gows.db"]
    assert p.oldest_taken == 100.0


def test_paths_ready_together_are_taken_together() -> None:
    p = Pending(debounce=1.0, max_delay=10.0)
    p.touch("creds.json", 100.0)
    p.touch("pre-key-1.json", 100.02)
    p.touch("pre-key-2.json", 100.5)
    assert sorted(p.take_ready(101.0)) == ["creds.json", "pre-key-1.json"]
    assert p.take_ready(101.4) == []
    assert p.take_ready(101.5) == ["pre-key-2.json"]


def test_overflow_drops_paths_and_asks_for_one_rescan() -> None:
    p = Pending(debounce=1.0, max_delay=10.0, limit=3)
    for i in range(4):
        p.touch(f"{i}.json", 100.0)
    assert len(p) == 0 and p.overflowed
    p.touch("late.json", 100.0)  # ignored: the rescan covers it
    assert len(p) == 0
    assert p.clear_overflow() is True
    assert p.clear_overflow() is False


def test_put_back_makes_failed_paths_ready_at_once() -> None:
    p = Pending(debounce=1.0, max_delay=10.0)
    p.touch("a.json", 100.0)
    taken = p.take_ready(101.0)
    p.put_back(taken, 105.0)
    assert p.take_ready(105.0) == ["a.json"]


def test_a_database_written_through_its_wal_ships_debounce_after_its_first_change() -> None:
    """A SQLite database is snapshotted at a commit: a busy writer does not hold it back."""
    p = Pending(debounce=1.0, max_delay=10.0)
    t = 100.0
    while t < 100.9:
        p.touch("gows/a/gows.db", t, eager=True)
        p.touch("noweb/a/creds.json", t)
        assert p.take_ready(t) == []
        t += 0.1
    p.touch("gows/a/gows.db", 100.95, eager=True)
    p.touch("noweb/a/creds.json", 100.95)
    assert p.next_due() == 101.0
    assert p.take_ready(101.0) == ["gows/a/gows.db"]  # the JSON file is still being written
    p.touch("gows/a/gows.db", 101.5, eager=True)
    assert p.take_ready(102.0) == ["noweb/a/creds.json"]  # quiet for the debounce at last
    assert p.take_ready(102.5) == ["gows/a/gows.db"]

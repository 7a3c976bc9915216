"""The one retry policy: bounded exponential backoff with full jitter, and its users' bounds."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import pytest

from waha_sync.common.config.settings import Settings
from waha_sync.common.db.database import CONNECT_RETRY, TRANSACTION_RETRY, Database
from waha_sync.common.db.retry import RetryPolicy
from waha_sync.common.db.url import parse_url
from waha_sync.common.errors import DatabaseUnavailable
from waha_sync.common.store.factory import open_lazy_store
from waha_sync.sidecar.tree_sync import OUTAGE_RETRY, TreeSync


def test_bounds_double_from_the_base_up_to_the_cap() -> None:
    p = RetryPolicy(attempts=5, base_seconds=0.5, cap_seconds=10.0)
    assert [p.bound_seconds(n) for n in range(1, 8)] == [0.5, 1.0, 2.0, 4.0, 8.0, 10.0, 10.0]
    assert p.bound_seconds(10**9) == 10.0  # a day-long outage: no overflow


def test_delays_are_full_jitter_within_the_bound() -> None:
    p = RetryPolicy(attempts=None, base_seconds=1.0, cap_seconds=4.0)
    for retry in (1, 3, 50):
        draws = [p.delay_seconds(retry) for _ in range(2000)]
        bound = p.bound_seconds(retry)
        assert all(0 <= d <= bound for d in draws)
        # Spread over the whole range, not bunched at the bound (no fixed part).
        assert min(draws) < 0.05 * bound and max(draws) > 0.95 * bound
        assert 0.4 * bound < sum(draws) / len(draws) < 0.6 * bound


def test_attempts_count_the_first_try() -> None:
    assert [RetryPolicy(attempts=3).may_retry(n) for n in (1, 2, 3)] == [True, True, False]
    assert RetryPolicy(attempts=None).may_retry(10**6)
    with pytest.raises(ValueError, match="attempts"):
        RetryPolicy(attempts=0)
    with pytest.raises(ValueError, match="base_seconds"):
        RetryPolicy(base_seconds=2.0, cap_seconds=1.0)


def test_each_loop_keeps_its_bounds() -> None:
    # A transaction: 12 tries, waits up to 20 ms doubling to 1 s (the values before the change).
    assert RetryPolicy(attempts=12, base_seconds=0.02, cap_seconds=1.0) == TRANSACTION_RETRY
    assert Database(parse_url("postgresql://u@127.0.0.1:1/db")).retry is TRANSACTION_RETRY
    # Waiting for the database at start: until the timeout, waits up to 5 s each.
    assert CONNECT_RETRY.attempts is None and CONNECT_RETRY.cap_seconds == 5.0
    # A sidecar tree in an outage: from 0.5 s doubling to 10 s, as long as it lasts.
    assert RetryPolicy(attempts=None, base_seconds=0.5, cap_seconds=10.0) == OUTAGE_RETRY


def test_waiting_for_the_database_tries_again_until_the_timeout(
    caplog: pytest.LogCaptureFixture,
) -> None:
    db = Database(parse_url("postgresql://u:pw@127.0.0.1:1/db?connect_timeout=1"))
    quick = RetryPolicy(attempts=None, base_seconds=0.05, cap_seconds=0.1)
    began = time.monotonic()
    with caplog.at_level(logging.INFO), pytest.raises(DatabaseUnavailable) as err:
        db.wait_until_ready(1.0, retry=quick)
    took = time.monotonic() - began
    tries = sum("waiting for the database" in r.message for r in caplog.records) + 1
    assert 1.0 <= took < 3.0
    assert tries >= 5, f"only {tries} tries in {took:.2f}s with waits of at most 0.1 s"
    assert f"gave up after {tries} attempts in 1s" in err.value.message
    counted = RetryPolicy(attempts=2, base_seconds=0.01, cap_seconds=0.01)
    with pytest.raises(DatabaseUnavailable, match="gave up after 2 attempts"):
        db.wait_until_ready(30.0, retry=counted)


def test_a_tree_in_an_outage_retries_within_the_policy(tmp_path: Path) -> None:
    root = tmp_path / "vol"
    root.mkdir()
    settings = Settings(sessions_dir=root, debounce_seconds=0.05, max_delay_seconds=0.5)
    down = parse_url("postgresql://u:pw@127.0.0.1:1/db?connect_timeout=1")  # refused at once
    sync = TreeSync(settings, open_lazy_store(down, 0.0, "sync"), "sessions", force=False)
    for failures in range(1, 8):
        now = max(time.monotonic(), sync.retry_at)  # due: the wait itself is not the point
        sync.step(now)
        assert sync.failures == failures and sync.status.failing_since is not None
        assert now <= sync.retry_at <= now + OUTAGE_RETRY.bound_seconds(failures)
        if sync.retry_at > now:
            sync.step(now)  # not due yet: nothing is tried
            assert sync.failures == failures
    began = time.monotonic()
    assert sync.flush(began + 2.5) is False  # the final flush tries until its deadline
    assert 2.3 <= time.monotonic() - began < 4.0
    assert sync.failures > 8

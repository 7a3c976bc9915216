"""The one retry policy: bounded exponential backoff with full jitter.

Every loop that tries again after a failure (a transaction on SQLSTATE 40001, waiting
for the database at start, a sidecar tree during an outage) asks a ``RetryPolicy``
how long to wait; only the bounds differ, and they are named where they are used.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

_MAX_DOUBLINGS = 60  # 2**60 times any positive base is past any cap: no float overflow


@dataclass(frozen=True)
class RetryPolicy:
    """Bounded exponential backoff with full jitter.

    The wait before retry ``n`` (1 for the first) is drawn uniformly from
    ``[0, min(cap_seconds, base_seconds * 2**(n - 1))]`` seconds, so concurrent
    clients that failed together spread out. ``attempts`` is the number of tries in
    all, the first included; None means no count: a deadline the caller keeps ends it.
    """

    attempts: int | None = 12
    base_seconds: float = 0.02
    cap_seconds: float = 1.0

    def __post_init__(self) -> None:
        if self.attempts is not None and self.attempts < 1:
            raise ValueError(f"attempts: must be at least 1 (got {self.attempts})")
        if not 0 < self.base_seconds <= self.cap_seconds:
            raise ValueError(
                f"base_seconds: must be > 0 and <= cap_seconds {self.cap_seconds} "
                f"(got {self.base_seconds})"
            )

    def bound_seconds(self, retry: int) -> float:
        """The longest wait before retry ``retry`` (1 for the first), in seconds."""
        doublings = min(max(retry - 1, 0), _MAX_DOUBLINGS)
        return min(self.cap_seconds, self.base_seconds * 2.0**doublings)

    def delay_seconds(self, retry: int) -> float:
        """How long to wait before retry ``retry`` (1 for the first): full jitter, seconds."""
        return random.uniform(0, self.bound_seconds(retry))  # noqa: S311 - not a secret

    def may_retry(self, tries: int) -> bool:
        """Whether another try is allowed after ``tries`` tries (the first included)."""
        return self.attempts is None or tries < self.attempts

"""The chaos suite's shared parts: its size and its figures.

Every scenario runs a bounded number of attempts by default (the CI run) and
the full number with ``pytest tests/chaos --chaos-full``. Each scenario
records ``chaos: <scenario>: N attempts, F failures`` through the ``chaos``
fixture; the lines are printed together at the end of the run, and a
scenario with failures also fails its test.
"""

from __future__ import annotations

import os
import random
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest


def draw_seed() -> int:
    """A random seed: ``CHAOS_SEED`` to replay a run, else a fresh one."""
    return int(os.environ.get("CHAOS_SEED") or random.SystemRandom().randrange(10**6))


@dataclass
class Tally:
    """Attempts and failures of one scenario, with a line per failure."""

    scenario: str
    attempts: int = 0
    failures: int = 0
    notes: list[str] = field(default_factory=list)
    figures: dict[str, str] = field(default_factory=dict)
    seed: int = 0

    def attempt(self, failure: str | None = None) -> None:
        """Count one attempt; ``failure`` says what went wrong, if anything did."""
        self.attempts += 1
        if failure is not None:
            self.failures += 1
            self.notes.append(failure)

    def rng(self) -> random.Random:
        """This scenario's random generator. ``CHAOS_SEED`` replays a run; the seed is printed
        and shown in the scenario's figures."""
        self.seed = draw_seed()
        self.figures["seed"] = str(self.seed)
        print(f"chaos seed: {self.scenario}: {self.seed}")
        return random.Random(self.seed)

    def line(self) -> str:
        extra = "".join(f", {k} {v}" for k, v in self.figures.items())
        return f"chaos: {self.scenario}: {self.attempts} attempts, {self.failures} failures{extra}"

    def check(self) -> None:
        """Fail the test if any attempt failed (or none ran), quoting the first few failures."""
        assert self.attempts > 0, f"{self.scenario}: no attempt ran"
        assert self.failures == 0, f"{self.line()}\n" + "\n".join(self.notes[:5])


class Chaos:
    """Sizes for this run and the tallies recorded so far."""

    def __init__(self, full: bool) -> None:
        self.full = full
        self.tallies: list[Tally] = []

    def size(self, bounded: float, full: float) -> float:
        """The bounded (CI) or the full figure, by the run's flag."""
        return full if self.full else bounded

    def scenario(self, name: str) -> Tally:
        tally = Tally(name)
        self.tallies.append(tally)
        return tally


_RUN: list[Chaos] = []


@pytest.fixture(scope="session")
def chaos(request: pytest.FixtureRequest) -> Iterator[Chaos]:
    run = Chaos(bool(request.config.getoption("--chaos-full")))
    _RUN.append(run)
    yield run


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "chaos" in item.path.parts:
            item.add_marker(pytest.mark.chaos)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    for run in _RUN:
        if run.tallies:
            terminalreporter.section("chaos figures" + (" (full)" if run.full else " (bounded)"))
        for tally in run.tallies:
            terminalreporter.write_line(tally.line())

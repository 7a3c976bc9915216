"""How every benchmark reports: a Section of rows (one Markdown table), its notes, its time.

Each bench module exposes a function returning Sections; its own ``main`` prints them and
``bench/run`` renders them all into BENCHMARKS.md. Rows are plain strings, already
formatted, in the columns of ``COLUMNS``; the verdict is PASS or MISSED where a goal
exists, otherwise ``info`` (or ``baseline`` / ``control`` for reference rows).
"""

from __future__ import annotations

import statistics
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

COLUMNS = ("measure", "result", "baseline", "ratio", "goal", "verdict")
HEADER = "| " + " | ".join(COLUMNS) + " |\n|" + "---|" * len(COLUMNS)
Row = tuple[str, str, str, str, str, str]
VERDICTS = ("PASS", "MISSED")


def verdict(ok: bool) -> str:
    return VERDICTS[0] if ok else VERDICTS[1]


def p99(values: Sequence[float]) -> float:
    """The 99th percentile (inclusive method: with few samples, close to the maximum)."""
    if len(values) < 2:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[98]


@dataclass
class Section:
    """One benchmark's results: ``about`` says what ran (sizes, versions), then the table."""

    title: str
    about: list[str] = field(default_factory=list)
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def table(self) -> str:
        cells = ("| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in self.rows)
        return "\n".join([HEADER, *cells])

    def markdown(self, level: int = 2) -> str:
        parts = [f"{'#' * level} {self.title}", ""]
        parts += [f"{line}  " for line in self.about[:-1]] + self.about[-1:]
        parts += ["", self.table(), ""]
        parts += [f"Note: {note}\n" for note in self.notes]
        parts.append(f"Section wall time: {self.seconds:.0f} s")
        return "\n".join(parts).replace("\n\n\n", "\n\n") + "\n"

    def goals(self) -> tuple[int, int]:
        """(PASS, MISSED) counts over the rows."""
        marks = [row[5].split()[0] if row[5] else "" for row in self.rows]
        return marks.count(VERDICTS[0]), marks.count(VERDICTS[1])


def print_sections(sections: Sequence[Section]) -> None:
    for section in sections:
        print(section.markdown())


def report(name: str, run: Callable[[], Section]) -> int:
    """Run one benchmark's section and print it; an error is one line and exit status 1."""
    try:
        section = run()
    except Exception as exc:
        print(f"{name}: error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    print_sections([section])
    return 0

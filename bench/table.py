"""How every benchmark reports: one Markdown table, its notes, the wall time."""

from __future__ import annotations

import time
from collections.abc import Sequence

HEADER = "| measure | value | baseline | ratio | goal | verdict |\n|---|---|---|---|---|---|"


def print_table(rows: Sequence[Sequence[str]], notes: Sequence[str], started: float) -> None:
    """Print ``rows`` under the common header, then each note, then the time since ``started``."""
    print(HEADER)
    for row in rows:
        print("| " + " | ".join(row) + " |")
    for note in notes:
        print(f"\nNote: {note}")
    print(f"\nWall time: {time.monotonic() - started:.0f} s")

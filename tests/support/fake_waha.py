"""A stand-in for WAHA's process, for the single-container and pod-simulation tests.

    python fake_waha.py SESSIONS_DIR REPORT [SESSION]

On start it writes REPORT (JSON): its pid, the names of its environment variables, the values of
WHATSAPP_FILES_FOLDER and WHATSAPP_FILES_LIFETIME (``files``), and every file already in
SESSIONS_DIR (what the restore put there before WAHA started). Then it keeps
rewriting a NOWEB-like session ``default/SESSION`` (``creds.json``, ``pre-key-N.json``, plain
non-atomic writes) until SIGTERM or SIGINT; then it writes ``last-words.json`` (what a stopping
WAHA saves) and exits 0. ``FAKE_WAHA_EXIT_AFTER=SECONDS`` makes it exit 3 by itself instead.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path
from types import FrameType


def main(argv: list[str]) -> int:
    root, report = Path(argv[1]), Path(argv[2])
    session = root / "default" / (argv[3] if len(argv) > 3 else "alice")
    found = sorted(
        str(p.relative_to(root))
        for p in root.rglob("*")
        if p.is_file() and ".waha-sync" not in p.parts
    )
    stop = {"signal": ""}

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        stop["signal"] = signal.Signals(signum).name

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    exit_after = float(os.environ.get("FAKE_WAHA_EXIT_AFTER", "0"))
    started = time.monotonic()
    tmp = report.with_suffix(".tmp")
    files = {k: os.environ.get(k) for k in ("WHATSAPP_FILES_FOLDER", "WHATSAPP_FILES_LIFETIME")}
    tmp.write_text(
        json.dumps({"pid": os.getpid(), "env": sorted(os.environ), "files": files, "found": found})
    )
    tmp.rename(report)
    session.mkdir(parents=True, exist_ok=True)
    n = 0
    while not stop["signal"]:
        n += 1
        name = "creds.json" if n % 5 == 0 else f"pre-key-{n % 40}.json"
        data = json.dumps({"n": n, "key": os.urandom(24).hex(), "pad": "x" * 200}).encode()
        with (session / name).open("wb") as f:  # truncate, half, pause, rest: like Baileys
            f.write(data[: len(data) // 2])
            f.flush()
            time.sleep(0.002)
            f.write(data[len(data) // 2 :])
        if exit_after and time.monotonic() - started > exit_after:
            return 3
        time.sleep(0.05)
    (session / "last-words.json").write_text(json.dumps({"writes": n, "by": stop["signal"]}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))

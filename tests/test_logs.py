"""Log lines: one line per record whatever a file name holds, secrets never shown."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.support.dbtarget import DbTarget
from waha_sync.common.logs import printable


def test_control_characters_are_escaped_and_a_try_hint_stays() -> None:
    assert printable("a\x1b[2Jb\nFAKE\r\x7f\x9b") == "a\\x1b[2Jb\\nFAKE\\r\\x7f\\x9b"
    assert printable("problem (got 'x')\nTry: --flag") == "problem (got 'x')\nTry: --flag"
    assert printable("tab\tand ünïcode stay") == "tab\tand ünïcode stay"


def test_a_file_name_cannot_forge_a_line_or_drive_the_terminal(
    plain_db: DbTarget, tmp_path: Path
) -> None:
    root = tmp_path / "vol"
    root.mkdir()
    (root / "esc\x1b[2Jz\nFAKE: [SYNC] fenced.json").write_text('{"half')
    (root / "ok.json").write_text("{}")
    run = [sys.executable, "-m", "waha_sync.cli"]
    push = subprocess.run(
        [*run, "push", "--sessions-dir", str(root)],
        env=plain_db.env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert push.returncode == 0, push.stderr
    assert "\x1b" not in push.stderr
    assert not any(line.startswith("FAKE") for line in push.stderr.splitlines()), push.stderr
    assert "esc\\x1b[2Jz\\nFAKE: [SYNC] fenced.json: invalid JSON" in push.stderr
    (root / "weird\x07\nname.json").write_text("{}")
    assert (
        subprocess.run([*run, "push", "--sessions-dir", str(root)], env=plain_db.env()).returncode
        == 0
    )
    ls = subprocess.run(
        [*run, "ls"], env=plain_db.env(), capture_output=True, text=True, timeout=60
    )
    assert ls.returncode == 0, ls.stderr
    assert len(ls.stdout.splitlines()) == 2, ls.stdout  # ok.json and the weird one: one line each
    assert "weird\\x07\\nname.json" in ls.stdout

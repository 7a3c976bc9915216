"""Reading files that WAHA is writing at the same moment (real threads, real files)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from waha_sync.common.sync.read import FileVersion, read_version
from waha_sync.common.sync.scan import Candidate, Limits, Skipped, scan

SIZE = 4 * 1024 * 1024


def _candidate(root: Path, rel: str) -> Candidate:
    return next(c for c in scan(root, (), Limits(1 << 30)).candidates if c.rel == rel)


def test_a_writer_pausing_mid_file_never_yields_a_torn_version(tmp_path: Path) -> None:
    target = tmp_path / "blob.bin"
    target.write_bytes(b"\x00" * SIZE)
    stop = threading.Event()

    def rewrite() -> None:  # bursts of plain, non-atomic rewrites that pause half-way
        n = 0
        while not stop.is_set():
            for _ in range(3):
                n = (n + 1) % 255
                with target.open("r+b", buffering=0) as f:
                    f.write(bytes([n + 1]) * (SIZE // 2))
                    time.sleep(0.03)
                    f.write(bytes([n + 1]) * (SIZE // 2))
            stop.wait(0.5)

    writer = threading.Thread(target=rewrite)
    writer.start()
    whole = 0
    try:
        end = time.monotonic() + 4
        while time.monotonic() < end:
            got = read_version(_candidate(tmp_path, "blob.bin"))
            if isinstance(got, Skipped):
                assert "kept changing" in got.reason
                continue
            assert isinstance(got, FileVersion)
            assert len(set(got.data)) == 1, "a read mixed two versions"
            whole += 1
    finally:
        stop.set()
        writer.join()
    assert whole >= 3, "the writer rests 0.5 s between bursts: reads must succeed then"


def test_half_written_json_is_read_again_until_valid(tmp_path: Path) -> None:
    creds = tmp_path / "creds.json"
    creds.write_text('{"noiseKey": ')  # truncated, as writeFile leaves it mid-write

    def finish() -> None:
        time.sleep(0.2)
        creds.write_text('{"noiseKey": "abc"}')

    threading.Thread(target=finish).start()
    got = read_version(_candidate(tmp_path, "creds.json"), json_retry_seconds=2.0)
    assert isinstance(got, FileVersion) and got.data == b'{"noiseKey": "abc"}'

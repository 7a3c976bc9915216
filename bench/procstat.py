"""What /proc says about a process: memory, CPU time, context switches (Linux only)."""

from __future__ import annotations

import contextlib
import os
import re
from pathlib import Path

TICK = os.sysconf("SC_CLK_TCK")


def status(pid: int) -> dict[str, int]:
    """VmRSS / VmHWM in bytes from /proc/PID/status."""
    text = Path(f"/proc/{pid}/status").read_text()
    return {k: int(v) * 1024 for k, v in re.findall(r"(VmRSS|VmHWM):\s+(\d+) kB", text)}


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / TICK  # utime, stime (all threads)


def switches(pid: int) -> int:
    """Voluntary + nonvoluntary context switches, summed over the threads."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):  # the thread exited meanwhile
            text = (task / "status").read_text()
            total += sum(int(n) for n in re.findall(r"ctxt_switches:\s+(\d+)", text))
    return total


def proportional(pid: int) -> int:
    """Pss in bytes from /proc/PID/smaps_rollup (0 when the kernel lacks it)."""
    found = re.search(r"^Pss:\s+(\d+) kB", Path(f"/proc/{pid}/smaps_rollup").read_text(), re.M)
    return int(found.group(1)) * 1024 if found else 0


def children(pid: int) -> list[int]:
    """Direct children of ``pid`` (over all its threads); [] once it is gone."""
    kids: list[int] = []
    with contextlib.suppress(OSError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            with contextlib.suppress(OSError):
                kids += [int(k) for k in (task / "children").read_text().split()]
    return kids


def tree(pid: int) -> list[int]:
    """``pid`` and all its descendants alive now."""
    found, todo = [], [pid]
    while todo:
        p = todo.pop()
        found.append(p)
        todo += children(p)
    return found


class TreeSampler:
    """Samples a process tree's memory every ``interval`` s in a thread, until ``stop()``.

    ``peak_rss``: the highest sum of VmRSS over the tree seen at one sample (shared pages of
    forked children count once per process: an upper bound); ``peak_pss``: the highest sum
    of Pss (each shared page split among its sharers: what a memory cgroup holding the tree
    is charged, page cache aside); ``peak_one``: the highest VmHWM of any single process
    of it; ``timeline``: (seconds since start, summed VmRSS) about once a second.
    """

    def __init__(self, pid: int, interval: float = 0.02) -> None:
        import threading
        import time

        self.pid = pid
        self.interval = interval
        self.peak_rss = 0
        self.peak_pss = 0
        self.peak_one = 0
        self.processes = 0
        self.timeline: list[tuple[float, int]] = []
        self._clock = time.monotonic
        self._t0 = time.monotonic()
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        total = pss = 0
        pids = tree(self.pid)
        for p in pids:
            with contextlib.suppress(OSError):
                mem = status(p)
                total += mem.get("VmRSS", 0)
                self.peak_one = max(self.peak_one, mem.get("VmHWM", 0))
                pss += proportional(p)
        self.processes = max(self.processes, len(pids))
        self.peak_rss = max(self.peak_rss, total)
        self.peak_pss = max(self.peak_pss, pss)
        if not self.timeline or self._clock() - self._t0 - self.timeline[-1][0] >= 1:
            self.timeline.append((self._clock() - self._t0, total))

    def _run(self) -> None:
        while not self._done.wait(self.interval):
            self._sample()

    def stop(self) -> TreeSampler:
        self._done.set()
        self._thread.join()
        return self

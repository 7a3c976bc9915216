"""Reading SQLite's write-ahead log (``-wal``) without SQLite, one frame at a time.

Format (https://www.sqlite.org/fileformat2.html#walformat): a 32-byte header
(magic 0x377f0682 or 0x377f0683, whose last bit is the byte order of the
checksums; format version; page size; checkpoint sequence; salt-1; salt-2;
checksum-1, checksum-2 of the first 24 header bytes), then frames of a
24-byte header (page number; database size in pages after the commit, nonzero
only on a commit frame; salt-1; salt-2; cumulative checksum-1, -2 over the
first 8 header bytes and the page, continuing from the previous frame, or
from the WAL header for frame 1) and one page.

A frame is valid when its salts equal the header's and its checksum
continues the chain, which is the test SQLite's own recovery applies
(wal.c, ``walDecodeFrame``): a frame written by an earlier generation, a
torn frame or one left by a rolled-back transaction fails it. Everything
here reads with ``os.pread``, one frame at a time: memory does not depend
on the size of the log or of the database.
"""

from __future__ import annotations

import functools
import os
import struct
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

HEADER_BYTES = 32
FRAME_HEADER_BYTES = 24
MAGIC_LE = 0x377F0682
MAGIC_BE = 0x377F0683
_MASK = 0xFFFFFFFF
_HDR = struct.Struct(">8I")
_FRAME = struct.Struct(">6I")


@dataclass(frozen=True)
class WalHeader:
    """A WAL header; ``generation`` identifies one life of the log between two restarts."""

    big_endian: bool  # byte order of the checksums (magic 0x377f0683)
    page_size: int  # bytes
    checkpoint_seq: int
    salt1: int
    salt2: int
    checksum: tuple[int, int]  # the chain's start for frame 1

    @property
    def generation(self) -> tuple[int, int, int, bool, int]:
        return (self.checkpoint_seq, self.salt1, self.salt2, self.big_endian, self.page_size)

    def frame_bytes(self) -> int:
        return FRAME_HEADER_BYTES + self.page_size

    def frame_offset(self, index: int) -> int:
        """Byte offset of frame ``index`` (1-based) in the file."""
        return HEADER_BYTES + (index - 1) * self.frame_bytes()


def checksum(data: bytes, s0: int, s1: int, big_endian: bool) -> tuple[int, int]:
    """SQLite's WAL checksum (wal.c ``walChecksumBytes``) of ``data``, continuing (s0, s1).

    ``len(data)`` must be a multiple of 8. Over the 32-bit word pairs (a, b) of ``data``
    it runs ``s0 += a + s1; s1 += b + s0`` (mod 2**32): a linear recurrence, state
    ``v = (s0, s1)`` going to ``M v + (a, a + b)`` with ``M = [[1, 1], [1, 2]]``. So
    after n pairs ``v = M**n v + sum(M**(n-1-k) (a_k, a_k + b_k))``: two weighted sums
    over the words with weights from powers of ``M``, which numpy takes in C (wrapping
    uint64 arithmetic keeps every result right mod 2**32) instead of a loop in CPython:
    the follower's hot path is this checksum (its CPU cost: BENCHMARKS.md, "Large, busy
    SQLite").
    """
    words = np.frombuffer(data, dtype=">u4" if big_endian else "<u4").astype(np.uint64)
    w = _weights(len(words) // 2)
    a, b = words[0::2], words[1::2]
    c0 = (int(np.dot(w.a0, a)) + int(np.dot(w.b0, b))) & _MASK
    c1 = (int(np.dot(w.a1, a)) + int(np.dot(w.b1, b))) & _MASK
    m00, m01, m10, m11 = w.power
    return (m00 * s0 + m01 * s1 + c0) & _MASK, (m10 * s0 + m11 * s1 + c1) & _MASK


@dataclass(frozen=True)
class _Weights:
    a0: npt.NDArray[np.uint64]  # weight of word a_k in s0: (M**j)[0][0] + (M**j)[0][1]
    b0: npt.NDArray[np.uint64]  # weight of word b_k in s0: (M**j)[0][1]
    a1: npt.NDArray[np.uint64]
    b1: npt.NDArray[np.uint64]
    power: tuple[int, int, int, int]  # M**n


@functools.lru_cache(maxsize=8)
def _weights(n: int) -> _Weights:
    """Weights for ``n`` pairs: pair k is multiplied by ``M**(n-1-k)``."""
    powers = []  # M**0 .. M**n, mod 2**32
    m = (1, 0, 0, 1)
    for _ in range(n + 1):
        powers.append(m)
        m00, m01, m10, m11 = m
        m = (
            (m00 + m01) & _MASK,
            (m00 + 2 * m01) & _MASK,
            (m10 + m11) & _MASK,
            (m10 + 2 * m11) & _MASK,
        )
    # M**(j+1) = M**j @ M: each row times M's columns (1, 1) and (1, 2).
    rows = np.array(powers[n - 1 :: -1] if n else [], dtype=np.uint64).reshape(-1, 4)
    p00, p01, p10, p11 = rows[:, 0], rows[:, 1], rows[:, 2], rows[:, 3]
    return _Weights(p00 + p01, p01, p10 + p11, p11, powers[n])


def read_header(fd: int) -> WalHeader | None:
    """The WAL's header, or None when the file is shorter than one or it is not valid.

    An empty or missing header is normal: the log of a database whose last
    checkpoint truncated it (``wal_checkpoint(TRUNCATE)``), or not yet written.
    """
    raw = os.pread(fd, HEADER_BYTES, 0)
    if len(raw) < HEADER_BYTES:
        return None
    magic, _version, page_size, seq, salt1, salt2, c1, c2 = _HDR.unpack(raw)
    if magic not in (MAGIC_LE, MAGIC_BE):
        return None
    if page_size < 512 or page_size > 65536 or page_size & (page_size - 1):
        return None
    big = magic == MAGIC_BE
    if checksum(raw[:24], 0, 0, big) != (c1, c2):
        return None
    return WalHeader(big, page_size, seq, salt1, salt2, (c1, c2))


@dataclass(frozen=True)
class FrameHeader:
    """The 24-byte header of one frame."""

    pgno: int
    commit_pages: int  # database size in pages after this commit; 0: not a commit frame
    salt1: int
    salt2: int
    checksum: tuple[int, int]


def read_frame_header(fd: int, hdr: WalHeader, index: int) -> FrameHeader | None:
    """Frame ``index``'s header as it is in the file now (None: the file ends before it)."""
    raw = os.pread(fd, FRAME_HEADER_BYTES, hdr.frame_offset(index))
    if len(raw) < FRAME_HEADER_BYTES:
        return None
    pgno, commit, s1, s2, c1, c2 = _FRAME.unpack(raw)
    return FrameHeader(pgno, commit, s1, s2, (c1, c2))


@dataclass
class Scan:
    """The outcome of verifying frames from one position: where the valid chain ends.

    ``stop`` says why the chain ended at frame ``stop_index``: ``"eof"`` (the
    file ends exactly there), ``"short"`` (a partial frame), ``"salt"`` (the
    frame carries other salts, in ``stop_salts``), ``"checksum"`` (our salts, a
    checksum that does not continue the chain), ``"pgno"`` (page number 0),
    ``"budget"`` (more frames than the caller allowed).
    """

    last_commit: int  # index of the last valid commit frame (the start index - 1 if none)
    commit_pages: int  # its database size in pages (0 if none)
    commit_checksum: tuple[int, int]  # the chain's value after it
    last_valid: int  # index of the last valid frame, commit or not
    stop_index: int
    stop: str
    stop_salts: tuple[int, int] | None = None


def scan(
    fd: int, hdr: WalHeader, after: int, chain: tuple[int, int], budget: int | None = None
) -> Scan:
    """Verify frames ``after + 1``, ... of generation ``hdr``, the chain continuing from ``chain``.

    Reads each frame once (header and page, one ``pread``); keeps no page.
    ``budget`` stops the scan (``stop="budget"``) after that many frames.
    """
    size = hdr.frame_bytes()
    s0, s1 = chain
    last_commit, commit_pages, commit_ck = after, 0, chain
    index = after + 1
    big = hdr.big_endian
    while True:
        if budget is not None and index - after > budget:
            return Scan(last_commit, commit_pages, commit_ck, index - 1, index, "budget")
        raw = os.pread(fd, size, hdr.frame_offset(index))
        if len(raw) < size:
            stop = "eof" if not raw else "short"
            return Scan(last_commit, commit_pages, commit_ck, index - 1, index, stop)
        pgno, commit, salt1, salt2, c1, c2 = _FRAME.unpack_from(raw)
        if (salt1, salt2) != (hdr.salt1, hdr.salt2):
            return Scan(
                last_commit, commit_pages, commit_ck, index - 1, index, "salt", (salt1, salt2)
            )
        if pgno == 0:
            return Scan(last_commit, commit_pages, commit_ck, index - 1, index, "pgno")
        s0, s1 = checksum(raw[:8], s0, s1, big)
        s0, s1 = checksum(raw[FRAME_HEADER_BYTES:], s0, s1, big)
        if (s0, s1) != (c1, c2):
            return Scan(last_commit, commit_pages, commit_ck, index - 1, index, "checksum")
        if commit:
            last_commit, commit_pages, commit_ck = index, commit, (s0, s1)
        index += 1

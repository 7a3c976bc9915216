"""Content encoding: SHA-256 addressing, compression, 512 KiB chunks.

A blob is named by the SHA-256 of its raw bytes, so identical files are
stored once. The stored form is ``codec`` applied to the raw bytes, split
into chunks of at most ``CHUNK_BYTES`` (CockroachDB wants values well under
1 MiB). The codec is recorded per blob so it can change later: ``zstd`` or
``identity`` (for content that does not shrink, such as media).
"""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass

import zstandard

from waha_sync.common.errors import IntegrityError
from waha_sync.common.words import plural

CHUNK_BYTES = 512 * 1024
ZSTD_LEVEL = 3
_local = threading.local()


def _compressor() -> zstandard.ZstdCompressor:
    comp: zstandard.ZstdCompressor | None = getattr(_local, "comp", None)
    if comp is None:
        comp = _local.comp = zstandard.ZstdCompressor(level=ZSTD_LEVEL)
    return comp


def _decompressor() -> zstandard.ZstdDecompressor:
    dec: zstandard.ZstdDecompressor | None = getattr(_local, "dec", None)
    if dec is None:
        dec = _local.dec = zstandard.ZstdDecompressor()
    return dec


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class EncodedBlob:
    """A blob ready to store: its address, codec and chunks of stored bytes."""

    sha256: str
    size_bytes: int
    codec: str
    chunks: tuple[bytes, ...]

    @property
    def stored_bytes(self) -> int:
        return sum(len(c) for c in self.chunks)


def pack(data: bytes) -> tuple[str, bytes]:
    """``(codec, stored bytes)``: zstd, or ``identity`` when compressing does not help."""
    packed = _compressor().compress(data)
    if len(packed) >= len(data):
        return "identity", data
    return "zstd", packed


def unpack(codec: str, packed: bytes, size_bytes: int, path: str) -> bytes:
    """The raw bytes of ``packed`` (at most ``size_bytes``); ``IntegrityError`` names ``path``."""
    if codec == "zstd":
        try:
            return _decompressor().decompress(packed, max_output_size=max(size_bytes, 1))
        except zstandard.ZstdError as exc:
            raise IntegrityError(f"{path}: stored content is corrupt ({exc})") from exc
    if codec == "identity":
        return packed
    raise IntegrityError(
        f"{path}: stored with unknown codec {codec!r}", "upgrade waha-sync to read it"
    )


def encode(data: bytes, sha256: str | None = None) -> EncodedBlob:
    """Compress ``data`` (unless that does not help) and split it into chunks."""
    digest = sha256 or sha256_hex(data)
    codec, packed = pack(data)
    chunks = tuple(packed[i : i + CHUNK_BYTES] for i in range(0, len(packed), CHUNK_BYTES))
    return EncodedBlob(digest, len(data), codec, chunks or (b"",))


def decode(sha256: str, size_bytes: int, codec: str, chunks: list[bytes], path: str) -> bytes:
    """Reassemble and verify a blob; ``IntegrityError`` names ``path`` on any mismatch."""
    data = unpack(codec, b"".join(chunks), size_bytes, path)
    if len(data) != size_bytes or sha256_hex(data) != sha256:
        raise IntegrityError(
            f"{path}: stored content does not match its SHA-256 {sha256[:12]}… "
            f"({plural(len(data), 'byte')}, expected {size_bytes})",
            "push the file again from a good copy, or restore --at an earlier time",
        )
    return data

"""Hostile things to plant: rows in the database, damaged content, files in a volume.

Each planting function says what it planted, so the scenario in
``test_bad_input`` can check that the product refused or reported exactly it.
"""

from __future__ import annotations

import os
import random
import secrets
from collections.abc import Callable
from pathlib import Path

from tests.support.dbtarget import DbTarget

COLUMNS = "path, sha256, size_bytes, mode, mtime_ns, mime"


def plant(db: DbTarget, instance: str, path: str, like: str) -> None:
    """A stored row under ``path``, copied from the good row ``like`` (live and history)."""
    for table in ("waha_sync_entries", "waha_sync_versions"):
        cols = COLUMNS + (
            ", deleted, commit_id, first_uploaded_at, updated_at"
            if table == "waha_sync_entries"
            else ", commit_id"
        )
        db.sql(
            f"INSERT INTO {table} (instance, {cols}) SELECT instance, :p, "
            f"{cols.removeprefix('path, ')} FROM {table} WHERE instance = :i AND path = :l",
            p=path,
            i=instance,
            l=like,
        )


def hostile_path(rng: random.Random, outside: Path) -> str:
    """A stored path restore must refuse (an absolute one points into ``outside``)."""
    name = f"evil-{secrets.token_hex(3)}.json"
    folder = rng.choice(["default", "default/s0", "default/s1/deeper", "zz"])
    return rng.choice(
        [
            "../" * rng.randint(1, 4) + name,
            str(outside / name),  # absolute, somewhere we can look
            f"{folder}/" + "../" * rng.randint(2, 5) + name,
            f"{folder}/./{name}",
            f"{folder}//{name}",
            f"{folder}/{name}/",
            f"{folder}/..",
            ".",
            "",
            f"..\\..\\{name}",
            f"{folder}/" + "a" * 256,
            f"{folder}/" + "é" * 128,  # 256 bytes in UTF-8
            f"{folder}/" + "x" * 251 + "/../" + name,
        ]
    )


def corrupt(db: DbTarget, sha: str, rng: random.Random) -> str:
    """Damage one stored blob in one of several ways; which, for the failure message."""
    chunks = db.sql("SELECT seq, data FROM waha_sync_chunks WHERE sha256 = :s ORDER BY seq", s=sha)
    seq, data = rng.choice(chunks)
    blob = bytes(data)  # type: ignore[arg-type]
    at = rng.randrange(max(1, len(blob)))
    kinds: dict[str, Callable[[], None]] = {
        "flipped byte": lambda: _set_chunk(db, sha, seq, _flip(blob, at)),
        "cut chunk": lambda: _set_chunk(db, sha, seq, blob[:at]),
        "garbage chunk": lambda: _set_chunk(db, sha, seq, rng.randbytes(len(blob) or 1)),
        "lost chunk": lambda: db.sql(
            "DELETE FROM waha_sync_chunks WHERE sha256 = :s AND seq = :q", s=sha, q=seq
        ),
        "extra chunk": lambda: db.sql(
            "INSERT INTO waha_sync_chunks (sha256, seq, data) VALUES (:s, :q, :d)",
            s=sha,
            q=len(chunks),
            d=b"tail",
        ),
        "unknown codec": lambda: db.sql(
            "UPDATE waha_sync_blobs SET codec = 'lz5' WHERE sha256 = :s", s=sha
        ),
        "wrong size": lambda: [
            db.sql(f"UPDATE {t} SET size_bytes = size_bytes + 1 WHERE sha256 = :s", s=sha)
            for t in ("waha_sync_entries", "waha_sync_versions")
        ],
    }
    kind = rng.choice(sorted(kinds))
    kinds[kind]()
    return kind


def _flip(blob: bytes, at: int) -> bytes:
    if not blob:
        return b"\x00"
    return blob[:at] + bytes([blob[at] ^ 0x5A]) + blob[at + 1 :]


def _set_chunk(db: DbTarget, sha: str, seq: object, data: bytes) -> None:
    db.sql(
        "UPDATE waha_sync_chunks SET data = :d WHERE sha256 = :s AND seq = :q", d=data, s=sha, q=seq
    )


Expect = list[tuple[str, str]]  # (a piece of the shown path, a piece of the reason)


def item(kind: str, folder: Path, rng: random.Random, limit: int, good: dict[str, bytes]) -> Expect:
    """Create one hostile item in ``folder``; what the log must say about it."""
    tok = secrets.token_hex(3)
    rel = folder.relative_to(folder.parents[1]).as_posix()  # default/<folder>
    link = "symlink (links are not followed"
    if kind == "loop":
        (folder / f"loop-a{tok}").symlink_to(f"loop-b{tok}")
        (folder / f"loop-b{tok}").symlink_to(f"loop-a{tok}")
        return [(f"loop-a{tok}", link), (f"loop-b{tok}", link)]
    if kind in ("self", "up", "out", "dangling"):
        to = {"self": ".", "up": "..", "out": "/etc/hostname", "dangling": f"nowhere-{tok}"}[kind]
        (folder / f"{kind}{tok}").symlink_to(to)
        return [(f"{kind}{tok}", link)]
    if kind in ("long", "long-utf8"):
        name = (tok + "L" * 249) if kind == "long" else (tok + "é" * 124 + "x")  # 255 bytes
        data = rng.randbytes(rng.randint(0, limit))
        (folder / name).write_bytes(data)
        good[f"{rel}/{name}"] = data
        return []
    if kind == "bad-name":
        Path(os.fsdecode(os.fsencode(folder) + b"/bad\xff" + tok.encode())).write_bytes(b"x")
        return [(f"bad\\udcff{tok}", "name is not valid UTF-8")]
    if kind == "bad-folder":
        sub = Path(os.fsdecode(os.fsencode(folder) + b"/dir\xfe" + tok.encode()))
        sub.mkdir()
        (sub / "creds.json").write_text("{}")
        return [(f"dir\\udcfe{tok}", "name is not valid UTF-8")]
    if kind == "big":
        (folder / f"big{tok}.bin").write_bytes(rng.randbytes(rng.randint(limit + 1, 3 * limit)))
        return [(f"big{tok}.bin", "> limit")]
    if kind == "fifo":
        os.mkfifo(folder / f"fifo{tok}")
        return [(f"fifo{tok}", "not a regular file")]
    if kind == "unreadable":
        path = folder / f"secret{tok}.json"
        path.write_text('{"hidden": true}')
        path.chmod(0)
        return [(f"secret{tok}.json", "unreadable (permission denied)")]
    assert kind == "closed-folder", kind
    sub = folder / f"closed{tok}"
    sub.mkdir()
    (sub / "creds.json").write_text("{}")
    sub.chmod(0)
    return [(f"closed{tok}", "ermission denied")]


KINDS = [
    "loop",
    "self",
    "up",
    "out",
    "dangling",
    "long",
    "long-utf8",
    "bad-name",
    "bad-folder",
    "big",
    "fifo",
    "unreadable",
    "closed-folder",
]


def spoil_stored(root: Path, rng: random.Random) -> Expect:
    """Stored files become unreadable (a file, or its whole folder): stored versions stay."""
    if rng.random() < 0.5:
        victim = root / "default" / "s1" / "pre-key-1.json"
        victim.write_text('{"changed": "but unreadable"}')
        victim.chmod(0)
        return [("default/s1/pre-key-1.json", "unreadable (permission denied)")]
    (root / "default" / "s2" / "pre-key-2.json").write_text('{"changed": "in a closed folder"}')
    (root / "default" / "s2").chmod(0)
    return [("default/s2", "ermission denied")]


def said(log: str, expect: Expect) -> list[tuple[str, str]]:
    """The expectations no log line meets."""
    lines = log.splitlines()
    return [(n, r) for n, r in expect if not any(n in line and r in line for line in lines)]

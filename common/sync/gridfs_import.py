"""``waha-sync import-gridfs``: a MongoDB GridFS bucket into the instance, as one commit.

The seed's earlier design kept every session file in GridFS (``fs.files`` +
``fs.chunks``, the file name being the path under the sessions tree). This
reads such a bucket from a ``mongodump`` folder (``<db>/<bucket>.files.bson``
and ``<db>/<bucket>.chunks.bson``, or ``.bson.gz`` from ``mongodump --gzip``)
or from a live server (``--mongo-url``), keeps the newest upload per file name,
reassembles its chunks in order (``n``) and checks them against ``length``,
``chunkSize`` and ``md5`` when present. File names become paths under the
tree (``--strip-prefix`` removed first); any that would escape it is refused
with ``init.safepath``'s rules. The verified files are written into a scratch
tree (no symlink followed, each file complete or absent), which then goes
through ``push`` unchanged: same refusal rules and ``--force``, same SQLite
and JSON checks, same size limit and excludes, one commit.

Memory: one file's bytes at a time (chunks are written to scratch files as
they stream by, in any order).
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import logging
import math
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from waha_sync.common.config.settings import Settings
from waha_sync.common.errors import (
    ConfigError,
    DatabaseUnavailable,
    RefusedError,
    UnsafePathError,
    WahaSyncError,
)
from waha_sync.common.store.base import Store
from waha_sync.common.sync.marker import MARKER_DIR
from waha_sync.common.sync.push import PushOutcome, push
from waha_sync.common.sync.scan import fmt_bytes
from waha_sync.init.safepath import TargetDir, check_rel

log = logging.getLogger("waha_sync.sync")

DEFAULT_BUCKET = "fs"
FILE_MODE = 0o644  # GridFS keeps no permission bits; what WAHA's writeFile gives under umask 022
MONGO_TIMEOUT_MS = 5000
IDS_PER_QUERY = 500


@dataclass(frozen=True)
class GridFile:
    """One GridFS upload (a ``<bucket>.files`` document), the newest of its file name."""

    key: str  # the _id, as text: how chunks refer to it
    filename: str
    length: int
    chunk_size: int
    uploaded: datetime | None
    md5: str | None


@dataclass(frozen=True)
class Refused:
    name: str  # the GridFS file name (or the path, after the import)
    reason: str


@dataclass
class ImportReport:
    """What one import did. ``outcome`` is None when nothing was left to commit."""

    source: str
    imported: list[tuple[str, int]] = field(default_factory=list)  # (path, bytes)
    refused: list[Refused] = field(default_factory=list)
    older_versions: int = 0
    outcome: PushOutcome | None = None


class Source:
    """Where the bucket is read from: ``files()`` then ``chunks(keys)``."""

    description: str

    def files(self) -> Iterator[Mapping[str, Any]]:
        raise NotImplementedError

    def chunks(self, ids: Mapping[str, object]) -> Iterator[Mapping[str, Any]]:
        """The chunks of the files whose ``_id`` values are given (by key), in any order."""
        raise NotImplementedError

    def close(self) -> None:
        """Release connections (nothing for a dump)."""


def _key(value: object) -> str:
    return f"{type(value).__name__}:{value!r}"


# ---- a mongodump folder ------------------------------------------------------------------


class DumpSource(Source):
    """``<dir>/[<db>/]<bucket>.{files,chunks}.bson[.gz]`` as written by ``mongodump``."""

    def __init__(self, root: Path, bucket: str, db: str | None) -> None:
        if not root.is_dir():
            raise ConfigError(
                f"dump: not a directory (got {str(root)!r})",
                "--dump pointing at the folder mongodump wrote (it holds one folder per database)",
            )
        self.folder = self._find(root, bucket, db)
        self.bucket = bucket
        self.files_path = self._one(f"{bucket}.files")
        self.chunks_path = self._one(f"{bucket}.chunks")
        self.description = f"dump {self.folder} (bucket {bucket})"

    @staticmethod
    def _has(folder: Path, bucket: str) -> bool:
        return any((folder / f"{bucket}.files{ext}").is_file() for ext in (".bson", ".bson.gz"))

    def _find(self, root: Path, bucket: str, db: str | None) -> Path:
        if db is not None:
            if self._has(root / db, bucket):
                return root / db
            raise ConfigError(
                f"dump: no {bucket}.files.bson(.gz) in database folder {db!r} (got {str(root)!r})",
                "--db naming a folder of the dump that holds the GridFS bucket, or --bucket NAME",
            )
        if self._has(root, bucket):
            return root
        found = sorted(p for p in root.iterdir() if p.is_dir() and self._has(p, bucket))
        if len(found) == 1:
            return found[0]
        if not found:
            raise ConfigError(
                f"dump: no {bucket}.files.bson or {bucket}.files.bson.gz in it or in a database "
                f"folder of it (got {str(root)!r})",
                "--bucket NAME if the bucket is not 'fs', or --dump pointing at mongodump's output",
            )
        names = ", ".join(p.name for p in found)
        raise ConfigError(
            f"dump: several databases hold bucket {bucket!r}: {names} (got {str(root)!r})",
            f"--db {found[0].name}",
        )

    def _one(self, stem: str) -> Path:
        for ext in (".bson", ".bson.gz"):
            path = self.folder / f"{stem}{ext}"
            if path.is_file():
                return path
        raise ConfigError(
            f"dump: {stem}.bson(.gz) is missing (got {str(self.folder)!r})",
            "dump both collections of the bucket (mongodump --db DB dumps every collection)",
        )

    @staticmethod
    def _documents(path: Path) -> Iterator[Mapping[str, Any]]:
        import bson
        from bson.errors import InvalidBSON

        with path.open("rb") as raw:
            stream: IO[bytes] = raw
            if path.suffix == ".gz":
                stream = gzip.GzipFile(fileobj=raw)  # type: ignore[assignment]
            try:
                yield from bson.decode_file_iter(stream)
            except (InvalidBSON, OSError, EOFError) as exc:
                raise WahaSyncError(
                    f"dump: {path.name} is not valid BSON ({exc})",
                    "dump the bucket again; a dump must not be cut short",
                ) from exc
            finally:
                stream.close()

    def files(self) -> Iterator[Mapping[str, Any]]:
        return self._documents(self.files_path)

    def chunks(self, ids: Mapping[str, object]) -> Iterator[Mapping[str, Any]]:
        return (c for c in self._documents(self.chunks_path) if _key(c.get("files_id")) in ids)


# ---- a live server -----------------------------------------------------------------------


def _mongo_failure(url: str, exc: Exception) -> WahaSyncError:
    """A pymongo error as one line, without the URL's password."""
    from pymongo.errors import OperationFailure

    from waha_sync.common.db.url import redact_url

    shown = redact_url(url) if "://" in url else "***"
    if isinstance(exc, OperationFailure) and exc.code in (18, 13):
        return WahaSyncError(
            f"mongo_url: authentication failed (got {shown!r}): {exc.details or exc}".replace(
                url, shown
            ),
            "check the user, password and authSource in --mongo-url",
        )
    text = str(exc).split(", Timeout:")[0].split(" (configured timeouts")[0]
    return DatabaseUnavailable(
        f"mongo_url: cannot read from MongoDB (got {shown!r}): {text}".replace(url, shown),
        "check that the server runs and is reachable, or use --dump with a mongodump folder",
    )


class LiveSource(Source):
    """A bucket read from a MongoDB server with pymongo."""

    def __init__(self, url: str, bucket: str, db: str | None) -> None:
        from pymongo import MongoClient
        from pymongo.errors import ConfigurationError, InvalidURI

        self.url = url
        try:
            self.client: MongoClient[dict[str, Any]] = MongoClient(
                url,
                serverSelectionTimeoutMS=MONGO_TIMEOUT_MS,
                connectTimeoutMS=MONGO_TIMEOUT_MS,
                socketTimeoutMS=60_000,
                appname="waha-sync",
            )
        except (InvalidURI, ConfigurationError, ValueError) as exc:
            raise ConfigError(
                f"mongo_url: {str(exc).replace(url, '***')} (got a value that is not a "
                "MongoDB URL)",
                "--mongo-url 'mongodb://user:password@host:27017/waha?authSource=admin'",
            ) from None
        name = db
        if name is None:
            with contextlib.suppress(ConfigurationError):  # no database in the URL
                name = self.client.get_default_database().name
        if name is None:
            self.client.close()
            raise ConfigError(
                "db: no database named (got none in --mongo-url and no --db)",
                "--db waha, or the database in the URL: mongodb://host:27017/waha",
            )
        self.database = self.client[name]
        self.bucket = bucket
        self.description = f"MongoDB database {name} (bucket {bucket})"

    def _guard(self, documents: Iterable[Mapping[str, Any]]) -> Iterator[Mapping[str, Any]]:
        from pymongo.errors import PyMongoError

        try:
            yield from documents
        except PyMongoError as exc:
            raise _mongo_failure(self.url, exc) from None

    def files(self) -> Iterator[Mapping[str, Any]]:
        return self._guard(self.database[f"{self.bucket}.files"].find())

    def chunks(self, ids: Mapping[str, object]) -> Iterator[Mapping[str, Any]]:
        return self._guard(self._chunks(ids))

    def _chunks(self, ids: Mapping[str, object]) -> Iterator[Mapping[str, Any]]:
        values = list(ids.values())
        collection = self.database[f"{self.bucket}.chunks"]
        for start in range(0, len(values), IDS_PER_QUERY):
            part = values[start : start + IDS_PER_QUERY]
            cursor = collection.find({"files_id": {"$in": part}}).sort([("files_id", 1), ("n", 1)])
            yield from (c for c in cursor if _key(c.get("files_id")) in ids)

    def close(self) -> None:
        self.client.close()


# ---- reading and checking ----------------------------------------------------------------


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def newest_files(
    docs: Iterable[Mapping[str, Any]], report: ImportReport
) -> tuple[dict[str, GridFile], dict[str, object]]:
    """The newest upload per file name (latest ``uploadDate``, then the larger ``_id``), and
    the ``_id`` of each by its key. Malformed documents are refused in ``report``."""
    best: dict[str, tuple[tuple[datetime, str], GridFile, object]] = {}
    floor = datetime.min.replace(tzinfo=UTC)
    for doc in docs:
        name = doc.get("filename")
        length, size = _int(doc.get("length")), _int(doc.get("chunkSize"))
        label = name if isinstance(name, str) and name else f"(no name, _id {doc.get('_id')!s})"
        if not isinstance(name, str) or not name:
            report.refused.append(Refused(label, "no filename"))
            continue
        if length is None or length < 0 or size is None or size <= 0:
            report.refused.append(
                Refused(
                    label,
                    f"bad length or chunkSize ({doc.get('length')!r}, {doc.get('chunkSize')!r})",
                )
            )
            continue
        uploaded = doc.get("uploadDate")
        when = uploaded if isinstance(uploaded, datetime) else None
        if when is not None and when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        md5 = doc.get("md5")
        gf = GridFile(
            _key(doc.get("_id")), name, length, size, when, md5 if isinstance(md5, str) else None
        )
        rank = (when or floor, str(doc.get("_id")))
        if name in best:
            report.older_versions += 1
            if rank <= best[name][0]:
                continue
        best[name] = (rank, gf, doc.get("_id"))
    return {n: v[1] for n, v in best.items()}, {v[1].key: v[2] for v in best.values()}


def target_path(name: str, strip_prefix: str | None) -> str:
    """The path under the sessions tree for a GridFS file name; ``UnsafePathError`` when it
    would escape the tree or does not carry the prefix."""
    rel = name
    if strip_prefix:
        if not name.startswith(strip_prefix):
            raise UnsafePathError(f"{name!r}: does not start with --strip-prefix {strip_prefix!r}")
        rel = name[len(strip_prefix) :]
        if not strip_prefix.endswith("/"):
            rel = rel.removeprefix("/")
    check_rel(rel)
    return rel


class _Assembly:
    """Chunks of the wanted files, streamed to one scratch file each, then checked."""

    def __init__(self, scratch: Path, wanted: Mapping[str, GridFile]) -> None:
        self.scratch = scratch
        self.wanted = wanted
        self.index = {key: n for n, key in enumerate(sorted(wanted))}
        self.seen: dict[str, set[int]] = {key: set() for key in wanted}
        self.problems: dict[str, str] = {}

    def path(self, key: str) -> Path:
        return self.scratch / str(self.index[key])

    def add(self, chunk: Mapping[str, Any]) -> None:
        key = _key(chunk.get("files_id"))
        gf = self.wanted.get(key)
        if gf is None or key in self.problems:
            return
        n, data = _int(chunk.get("n")), chunk.get("data")
        count = math.ceil(gf.length / gf.chunk_size)
        if n is None or not isinstance(data, bytes):
            self.problems[key] = f"malformed chunk (n={chunk.get('n')!r})"
            return
        if n < 0 or n >= count:
            self.problems[key] = f"unexpected chunk n={n} (length {gf.length} needs {count})"
            return
        if n in self.seen[key]:
            self.problems[key] = f"chunk n={n} appears twice"
            return
        expected = gf.chunk_size if n < count - 1 else gf.length - gf.chunk_size * (count - 1)
        if len(data) != expected:
            self.problems[key] = f"chunk n={n} holds {len(data)} bytes, expected {expected}"
            return
        self.seen[key].add(n)
        fd = os.open(self.path(key), os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            os.pwrite(fd, data, n * gf.chunk_size)
        finally:
            os.close(fd)

    def finish(self, key: str) -> bytes | str:
        """The file's verified bytes, or why it is refused."""
        gf = self.wanted[key]
        if key in self.problems:
            return self.problems[key]
        count = math.ceil(gf.length / gf.chunk_size)
        missing = sorted(set(range(count)) - self.seen[key])
        if missing:
            shown = ", ".join(str(n) for n in missing[:5]) + (", ..." if len(missing) > 5 else "")
            return f"missing chunk n={shown} of {count}"
        data = self.path(key).read_bytes() if count else b""
        if len(data) != gf.length:
            return f"{len(data)} bytes reassembled, length says {gf.length}"
        if gf.md5 is not None:
            digest = hashlib.md5(data, usedforsecurity=False).hexdigest()
            if digest != gf.md5.lower():
                return f"md5 {digest} does not match the stored {gf.md5}"
        return data


def stage(
    source: Source,
    root: Path,
    scratch: Path,
    settings: Settings,
    strip_prefix: str | None,
    report: ImportReport,
) -> None:
    """Write every verified newest file of ``source`` under ``root``; refusals into ``report``."""
    newest, ids = newest_files(source.files(), report)
    wanted: dict[str, GridFile] = {}
    paths: dict[str, str] = {}
    for name, gf in sorted(newest.items()):
        try:
            rel = target_path(name, strip_prefix)
        except UnsafePathError as exc:
            reason = exc.message.partition(": ")[2] or exc.message
            reason = reason.replace("refusing stored path", "outside the sessions tree")
            report.refused.append(Refused(name, reason))
            continue
        if rel.split("/", 1)[0] == MARKER_DIR:  # a marker here would be read as our own
            report.refused.append(Refused(name, f"{MARKER_DIR}/ is reserved for waha-sync"))
            continue
        if gf.length > settings.max_file_bytes:
            report.refused.append(
                Refused(
                    name, f"{fmt_bytes(gf.length)} > limit {fmt_bytes(settings.max_file_bytes)}"
                )
            )
            continue
        if rel in paths.values():
            other = next(n for n, p in paths.items() if p == rel)
            report.refused.append(Refused(name, f"same path {rel!r} as {other!r}"))
            continue
        wanted[gf.key] = gf
        paths[gf.key] = rel
    assembly = _Assembly(scratch, wanted)
    if wanted:
        for chunk in source.chunks({k: ids[k] for k in wanted}):
            assembly.add(chunk)
    target = TargetDir(str(root))
    try:
        for key, gf in sorted(wanted.items(), key=lambda kv: paths[kv[0]]):
            got = assembly.finish(key)
            with contextlib.suppress(FileNotFoundError):
                assembly.path(key).unlink()
            if isinstance(got, str):
                report.refused.append(Refused(gf.filename, got))
                continue
            when = gf.uploaded or datetime.now(UTC)
            try:
                target.write(paths[key], got, FILE_MODE, int(when.timestamp() * 1e9))
            except UnsafePathError as exc:  # a file name that is also a folder of another
                report.refused.append(Refused(gf.filename, exc.message))
                continue
            report.imported.append((paths[key], len(got)))
    finally:
        target.close()


def import_gridfs(
    store: Store,
    settings: Settings,
    source: Source,
    *,
    strip_prefix: str | None = None,
    force: bool = False,
    work_dir: Path | None = None,
) -> ImportReport:
    """Import the newest version of every file of ``source`` into ``settings.instance``.

    Raises ``RefusedError`` (exit 2) when the instance already holds data and ``force`` is
    not given; ``WahaSyncError`` for an unreadable source; what ``push`` raises. Files that
    fail a check are not imported and are listed in ``report.refused``; the rest is one
    commit (``report.outcome``), through the same ``push`` as a directory. When no file
    passes, nothing is written (``report.outcome`` is None), even with ``force``.
    """
    report = ImportReport(source.description)
    current = store.instance(settings.instance)
    if not force and current is not None and current.last_commit > 0:
        raise RefusedError(
            f"import: refusing to import: instance {settings.instance!r} already holds data",
            "--force to replace the stored tree with the imported one (files not in the bucket "
            "are recorded as deleted), or --instance NAME for a new instance",
        )
    work = Path(tempfile.mkdtemp(prefix="waha-sync-gridfs-", dir=work_dir))
    try:
        tree, scratch = work / "tree", work / "chunks"
        tree.mkdir()
        scratch.mkdir()
        stage(source, tree, scratch, settings, strip_prefix, report)
        if not report.imported:
            # Nothing passed the checks: never let an empty tree replace a stored one.
            return report
        outcome = push(store, settings.model_copy(update={"sessions_dir": tree}), force=force)
        report.outcome = outcome
        # What push left out (excluded, invalid JSON, a SQLite file failing its check) keeps
        # its stored version, if any: not imported.
        left_out = {s.rel for s in outcome.report.skipped}
        for skipped in outcome.report.skipped:
            report.refused.append(Refused(skipped.rel, skipped.reason))
        report.imported = [(p, n) for p, n in report.imported if p not in left_out]
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return report

"""``waha-sync import-gridfs``: a MongoDB GridFS bucket into the instance as one commit.

The import itself is ``waha_sync.common.sync.gridfs_import``.
"""

from __future__ import annotations

import argparse
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

from waha_sync.cli.command import DB, Command
from waha_sync.common.config.settings import Settings
from waha_sync.common.errors import ConfigError
from waha_sync.common.logs import register_secret, scrub
from waha_sync.common.store.factory import open_store
from waha_sync.common.sync.gridfs_import import (
    DEFAULT_BUCKET,
    DumpSource,
    ImportReport,
    LiveSource,
    Source,
    import_gridfs,
)
from waha_sync.common.sync.scan import fmt_bytes

SEED_MONGO_ENV = "WHATSAPP_SESSIONS_MONGO_URL"  # the seed's own setting, read as a fallback

NAME = "import-gridfs"
COMPONENT = "sync"
EXAMPLE = "waha-sync import-gridfs --dump ./dump --strip-prefix sessions/"
SUMMARY = "Import the newest version of every file in a MongoDB GridFS bucket, as one commit."
DETAIL = (
    "Reads a GridFS bucket (default 'fs': fs.files + fs.chunks) from a mongodump folder "
    "(--dump; .bson or --gzip's .bson.gz) or a live server (--mongo-url, or "
    f"{SEED_MONGO_ENV} in the environment), keeps the newest upload per file name, "
    "reassembles its chunks and checks length and md5, maps file names to paths under the "
    "sessions tree (--strip-prefix first) and refuses any that would escape it, then stores "
    "the tree as push does: one commit, refused into an instance that holds data unless "
    "--force (which replaces the stored tree). Prints every file imported and refused. "
    "Exit 0: all imported; 1: a file was refused (the rest is committed) or the source "
    "could not be read; 2: usage, or the instance holds data."
)
SETTINGS = (
    *DB,
    "sessions_dir",
    "instance",
    "max_file_bytes",
    "max_sqlite_bytes",
    "exclude",
    "workers",
    "local_db_dir",
)


@dataclass(frozen=True)
class Options:
    dump: Path | None = None  # a mongodump folder; or
    mongo_url: str | None = None  # a live server (default: SEED_MONGO_ENV)
    bucket: str = DEFAULT_BUCKET
    db: str | None = None  # the database holding the bucket; None: the URL's or the dump's
    strip_prefix: str | None = None  # removed from every file name (required on each)
    force: bool = False  # import into an instance that holds data, replacing its tree


def add_flags(sub: argparse.ArgumentParser) -> None:
    source = sub.add_mutually_exclusive_group()
    source.add_argument(
        "--dump",
        type=Path,
        metavar="DIR",
        help="Folder written by mongodump (with one folder per database, or a database "
        "folder itself).",
    )
    source.add_argument(
        "--mongo-url",
        metavar="URL",
        help=f"MongoDB URL to read from (default: {SEED_MONGO_ENV} from the environment).",
    )
    sub.add_argument(
        "--bucket", default=DEFAULT_BUCKET, metavar="NAME", help="GridFS bucket (default: fs)."
    )
    sub.add_argument(
        "--db",
        metavar="NAME",
        help="Database holding the bucket (default: the URL's, or the only one in the dump "
        "that has it).",
    )
    sub.add_argument(
        "--strip-prefix",
        metavar="PREFIX",
        help="Remove this from the start of every file name (e.g. /app/.sessions/); a file "
        "name without it is refused.",
    )
    sub.add_argument(
        "--force",
        action="store_true",
        help="Import into an instance that already holds data: claims it and replaces the "
        "stored tree.",
    )


def options(args: argparse.Namespace) -> Options:
    return Options(
        dump=args.dump,
        mongo_url=args.mongo_url,
        bucket=args.bucket,
        db=args.db,
        strip_prefix=args.strip_prefix,
        force=args.force,
    )


def _source(options: Options) -> Source:
    if options.dump is not None:
        return DumpSource(options.dump, options.bucket, options.db)
    url = options.mongo_url or os.environ.get(SEED_MONGO_ENV, "").strip()
    if not url:
        raise ConfigError(
            "import-gridfs: no source (got neither --dump nor --mongo-url)",
            f"--dump ./dump (from mongodump), or --mongo-url URL / {SEED_MONGO_ENV}",
        )
    parts = urlsplit(url) if "://" in url else None
    if parts is not None and parts.password:
        register_secret(unquote(parts.password))
        register_secret(parts.password)
    return LiveSource(url, options.bucket, options.db)


def _print(report: ImportReport) -> None:
    for path, size in report.imported:
        print(f"imported {path} ({fmt_bytes(size)})")
    for refused in report.refused:
        print(scrub(f"refused {refused.name}: {refused.reason}"))


def run(settings: Settings, options: Options) -> int:
    """Import, print every file imported and refused; 0, or 1 when a file was refused."""
    log = logging.getLogger(f"waha_sync.{COMPONENT}")
    source = _source(options)  # usage errors before any I/O on our database
    try:
        store = open_store(
            settings.database(),
            COMPONENT,
            chaos_40001_rate=settings.chaos_40001_rate,
            wait_seconds=settings.wait_seconds,
        )
        report = import_gridfs(
            store, settings, source, strip_prefix=options.strip_prefix, force=options.force
        )
    finally:
        source.close()
    _print(report)
    outcome = report.outcome
    commit = "none"
    if outcome is not None and outcome.report.commit_id is not None:
        commit = str(outcome.report.commit_id)
    elif outcome is not None:
        commit = "none (nothing changed)"
    total = sum(size for _path, size in report.imported)
    print(
        f"import-gridfs: {len(report.imported)} files imported ({fmt_bytes(total)}) from "
        f"{report.source} into instance {settings.instance}; {len(report.refused)} refused; "
        f"{report.older_versions} older versions ignored; commit {commit}"
    )
    if report.refused:
        log.error(
            "%d GridFS files were refused (listed above) and are not in the instance",
            len(report.refused),
        )
        return 1
    return 0


COMMAND = Command(
    name=NAME,
    summary=SUMMARY,
    example=EXAMPLE,
    detail=DETAIL,
    settings=SETTINGS,
    component=COMPONENT,
    add_flags=add_flags,
    options=options,
    run=run,
)

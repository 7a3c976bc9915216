"""``waha-sync ls``: list the stored live files of the instance."""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from typing import Any

from waha_sync.cli.command import DB, Command
from waha_sync.common.config.settings import Settings
from waha_sync.common.db.database import Database
from waha_sync.common.db.schema import schema_version
from waha_sync.common.errors import WahaSyncError
from waha_sync.common.logs import printable
from waha_sync.common.store.factory import open_store

NAME = "ls"
COMPONENT = "cli"
SUMMARY = "List the stored live files of the instance."
EXAMPLE = "waha-sync ls --json"
DETAIL = (
    "Lists path, size and time of every stored live file of --instance. An instance the "
    "database does not know is an error (exit 1) that lists the known ones."
)
SETTINGS = (*DB, "instance", "local_db_dir")
KNOWN_SHOWN = 20  # instances named in the "unknown instance" error


@dataclass(frozen=True)
class Options:
    json: bool = False  # one JSON array instead of lines


def add_flags(sub: argparse.ArgumentParser) -> None:
    sub.add_argument("--json", action="store_true", help="Print one JSON array.")


def options(args: argparse.Namespace) -> Options:
    return Options(json=args.json)


def known_instances(db: Database) -> list[str]:
    """The instances the database knows, by name (media trees end in ``/media``)."""
    names = db.transaction(
        lambda tx: tx.values("SELECT instance FROM waha_sync_instances ORDER BY instance")
    )
    return [str(name) for name in names]


def run(settings: Settings, options: Options) -> int:
    """Print the live files of ``--instance``; an instance the database lacks is an error."""
    store = open_store(
        settings.database(), COMPONENT, chaos_40001_rate=settings.chaos_40001_rate, schema=False
    )
    db = store.db
    rows: list[dict[str, Any]] = []
    if schema_version(db) == 0 or store.instance(settings.instance) is None:
        known = known_instances(db) if schema_version(db) > 0 else []
        shown = ", ".join(known[:KNOWN_SHOWN]) + (", ..." if len(known) > KNOWN_SHOWN else "")
        raise WahaSyncError(
            f"instance: unknown to this database (got {settings.instance!r}); "
            + (f"known: {shown}" if known else "it holds no instance yet"),
            f"--instance {known[0]}" if known else "waha-sync push or the sidecar stores one",
        )
    for page in store.live_entries(settings.instance):
        rows.extend(
            {
                "path": e.path,
                "size_bytes": e.size_bytes,
                "sha256": e.sha256,
                "updated_at": e.updated_at.isoformat() if e.updated_at else None,
            }
            for e in page
        )
    if options.json:
        print(json.dumps(rows, ensure_ascii=False))
    else:
        for row in rows:
            print(f"{row['size_bytes']:>10}  {row['updated_at']}  {printable(row['path'])}")
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
    finds_local=True,
)

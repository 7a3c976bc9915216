"""Read-only subcommands: ``ls`` lists the stored tree, ``check`` reports the server."""

from __future__ import annotations

import argparse
import json
import statistics
import time
from typing import Any

from waha_sync.cli.commands import open_db
from waha_sync.common.config.settings import Settings
from waha_sync.common.db.database import Database
from waha_sync.common.db.schema import LATEST, schema_version
from waha_sync.common.errors import WahaSyncError
from waha_sync.common.store.postgres import PgStore

KNOWN_SHOWN = 20  # instances named in the "unknown instance" error


def known_instances(db: Database) -> list[str]:
    """The instances the database knows, by name (media trees end in ``/media``)."""
    names = db.transaction(
        lambda tx: tx.values("SELECT instance FROM waha_sync_instances ORDER BY instance")
    )
    return [str(name) for name in names]


def run_ls(settings: Settings, args: argparse.Namespace) -> int:
    """Print the live files of ``--instance``; an instance the database lacks is an error."""
    db = open_db(settings, "cli", 0)
    rows: list[dict[str, Any]] = []
    store = PgStore(db)
    if schema_version(db) == 0 or store.instance(settings.instance) is None:
        known = known_instances(db) if schema_version(db) > 0 else []
        shown = ", ".join(known[:KNOWN_SHOWN]) + (", ..." if len(known) > KNOWN_SHOWN else "")
        raise WahaSyncError(
            f"instance: unknown to this database (got {settings.instance!r}); "
            + (f"known: {shown}" if known else "it holds no instance yet"),
            f"--instance {known[0]}" if known else "waha-sync push or the sidecar stores one",
        )
    if True:
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
    if args.json:
        print(json.dumps(rows, ensure_ascii=False))
    else:
        for row in rows:
            print(f"{row['size_bytes']:>10}  {row['updated_at']}  {row['path']}")
    return 0


def run_check(settings: Settings, args: argparse.Namespace) -> int:
    db = open_db(settings, "cli", 0)
    conn = db.connect()
    samples = []
    for _ in range(5):
        t0 = time.perf_counter()
        conn.run("SELECT 1")
        samples.append((time.perf_counter() - t0) * 1000)
    version = schema_version(db)
    print(f"url:      {db.params.redacted()}")
    print(f"server:   {db.kind} ({db.version})")
    print(f"tls:      {'yes' if db.tls else 'no'}")
    print(
        f"schema:   {version} (this waha-sync: {LATEST})"
        + ("" if version else "; created by the first restore or push")
    )
    print(f"latency:  {statistics.median(samples):.2f} ms (median of 5 round trips)")
    return 0

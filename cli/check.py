"""``waha-sync check``: connect once and report the server, TLS, schema and latency."""

from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import dataclass

from waha_sync.cli.command import DB, Command, no_flags
from waha_sync.common.config.settings import Settings
from waha_sync.common.db.schema import LATEST, schema_version
from waha_sync.common.store.factory import open_store

NAME = "check"
COMPONENT = "cli"
SUMMARY = "Connect and report server kind, version, TLS, schema version and latency."
EXAMPLE = "waha-sync check --database-url 'postgresql://user:password@host:5432/db'"
DETAIL = (
    "Connects once and prints the server kind and version, whether TLS is used, the "
    "schema version and the round-trip latency."
)
SETTINGS = (*DB, "local_db_dir")
ROUND_TRIPS = 5  # latency samples; the median is shown


@dataclass(frozen=True)
class Options:
    """check has no flags of its own."""


def options(_args: argparse.Namespace) -> Options:
    return Options()


def run(settings: Settings, _options: Options) -> int:
    """Print URL (password hidden), server, TLS, schema version and latency; 0."""
    store = open_store(
        settings.database(), COMPONENT, chaos_40001_rate=settings.chaos_40001_rate, schema=False
    )
    db = store.db
    conn = db.connect()
    samples = []
    for _ in range(ROUND_TRIPS):
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
    print(f"latency:  {statistics.median(samples):.2f} ms (median of {ROUND_TRIPS} round trips)")
    return 0


COMMAND = Command(
    name=NAME,
    summary=SUMMARY,
    example=EXAMPLE,
    detail=DETAIL,
    settings=SETTINGS,
    component=COMPONENT,
    add_flags=no_flags,
    options=options,
    run=run,
    finds_local=True,
)

"""The flags that belong to one subcommand only (settings flags come from the config)."""

from __future__ import annotations

import argparse
from datetime import datetime

from waha_sync.common.errors import ConfigError


def add_command_flags(name: str, sub: argparse.ArgumentParser) -> None:
    if name in ("push", "sidecar"):
        sub.add_argument(
            "--force",
            action="store_true",
            help="Upload even without this instance's restore marker: claims the instance "
            "and overwrites the stored tree.",
        )
    if name == "restore":
        sub.add_argument(
            "--at",
            type=_timestamp,
            metavar="TIMESTAMP",
            help="Restore the tree as of this ISO 8601 time (retained history).",
        )
        sub.add_argument(
            "--read-only",
            action="store_true",
            help="Restore a copy for inspection: claims nothing; no pushing from it.",
        )
    if name == "up":
        sub.add_argument(
            "--local-port",
            type=int,
            default=None,
            metavar="PORT",
            help="TCP port of the embedded PostgreSQL (default: a free one; other commands "
            "find it in the data folder).",
        )
    if name == "import-gridfs":
        from waha_sync.cli.gridfs import add_flags

        add_flags(sub)
    if name == "ls":
        sub.add_argument("--json", action="store_true", help="Print one JSON array.")


def _timestamp(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text)
    except ValueError:  # a ConfigError passes through argparse: one line and a hint, exit 2
        raise ConfigError(
            f"at: not an ISO 8601 time (got {text!r})",
            "--at 2026-01-09T10:30:00Z (or 2026-01-09 for midnight, local time)",
        ) from None
    return value if value.tzinfo else value.astimezone()

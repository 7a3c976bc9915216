"""The ``waha-sync`` command: parse, load settings, dispatch, map errors to exit codes.

Exit codes: 0 success or nothing to do; 1 runtime failure; 2 usage or
configuration error. Errors are one clear line (plus ``Try:``), never a
traceback (``--log-level DEBUG`` adds one for unexpected failures).
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from waha_sync import __version__, commands, flags, info, local
from waha_sync.common.cli_settings import add_setting_flags, load_settings
from waha_sync.common.errors import WahaSyncError
from waha_sync.common.logs import scrub, setup_logging

COMMANDS = {
    "push": (
        commands.run_push,
        "Upload the sessions directory to the database as one commit.",
        "Walks --sessions-dir (symlinks are not followed), snapshots SQLite databases "
        "consistently, skips invalid JSON and files over the limit (naming each), uploads new "
        "or changed files and records deletions. Refuses to push into an instance that already "
        "holds data from a directory without its restore marker, unless --force.",
    ),
    "restore": (
        commands.run_restore,
        "Fill the sessions directory from the database (the init container).",
        "Waits for the database, applies migrations, claims the instance. A volume that holds "
        "this instance's current marker (it was the last writer) is kept as it is; otherwise "
        "every stored file is written (temp file + rename, SHA-256 verified): identical local "
        "files are left alone, differing and unknown ones (SQLite -wal/-shm/-journal with their "
        "database) moved to .waha-sync/displaced/<UTC time>/. Writes the marker "
        ".waha-sync/restored.json on success.",
    ),
    "gc": (
        commands.run_gc,
        "Delete history older than --retention-hours and content nothing refers to.",
        "Keeps the live tree and every state from the retention horizon on (restore --at any "
        "later time gives the same tree); deletes older replaced versions, old tombstones and "
        "commit records, then stored content that no file or version of any instance refers "
        "to and that no writer used within the last hour. Works in small transactions, safe "
        "while pushes and restores run. The sidecar does this every --gc-interval-seconds.",
    ),
    "sidecar": (
        commands.run_sidecar,
        "Keep the database equal to the sessions directory while WAHA runs.",
        "Requires this instance's restore marker (unless --force), compares the tree with the "
        "database, then watches it with inotify and ships every change once it has been quiet "
        "for --debounce-seconds (at most --max-delay-seconds late), one commit per batch. "
        "Survives database outages; stops writing if another pod claims the instance. "
        "SIGTERM/SIGINT: final flush within --shutdown-timeout-seconds, exit 0.",
    ),
    "up": (
        local.run_up,
        "Run locally: restore, then the sidecar (an embedded PostgreSQL if no URL is given).",
        "For a laptop: with no database URL configured, starts an embedded PostgreSQL whose "
        "data lives in the user's state directory (printed), restores --sessions-dir from it, "
        "then syncs it continuously until Ctrl-C (which ships what is pending first).",
    ),
    "ls": (info.run_ls, "List the stored live files of the instance.", None),
    "check": (
        info.run_check,
        "Connect and report server kind, version, TLS, schema version and latency.",
        None,
    ),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="waha-sync",
        description="Keeps WAHA's session directory in PostgreSQL or CockroachDB.",
        epilog="Exit codes: 0 success or nothing to do, 1 runtime failure, 2 usage/config error.",
    )
    parser.add_argument("--version", action="version", version=f"waha-sync {__version__}")
    subs = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (handler, summary, detail) in COMMANDS.items():
        sub = subs.add_parser(name, help=summary, description=detail or summary)
        sub.set_defaults(handler=handler)
        flags.add_command_flags(name, sub)
        add_setting_flags(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    debug = logging_ready = False
    try:
        settings = load_settings(args)
        debug = settings.log_level == "DEBUG"
        setup_logging(settings.log_level, settings.log_format)
        logging_ready = True
        code: int = args.handler(settings, args)
        return code
    except WahaSyncError as exc:
        if logging_ready:
            component = commands.COMPONENT[args.command]
            logging.getLogger(f"waha_sync.{component}").error("%s", exc.render())
        else:
            print(scrub(f"waha-sync {args.command}: error: {exc.render()}"), file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(f"waha-sync {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        logging.getLogger("waha_sync.cli").error(
            "unexpected failure: %s: %s",
            type(exc).__name__,
            commands.describe(exc),
            exc_info=debug,
        )
        return 1

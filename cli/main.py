"""The ``waha-sync`` command: parse, load settings, dispatch, map errors to exit codes.

Exit codes: 0 success or nothing to do; 1 runtime failure; 2 usage or
configuration error. Errors are one clear line (plus ``Try:``), never a
traceback (``--log-level DEBUG`` adds one for unexpected failures).
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import NoReturn

from pydantic import SecretStr

from waha_sync.cli import __version__, commands, flags, gridfs, info, local
from waha_sync.common.config.flags import add_setting_flags, load_settings, start_warnings
from waha_sync.common.config.settings import Settings
from waha_sync.common.errors import WahaSyncError
from waha_sync.common.logs import scrub, setup_logging

Handler = Callable[[Settings, argparse.Namespace], int]


@dataclass(frozen=True)
class Command:
    handler: Handler
    summary: str
    example: str
    detail: str
    settings: tuple[str, ...]  # the settings it uses: the flags its --help shows


# Settings every command that reads the database uses.
_DB = ("database_url", "log_level", "log_format", "secrets_dir")
_MEDIA = ("media_storage", "media_dir", "media_database_url")
_HTTP = (
    "port",
    "host",
    "api_key",
    "api_key_exclude_path",
    "dashboard_username",
    "dashboard_password",
    "unhealthy_after_seconds",
)
_SIDECAR = (
    "sessions_dir",
    "instance",
    "max_file_bytes",
    "max_sqlite_bytes",
    "exclude",
    "workers",
    "debounce_seconds",
    "max_delay_seconds",
    "reconcile_seconds",
    "shutdown_timeout_seconds",
    "retention_hours",
    "gc_interval_seconds",
    *_MEDIA,
    *_HTTP,
)

COMMANDS: dict[str, Command] = {
    "up": Command(
        local.run_up,
        "Run on a laptop: restore, then sync until Ctrl-C (embedded PostgreSQL without a URL).",
        "waha-sync up",
        "For a laptop: with no database URL, starts an embedded PostgreSQL (durable, its data "
        "in --local-db-dir), restores the sessions folder (default: next to that data, printed) "
        "from it, then syncs it continuously. Ctrl-C ships what is pending, then stops the "
        "database. ls, check, push, gc and restore without a URL find this database by "
        "themselves (same --local-db-dir), running or not.",
        (
            *_DB,
            *_SIDECAR,
            "wait_seconds",
            "uid",
            "gid",
            "restore_media",
            "local_db_dir",
            "displaced_retention_hours",
        ),
    ),
    "restore": Command(
        commands.run_restore,
        "Fill the sessions directory from the database (the init container).",
        "waha-sync restore --sessions-dir /app/.sessions",
        "Waits for the database, applies migrations, claims the instance. A volume that holds "
        "this instance's current marker (it was the last writer) is kept as it is; otherwise "
        "every stored file is written (temp file + rename, SHA-256 verified): identical local "
        "files are left alone, differing and unknown ones (SQLite -wal/-shm/-journal with their "
        "database) moved to .waha-sync/displaced/<UTC time>/. Writes the marker "
        ".waha-sync/restored.json on success.",
        (
            *_DB,
            "wait_seconds",
            "sessions_dir",
            "instance",
            "workers",
            "uid",
            "gid",
            "restore_media",
            *_MEDIA,
            "local_db_dir",
            # A surviving volume is compared with the stored tree as the sidecar would.
            "max_file_bytes",
            "max_sqlite_bytes",
            "exclude",
            "displaced_retention_hours",
        ),
    ),
    "sidecar": Command(
        commands.run_sidecar,
        "Keep the database equal to the sessions directory while WAHA runs.",
        "waha-sync sidecar --sessions-dir /app/.sessions",
        "Requires this instance's restore marker (unless --force), compares the tree with the "
        "database, then watches it with inotify and ships every change once it has been quiet "
        "for --debounce-seconds (at most --max-delay-seconds late), one commit per batch. "
        "Survives database outages; stops writing if another pod claims the instance. "
        "SIGTERM/SIGINT: final flush within --shutdown-timeout-seconds, exit 0.",
        (*_DB, *_SIDECAR),
    ),
    "push": Command(
        commands.run_push,
        "Upload the sessions directory to the database as one commit.",
        "waha-sync push --sessions-dir ./sessions",
        "Walks --sessions-dir (symlinks are not followed), snapshots SQLite databases "
        "consistently, skips invalid JSON and files over the limit (naming each), uploads new "
        "or changed files and records deletions. Refuses to push into an instance that already "
        "holds data from a directory without its restore marker, unless --force.",
        (
            *_DB,
            "wait_seconds",
            "sessions_dir",
            "instance",
            "max_file_bytes",
            "max_sqlite_bytes",
            "exclude",
            "workers",
            "local_db_dir",
        ),
    ),
    "import-gridfs": Command(
        gridfs.run_import_gridfs,
        gridfs.SUMMARY,
        "waha-sync import-gridfs --dump ./dump --strip-prefix sessions/",
        gridfs.DETAIL,
        (
            *_DB,
            "sessions_dir",
            "instance",
            "max_file_bytes",
            "max_sqlite_bytes",
            "exclude",
            "workers",
            "local_db_dir",
        ),
    ),
    "gc": Command(
        commands.run_gc,
        "Delete history older than --retention-hours and content nothing refers to.",
        "waha-sync gc --retention-hours 24",
        "Keeps the live tree and every state from the retention horizon on (restore --at any "
        "later time gives the same tree); deletes older replaced versions, old tombstones and "
        "commit records, then stored content that no file or version of any instance refers "
        "to and that no writer used within the last hour. Works in small transactions, safe "
        "while pushes and restores run. The sidecar does this every --gc-interval-seconds.",
        (
            *_DB,
            "wait_seconds",
            "instance",
            "retention_hours",
            "media_storage",
            "media_database_url",
            "local_db_dir",
        ),
    ),
    "ls": Command(
        info.run_ls,
        "List the stored live files of the instance.",
        "waha-sync ls --json",
        "Lists path, size and time of every stored live file of --instance. An instance the "
        "database does not know is an error (exit 1) that lists the known ones.",
        (*_DB, "instance", "local_db_dir"),
    ),
    "check": Command(
        info.run_check,
        "Connect and report server kind, version, TLS, schema version and latency.",
        "waha-sync check --database-url 'postgresql://user:password@host:5432/db'",
        "Connects once and prints the server kind and version, whether TLS is used, the "
        "schema version and the round-trip latency.",
        (*_DB, "local_db_dir"),
    ),
}
# Commands that, given no database URL, use the embedded database `up` keeps.
FIND_LOCAL = ("ls", "check", "push", "gc", "restore")
# Commands that write into or read --sessions-dir: it must be a folder if it exists.
USES_DIR = ("up", "restore", "sidecar", "push")


class Parser(argparse.ArgumentParser):
    """argparse with errors in the house style: one line and a ``Try:`` hint, exit 2."""

    command: str | None = None  # the subcommand on the command line, for the hint

    def error(self, message: str) -> NoReturn:
        prog = self.prog if self.command is None else f"{self.prog} {self.command}"
        print(f"{prog}: error: {message}\nTry: {prog} --help", file=sys.stderr)
        raise SystemExit(2)


def _overview() -> str:
    width = max(len(n) for n in COMMANDS)
    lines = ["commands (each has --help with its own flags):"]
    for name, cmd in COMMANDS.items():
        lines.append(f"  {name:<{width}}  {cmd.summary}")
        lines.append(f"  {'':<{width}}    e.g. {cmd.example}")
    lines += [
        "",
        "Settings also come from the environment (WAHA_SYNC_<NAME>) and secret files; "
        "see README.md.",
        "Exit codes: 0 success or nothing to do, 1 runtime failure, 2 usage/config error.",
    ]
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="waha-sync",
        description="Keeps WAHA's session directory in PostgreSQL or CockroachDB.",
        epilog=_overview(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        usage="waha-sync [--version] COMMAND [FLAGS]",
    )
    parser.add_argument("--version", action="version", version=f"waha-sync {__version__}")
    subs = parser.add_subparsers(
        dest="command", required=True, metavar="COMMAND", help=argparse.SUPPRESS, prog="waha-sync"
    )
    for name, cmd in COMMANDS.items():
        sub = subs.add_parser(
            name,
            description=cmd.detail,
            epilog=f"Example: {cmd.example}",
            add_help=True,
        )
        sub.set_defaults(handler=cmd.handler)
        flags.add_command_flags(name, sub)
        add_setting_flags(sub, shown=set(cmd.settings))
    return parser


def _dispatch(settings: Settings, args: argparse.Namespace) -> int:
    name: str = args.command
    handler: Handler = args.handler
    if name in USES_DIR and name != "up":  # up picks its folder first (see local.run_up)
        commands.require_folder(settings.sessions_dir, may_create=name == "restore")
    if name in FIND_LOCAL and settings.database_url is None:
        with local.embedded_database(settings, name) as url:
            found = settings.model_copy(update={"database_url": SecretStr(url)})
            return handler(found, args)
    return handler(settings, args)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    debug = logging_ready = False
    given = list(sys.argv[1:] if argv is None else argv)
    command = next((a for a in given if a in COMMANDS), "waha-sync")
    if command in COMMANDS and isinstance(parser, Parser):
        parser.command = command  # unknown flags are reported by the top parser
    try:
        args = parser.parse_args(argv)
        command = args.command
        settings = load_settings(args)
        debug = settings.log_level == "DEBUG"
        setup_logging(settings.log_level, settings.log_format)
        logging_ready = True
        for line in start_warnings(args, settings, args.command):
            logging.getLogger(f"waha_sync.{commands.COMPONENT[args.command]}").warning("%s", line)
        return _dispatch(settings, args)
    except WahaSyncError as exc:
        if logging_ready:
            component = commands.COMPONENT[command]
            logging.getLogger(f"waha_sync.{component}").error("%s", exc.render())
        else:
            where = command if command == "waha-sync" else f"waha-sync {command}"
            print(scrub(f"{where}: error: {exc.render()}"), file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(f"waha-sync {command}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        logging.getLogger("waha_sync.cli").error(
            "unexpected failure: %s: %s",
            type(exc).__name__,
            commands.describe(exc),
            exc_info=debug,
        )
        return 1

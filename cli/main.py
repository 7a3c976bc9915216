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
from typing import Any, NoReturn

import pg8000.exceptions

from waha_sync.cli import __version__, check, gc, import_gridfs, ls, push, restore, sidecar, up
from waha_sync.cli.command import Command, require_folder
from waha_sync.cli.local import embedded_database
from waha_sync.common.config.flags import add_setting_flags, load_settings, start_warnings
from waha_sync.common.config.settings import Settings
from waha_sync.common.db.sqlstate import sqlstate
from waha_sync.common.errors import WahaSyncError
from waha_sync.common.logs import scrub, setup_logging

# The commands, in the order ``waha-sync --help`` lists them: one module each.
MODULES = (up, restore, sidecar, push, import_gridfs, gc, ls, check)
COMMANDS: dict[str, Command[Any]] = {m.COMMAND.name: m.COMMAND for m in MODULES}


def describe(exc: BaseException) -> str:
    """A one-line description of an exception, with SQLSTATE and message for database errors."""
    code = sqlstate(exc)
    if code is not None and isinstance(exc, pg8000.exceptions.DatabaseError):
        return f"database error {code}: {exc.args[0].get('M', '')}"
    return str(exc) or type(exc).__name__


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
        cmd.add_flags(sub)
        add_setting_flags(sub, shown=set(cmd.settings))
    return parser


def _dispatch(cmd: Command[Any], settings: Settings, args: argparse.Namespace) -> int:
    if cmd.folder is not None:
        require_folder(settings.sessions_dir, may_create=cmd.folder == "may create")
    if cmd.finds_local and settings.database_url is None:
        claims = cmd.claims(settings, args)
        with embedded_database(settings, cmd.name, cmd.component, claims=claims) as url:
            return cmd.invoke(settings.with_database(url), args)
    return cmd.invoke(settings, args)


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
        cmd = COMMANDS[command]
        for line in start_warnings(args, settings, media=cmd.media):
            logging.getLogger(f"waha_sync.{cmd.component}").warning("%s", line)
        return _dispatch(cmd, settings, args)
    except WahaSyncError as exc:
        if logging_ready:
            component = COMMANDS[command].component
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
            describe(exc),
            exc_info=debug,
        )
        return 1

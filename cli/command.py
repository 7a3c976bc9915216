"""What a command module declares (``Command``), and the rules every command shares.

Each command is one module of this package holding its texts, its flags, the
settings its ``--help`` shows, its log component, a frozen ``Options``
dataclass built from the parsed flags, and ``run(settings, options) -> exit
code``; it ends with ``COMMAND = Command(...)``. ``waha_sync.cli.main`` lists
the modules and does the rest (parse, load settings, dispatch, exit code).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Generic, Literal, TypeVar

from waha_sync.common.config.settings import Settings
from waha_sync.common.errors import ConfigError

OptionsT = TypeVar("OptionsT")

# Settings every command that reads the database uses.
DB = ("database_url", "log_level", "log_format", "secrets_dir")
MEDIA = ("media_storage", "media_dir", "media_database_url")
HTTP = (
    "port",
    "host",
    "api_key",
    "api_key_exclude_path",
    "dashboard_username",
    "dashboard_password",
    "unhealthy_after_seconds",
)
SIDECAR = (
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
    *MEDIA,
    *HTTP,
)


def no_flags(_sub: argparse.ArgumentParser) -> None:
    """For a command whose only flags are settings."""


def add_force_flag(sub: argparse.ArgumentParser) -> None:
    """``--force`` of the commands that upload (push, sidecar)."""
    sub.add_argument(
        "--force",
        action="store_true",
        help="Upload even without this instance's restore marker: claims the instance "
        "and overwrites the stored tree.",
    )


def claims_nothing(_settings: Settings, _args: argparse.Namespace) -> str | None:
    """For a command that never claims an instance."""
    return None


@dataclass(frozen=True)
class Command(Generic[OptionsT]):
    """One subcommand: its texts, flags and settings, and how it runs."""

    name: str  # as typed: waha-sync NAME
    summary: str  # its line in ``waha-sync --help``
    example: str  # a command line, starting with ``waha-sync NAME``
    detail: str  # its ``--help`` description
    settings: tuple[str, ...]  # the settings it uses: the flags its --help shows
    component: str  # its log lines' prefix: ``waha_sync.<component>`` (sync, restore, cli)
    add_flags: Callable[[argparse.ArgumentParser], None]  # its own flags (not settings)
    options: Callable[[argparse.Namespace], OptionsT]  # its typed options from the parsed flags
    run: Callable[[Settings, OptionsT], int]  # the exit code
    # --sessions-dir: "existing" must be a folder, "may create" a folder or nothing yet; both
    # checked before any I/O. None: not used, or checked by the command itself.
    folder: Literal["existing", "may create"] | None = None
    finds_local: bool = False  # given no database URL, uses `up`'s embedded database
    media: bool = False  # handles media: WAHA's media settings are checked at start
    # The instance this invocation claims (from its settings and flags), or None: given no
    # URL, it must not take that instance from a running `up` (it would fence it).
    claims: Callable[[Settings, argparse.Namespace], str | None] = claims_nothing

    def invoke(self, settings: Settings, args: argparse.Namespace) -> int:
        """Run with the options the parsed command line gives."""
        return self.run(settings, self.options(args))


def require_folder(path: Path, *, may_create: bool = False) -> None:
    """``--sessions-dir`` must be a folder (``may_create``: or not exist yet): else exit 2.

    One rule, checked before any I/O, for every command that uses the folder.
    """
    if path.is_dir() or (may_create and not path.exists() and not path.is_symlink()):
        return
    raise ConfigError(
        f"sessions_dir: not a directory (got {str(path)!r})",
        "--sessions-dir pointing at WAHA's sessions folder",
    )

"""The one config pipeline: flags generated from ``Settings``, then validation.

``add_setting_flags`` gives a parser one ``--flag`` per settings field;
``load_settings`` merges flags over environment and secret files and turns
any validation failure into a ``ConfigError`` that reads
``field: problem (got value)`` plus a ``Try:`` hint, with secrets redacted.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from pydantic import SecretStr, ValidationError

from waha_sync.common.config.settings import HINTS, Settings, media_warnings, setting_name_warnings
from waha_sync.common.db.url import redact_url
from waha_sync.common.errors import ConfigError
from waha_sync.common.logs import register_secret

SECRETS_DIR_ENV = "WAHA_SYNC_SECRETS_DIR"
_URL_FIELDS = {"database_url", "media_database_url"}
_SECRET_FIELDS = {"api_key", "dashboard_password"}  # never shown, not even in part


def flag_name(field: str) -> str:
    return "--" + field.replace("_", "-")


def add_setting_flags(parser: argparse.ArgumentParser, shown: set[str] | None = None) -> None:
    """Add a flag for every settings field; unset flags leave env and defaults in charge.

    ``shown``: the settings (field names, plus ``secrets_dir``) the command uses; only
    their flags appear in ``--help``. The others are still accepted, the way a
    setting in the environment is, so one set of flags or one Secret can serve every
    command. ``None`` shows all.
    """
    group = parser.add_argument_group("settings (each also WAHA_SYNC_<NAME> in the environment)")
    for name, field in Settings.model_fields.items():
        kwargs: dict[str, Any] = {"dest": f"setting_{name}", "default": argparse.SUPPRESS}
        if name == "exclude":
            kwargs.update(action="append", metavar="GLOB")
        else:
            kwargs["metavar"] = name.split("_")[-1].upper()
        visible = shown is None or name in shown
        text = field.description if visible else argparse.SUPPRESS
        group.add_argument(flag_name(name), help=text, **kwargs)
    group.add_argument(
        "--secrets-dir",
        dest="secrets_dir",
        default=argparse.SUPPRESS,
        metavar="DIR",
        help=f"Folder of secret files named like the env vars (env {SECRETS_DIR_ENV})."
        if shown is None or "secrets_dir" in shown
        else argparse.SUPPRESS,
    )


def _shown(field: str, value: object) -> str:
    if isinstance(value, SecretStr):
        value = value.get_secret_value()
    if field in _SECRET_FIELDS and value:
        return "'***'"
    if field in _URL_FIELDS and isinstance(value, str):
        return repr(redact_url(value))
    return repr(value)


def _field_of(loc: tuple[int | str, ...]) -> str:
    if not loc:
        return "settings"
    first = str(loc[0])
    for name, field in Settings.model_fields.items():
        aliases = getattr(field.validation_alias, "choices", ())
        if first.lower() == name or first.upper() in {str(a).upper() for a in aliases}:
            return name
    return first.lower().removeprefix("waha_sync_")


def load_settings(args: argparse.Namespace | None = None) -> Settings:
    """Build Settings from flags (highest), environment, secret files and defaults."""
    given: dict[str, Any] = {}
    if args is not None:
        for key, value in vars(args).items():
            if key.startswith("setting_"):
                given[key.removeprefix("setting_")] = value
    secrets_dir = getattr(args, "secrets_dir", None) or os.environ.get(SECRETS_DIR_ENV)
    if secrets_dir is not None and not Path(secrets_dir).is_dir():
        raise ConfigError(
            f"secrets_dir: not a directory (got {secrets_dir!r})",
            f"mount the Secret there, or unset {SECRETS_DIR_ENV}",
        )
    try:
        settings = Settings(_secrets_dir=secrets_dir, **given)  # type: ignore[call-arg]
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            field = _field_of(err["loc"])
            problem = err["msg"].removeprefix("Value error, ")
            lines.append(f"{field}: {problem} (got {_shown(field, err.get('input'))})")
        first = _field_of(exc.errors()[0]["loc"])
        raise ConfigError("\n".join(lines), HINTS.get(first)) from None
    for secret in (settings.api_key, settings.dashboard_password):
        if secret is not None:
            register_secret(secret.get_secret_value())
    return settings


def start_warnings(args: argparse.Namespace, settings: Settings, *, media: bool) -> list[str]:
    """The warnings a command logs once at start (never a secret value): WAHA's names in use,
    names that disagree, and, for commands that handle media (``media``), WAHA's media
    settings."""
    flags = frozenset(k.removeprefix("setting_") for k in vars(args) if k.startswith("setting_"))
    secrets_dir = getattr(args, "secrets_dir", None) or os.environ.get(SECRETS_DIR_ENV)
    lines = setting_name_warnings(os.environ, Path(secrets_dir) if secrets_dir else None, flags)
    if media:
        lines += media_warnings(settings)
    return lines

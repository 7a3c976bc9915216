"""Settings: one pydantic-settings model, validated before any I/O.

Precedence: command-line flags > ``WAHA_SYNC_*`` environment > secret files
(``WAHA_SYNC_SECRETS_DIR``, e.g. a mounted Kubernetes Secret whose keys are
the environment variable names) > defaults. Every field has both an
environment variable (``WAHA_SYNC_<FIELD>``) and a flag (``--<field>``); the
flags are generated from this model in ``waha_sync.common.config.flags``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import (
    AliasChoices,
    Field,
    PrivateAttr,
    SecretStr,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import NoDecode, SettingsConfigDict

if TYPE_CHECKING:
    from waha_sync.common.sync.scan import Limits

from waha_sync.common.config.http import HTTP_HINTS, HttpSettings
from waha_sync.common.db.url import ConnParams, parse_url
from waha_sync.common.errors import ConfigError
from waha_sync.common.logs import register_secret

MIB = 1024 * 1024

DEFAULT_EXCLUDES: tuple[str, ...] = (
    # Chromium (WEBJS engine) caches and crash dumps: large, rebuilt on start.
    "Cache",
    "Code Cache",
    "GPUCache",
    "ShaderCache",
    "GrShaderCache",
    "DawnCache",
    "Crashpad",
    # Chromium's single-instance links and lock files.
    "Singleton*",
    "LOCK",
    "*.lock",
    # Temporary files of editors, atomic writers and downloads.
    "*.tmp",
    "*.temp",
    "*~",
    ".*.swp",
    # write-file-atomic's temp files, left behind when a writer dies mid-write: WAHA writes
    # its NOWEB files and .waha.session.config.json through it as `<file>.<uint32 in decimal>`
    # (e.g. creds.json.3129853271) and renames them over `<file>`; never a session file.
    "*.json.[0-9]*",
)

# Never stored whatever the settings: SQLite's side files are folded into a
# consistent snapshot of the database itself, and .waha-sync holds our marker.
ALWAYS_EXCLUDED: tuple[str, ...] = ("*-wal", "*-shm", "*-journal", ".waha-sync")

_INSTANCE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")

# Shown after a validation error as "Try: ...".
HINTS: dict[str, str] = {
    "database_url": "--database-url 'postgresql://user:password@host:5432/dbname?sslmode=require'",
    "sessions_dir": "--sessions-dir /app/.sessions (an existing directory)",
    "instance": "--instance my-waha (letters, digits, '.', '_', '-'; at most 64)",
    "max_file_bytes": "--max-file-bytes 2147483648 (a whole number of bytes, at least 1)",
    "max_sqlite_bytes": "--max-sqlite-bytes 21474836480 (a whole number of bytes; unset: none)",
    "exclude": "--exclude 'Cache' --exclude '*.tmp' (or WAHA_SYNC_EXCLUDE='Cache,*.tmp')",
    "wait_seconds": "--wait-seconds 60 (0 means try once)",
    "workers": "--workers 8 (1 to 64)",
    "uid": "--uid 1000 (a numeric user id)",
    "gid": "--gid 1000 (a numeric group id)",
    "local_db_dir": "--local-db-dir ~/.local/state/waha-sync/postgres",
    "log_level": "--log-level INFO (DEBUG, INFO, WARNING or ERROR)",
    "log_format": "--log-format text (or json)",
    "chaos_40001_rate": "--chaos-40001-rate 0 (a fraction from 0 to 1; for tests only)",
    "debounce_seconds": "--debounce-seconds 1.0 (0.05 to 60)",
    "max_delay_seconds": "--max-delay-seconds 10 (at least the debounce)",
    "reconcile_seconds": "--reconcile-seconds 600 (at least 10)",
    "shutdown_timeout_seconds": "--shutdown-timeout-seconds 20 (below the pod's grace period)",
    "retention_hours": "--retention-hours 168 (history kept for `restore --at`; at least 1)",
    "displaced_retention_hours": "--displaced-retention-hours 168 (how long restore keeps "
    "displaced local files; at least 1)",
    "gc_interval_seconds": "--gc-interval-seconds 3600 (0 turns garbage collection off)",
    "media_dir": "--media-dir /app/.media",
    "media_storage": "--media-storage postgresql (or local / s3: media is not synced)",
    "media_database_url": "--media-database-url 'postgresql://user:password@host:5432/media'",
    "restore_media": "--restore-media false (true or false)",
    **HTTP_HINTS,
}


class Settings(HttpSettings):
    """Everything configurable in waha-sync. Field descriptions are the ``--help`` texts."""

    model_config = SettingsConfigDict(
        env_prefix="WAHA_SYNC_",
        extra="ignore",
        populate_by_name=True,
        validate_default=True,
    )

    database_url: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices(
            "database_url",
            "WAHA_SYNC_DATABASE_URL",
            "WHATSAPP_SESSIONS_POSTGRESQL_URL",
            "DATABASE_URL",
        ),
        description="libpq URL of the PostgreSQL or CockroachDB database (env "
        "WAHA_SYNC_DATABASE_URL; WHATSAPP_SESSIONS_POSTGRESQL_URL and DATABASE_URL are accepted "
        "too).",
    )
    sessions_dir: Path = Field(
        default=Path("/app/.sessions"), description="WAHA's sessions directory."
    )
    instance: str = Field(
        default="default",
        description="Which WAHA deployment this volume belongs to; several share one database.",
    )
    max_file_bytes: int = Field(
        default=2048 * MIB,
        ge=1,
        description="Files (other than SQLite databases) larger than this are skipped and "
        "reported. The default, 2 GiB, is WhatsApp's largest document, so no WAHA file is "
        "skipped; large files are stored as pieces, streamed.",
    )
    max_sqlite_bytes: int | None = Field(
        default=None,
        ge=1,
        description="SQLite databases larger than this are skipped and reported; none by "
        "default (a database is stored as pages, and a new version costs what changed).",
    )
    exclude: Annotated[list[str], NoDecode] = Field(
        default=list(DEFAULT_EXCLUDES),
        description="Glob patterns never stored; a pattern without '/' matches any file or "
        "folder name, one with '/' the whole relative path. Replaces the defaults "
        "(Chromium caches, lock and temp files). SQLite -wal/-shm/-journal are always left out.",
    )
    wait_seconds: float = Field(
        default=60.0, ge=0, description="How long restore waits for the database to answer."
    )
    workers: int = Field(
        default=8,
        ge=1,
        le=64,
        description="Threads that read or write files (file I/O waits on the disk, not the CPU).",
    )
    uid: int | None = Field(default=None, ge=0, description="Owner given to restored files.")
    gid: int | None = Field(default=None, ge=0, description="Group given to restored files.")
    local_db_dir: Path | None = Field(
        default=None,
        description="Data folder of the embedded PostgreSQL that `up` starts when no database "
        "URL is given (default: $XDG_STATE_HOME/waha-sync/postgres, or "
        "/var/lib/waha-sync/postgres as root).",
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        default="INFO", description="Log verbosity."
    )
    log_format: Literal["text", "json"] = Field(default="text", description="Log line format.")
    chaos_40001_rate: float = Field(
        default=0.0,
        ge=0,
        le=1,
        description="Testing aid: fraction of statements that first fail with SQLSTATE 40001, "
        "as CockroachDB may, to prove every transaction retries.",
    )

    debounce_seconds: float = Field(
        default=1.0,
        ge=0.05,
        le=60,
        description="A changed file ships once it has been quiet this long.",
    )
    max_delay_seconds: float = Field(
        default=10.0,
        gt=0,
        le=3600,
        description="...and never later than this after its first change, even if it keeps "
        "changing.",
    )
    reconcile_seconds: float = Field(
        default=600.0,
        ge=10,
        description="How often the sidecar rescans the whole tree as a safety net for missed "
        "events (size and mtime compared; hashing only on difference).",
    )
    shutdown_timeout_seconds: float = Field(
        default=20.0,
        gt=0,
        le=3600,
        description="On SIGTERM, how long the final flush may take (keep it under the pod's "
        "terminationGracePeriodSeconds).",
    )
    retention_hours: float = Field(
        default=168.0,
        ge=1,
        description="History kept for `restore --at`; older versions and unreferenced content "
        "are garbage-collected.",
    )
    displaced_retention_hours: float = Field(
        default=168.0,
        ge=1,
        description="How long restore keeps the local files it moved aside (into "
        ".waha-sync/displaced/<UTC time>/) when the database's tree won; older ones are deleted "
        "by a later restore.",
    )
    gc_interval_seconds: float = Field(
        default=3600.0,
        ge=0,
        description="How often the sidecar collects garbage (0: never).",
    )
    media_dir: Path = Field(
        default=Path("/app/.media"),
        description="WAHA's media directory, synced when media storage is postgresql.",
    )
    media_storage: Literal["local", "postgresql", "s3"] = Field(
        default="local",
        validation_alias=AliasChoices(
            "media_storage", "WAHA_SYNC_MEDIA_STORAGE", "WAHA_MEDIA_STORAGE"
        ),
        description="postgresql: sync --media-dir too, as its own tree; local or s3: media is "
        "not synced (any case; WAHA's own WAHA_MEDIA_STORAGE is accepted too).",
    )
    media_database_url: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices(
            "media_database_url", "WAHA_SYNC_MEDIA_DATABASE_URL", "WAHA_MEDIA_POSTGRESQL_URL"
        ),
        description="Database for media (WAHA's own WAHA_MEDIA_POSTGRESQL_URL is accepted "
        "too); default: the main database.",
    )
    restore_media: bool = Field(
        default=True, description="Whether restore also fills --media-dir (when media syncs)."
    )
    # The URLs parsed once, when the settings load (see ``_parse_urls``).
    _database: ConnParams | None = PrivateAttr(default=None)
    _media_database: ConnParams | None = PrivateAttr(default=None)

    @field_validator("instance")
    @classmethod
    def _instance_name(cls, value: str) -> str:
        if not _INSTANCE_RE.match(value):
            raise ValueError("must be 1-64 letters, digits, '.', '_' or '-', starting alphanumeric")
        return value

    @field_validator("exclude", mode="before")
    @classmethod
    def _split_globs(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in re.split(r"[,\n]", value) if part.strip()]
        return value

    @field_validator("media_storage", mode="before")
    @classmethod
    def _lower_storage(cls, value: object) -> object:
        return value.lower() if isinstance(value, str) else value

    @field_validator("max_delay_seconds")
    @classmethod
    def _not_before_debounce(cls, value: float, info: ValidationInfo) -> float:
        debounce = info.data.get("debounce_seconds")
        if debounce is not None and value < debounce:
            raise ValueError(f"must be at least debounce_seconds ({debounce:g})")
        return value

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_level(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @model_validator(mode="after")
    def _parse_urls(self) -> Settings:
        """Parse the database URLs once, before any I/O: a bad one raises ``ConfigError``
        (``database_url: problem``, never the password; it passes through pydantic as it is).
        The media URL is parsed only when media syncs (otherwise nothing reads it)."""
        self._database = _parsed(self.database_url, "database_url")
        if self.media_storage == "postgresql":
            self._media_database = _parsed(self.media_database_url, "media_database_url")
        return self

    def database(self) -> ConnParams:
        """The parsed database URL, or a ConfigError naming the three ways to give it."""
        if self._database is None:
            raise _not_set()
        return self._database

    def media_database(self) -> ConnParams:
        """The media tree's database: ``media_database_url`` when given, else the main one."""
        return self._media_database or self.database()

    def with_database(self, database: str | ConnParams) -> Settings:
        """A copy that uses another database: a URL (parsed here; ``ConfigError`` if bad) or
        parameters parsed already. The media database follows unless it was given apart."""
        if isinstance(database, str):
            copy = self.model_copy(update={"database_url": SecretStr(database)})
            copy._database = _parsed(copy.database_url, "database_url")
        else:
            copy = self.model_copy()
            copy._database = database
        return copy

    def require_database_url(self) -> str:
        """The database URL, or a ConfigError naming the three ways to give it."""
        if self.database_url is None or not self.database_url.get_secret_value().strip():
            raise _not_set()
        return self.database_url.get_secret_value().strip()

    def limits(self) -> Limits:
        """The size limits the scanner and the sidecar apply."""
        from waha_sync.common.sync.scan import Limits

        return Limits(self.max_file_bytes, self.max_sqlite_bytes)

    def excludes(self) -> tuple[str, ...]:
        """The effective exclude globs: the setting plus what is never stored."""
        return (*self.exclude, *ALWAYS_EXCLUDED)


def _not_set() -> ConfigError:
    return ConfigError(
        "database_url: not set",
        "--database-url URL, or WAHA_SYNC_DATABASE_URL / WHATSAPP_SESSIONS_POSTGRESQL_URL"
        " / DATABASE_URL in the environment, or a file of that name in"
        " WAHA_SYNC_SECRETS_DIR",
    )


def _parsed(url: SecretStr | None, field: str) -> ConnParams | None:
    """``url`` parsed (None when unset or blank); its password never reaches a log line."""
    text = url.get_secret_value().strip() if url is not None else ""
    if not text:
        return None
    params = parse_url(text, field)
    if params.password is not None:
        register_secret(params.password.get_secret_value())
    return params


# Names that WAHA reads too, accepted by waha-sync as aliases of its own settings, and what the
# same name does to WAHA. Each one found logs one warning at start; start.sh never passes them
# to WAHA.
WAHA_NAMES: dict[str, tuple[str, str]] = {
    "WHATSAPP_SESSIONS_POSTGRESQL_URL": (
        "WAHA_SYNC_DATABASE_URL",
        "WAHA (>= 2026.6) reads the same name and then keeps its sessions in PostgreSQL itself",
    ),
    "WAHA_MEDIA_STORAGE": (
        "WAHA_SYNC_MEDIA_STORAGE",
        "WAHA reads the same name to choose where it keeps received media "
        "(LOCAL, S3, or POSTGRESQL: its own tables)",
    ),
    "WAHA_MEDIA_POSTGRESQL_URL": (
        "WAHA_SYNC_MEDIA_DATABASE_URL",
        "WAHA reads the same name as the database of its own PostgreSQL media storage",
    ),
}

# Every environment name of a setting that has more than one, in the order they win: the
# canonical WAHA_SYNC_ name first. The environment beats secret files whatever the name.
SETTING_NAMES: dict[str, tuple[str, ...]] = {
    "database_url": (
        "WAHA_SYNC_DATABASE_URL",
        "WHATSAPP_SESSIONS_POSTGRESQL_URL",
        "DATABASE_URL",
    ),
    "media_storage": ("WAHA_SYNC_MEDIA_STORAGE", "WAHA_MEDIA_STORAGE"),
    "media_database_url": ("WAHA_SYNC_MEDIA_DATABASE_URL", "WAHA_MEDIA_POSTGRESQL_URL"),
}

WAHA_FILES_FOLDER_DEFAULT = "/tmp/whatsapp-files"  # noqa: S108 - WAHA's own default
WAHA_FILES_LIFETIME_DEFAULT = "180"  # seconds, WAHA's default


def _named_values(
    environ: Mapping[str, str], secrets_dir: Path | None
) -> list[tuple[str, str, str]]:
    """Every (source, NAME, value) given for a name in ``SETTING_NAMES``, in winning order."""
    upper = {k.upper(): v for k, v in environ.items()}
    found: list[tuple[str, str, str]] = []
    for names in SETTING_NAMES.values():
        found.extend(("environment", n, upper[n]) for n in names if n in upper)
    if secrets_dir is not None and secrets_dir.is_dir():
        files = {p.name.upper(): p for p in secrets_dir.iterdir() if p.is_file()}
        for names in SETTING_NAMES.values():
            for n in names:
                if n in files:
                    try:
                        found.append(("secret file", n, files[n].read_text().strip()))
                    except (OSError, UnicodeDecodeError):
                        continue
    return found


def _same(setting: str, a: str, b: str) -> bool:
    if setting == "media_storage":
        return a.strip().lower() == b.strip().lower()
    return a.strip() == b.strip()


def setting_name_warnings(
    environ: Mapping[str, str], secrets_dir: Path | None, flags: frozenset[str] = frozenset()
) -> list[str]:
    """Warnings about shared and conflicting setting names, one line each; never a value.

    For each of WAHA's names in ``WAHA_NAMES`` that is set (environment or secret file): one
    line saying what the same name does to WAHA. For each setting given under two names with
    different values (and no flag, which wins over both): one line naming both and the winner
    (the canonical ``WAHA_SYNC_`` name in the same source; the environment over secret files).
    ``flags`` holds the settings given as flags.
    """
    found = _named_values(environ, secrets_dir)
    lines: list[str] = []
    seen: set[str] = set()
    for _source, name, _value in found:
        if name in WAHA_NAMES and name not in seen:
            seen.add(name)
            canonical, effect = WAHA_NAMES[name]
            lines.append(
                f"{name} is read as {canonical}; {effect}: prefer {canonical}, and give "
                f"{name} to WAHA only if you mean that"
            )
    for setting, names in SETTING_NAMES.items():
        if setting in flags:
            continue
        given = [(src, n, v) for src, n, v in found if n in names]
        if not given:
            continue
        win_src, winner, win_value = given[0]
        for src, name, value in given[1:]:
            if not _same(setting, win_value, value):
                lines.append(
                    f"{setting}: {winner} ({win_src}) and {name} ({src}) disagree; using {winner}"
                )
    return lines


def media_warnings(settings: Settings, environ: Mapping[str, str] | None = None) -> list[str]:
    """When media syncs: what in WAHA's settings (as seen here) would lose or hide media.

    WAHA writes received media to ``WHATSAPP_FILES_FOLDER`` (default /tmp/whatsapp-files) and,
    unless ``WHATSAPP_FILES_LIFETIME=0``, deletes each file after 180 s and empties the folder
    at start, which would wipe restored media. Returns one line per mismatch; empty when media
    does not sync or both match.
    """
    if settings.media_storage != "postgresql":
        return []
    env = os.environ if environ is None else environ
    lines: list[str] = []
    folder = env.get("WHATSAPP_FILES_FOLDER") or ""
    shown = folder or f"{WAHA_FILES_FOLDER_DEFAULT} (WAHA's default; not set here)"
    if Path(folder or WAHA_FILES_FOLDER_DEFAULT).resolve() != settings.media_dir.resolve():
        lines.append(
            f"media: WAHA writes received media to WHATSAPP_FILES_FOLDER={shown}, not to the "
            f"synced media_dir {settings.media_dir}: nothing WAHA receives would be synced. "
            f"Try: WHATSAPP_FILES_FOLDER={settings.media_dir} for WAHA and in this environment"
        )
    lifetime = (env.get("WHATSAPP_FILES_LIFETIME") or "").strip()
    if lifetime != "0":
        seen = lifetime or f"{WAHA_FILES_LIFETIME_DEFAULT} (WAHA's default; not set here)"
        lines.append(
            f"media: WHATSAPP_FILES_LIFETIME={seen}: WAHA deletes media files after that many "
            "seconds and empties its folder at start, wiping restored media. "
            "Try: WHATSAPP_FILES_LIFETIME=0 for WAHA and in this environment"
        )
    return lines

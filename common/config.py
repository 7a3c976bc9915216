"""Settings: one pydantic-settings model, validated before any I/O.

Precedence: command-line flags > ``WAHA_SYNC_*`` environment > secret files
(``WAHA_SYNC_SECRETS_DIR``, e.g. a mounted Kubernetes Secret whose keys are
the environment variable names) > defaults. Every field has both an
environment variable (``WAHA_SYNC_<FIELD>``) and a flag (``--<field>``); the
flags are generated from this model in ``waha_sync.common.cli_settings``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AliasChoices, Field, SecretStr, ValidationInfo, field_validator
from pydantic_settings import NoDecode, SettingsConfigDict

from waha_sync.common.http_config import HTTP_HINTS, HttpSettings

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
    "max_file_bytes": "--max-file-bytes 10485760 (a whole number of bytes, at least 1)",
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
    "media_storage": "--media-storage postgresql (or local: media is not synced)",
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
        description="libpq URL of the PostgreSQL or CockroachDB database "
        "(env WAHA_SYNC_DATABASE_URL, WHATSAPP_SESSIONS_POSTGRESQL_URL or DATABASE_URL).",
    )
    sessions_dir: Path = Field(
        default=Path("/app/.sessions"), description="WAHA's sessions directory."
    )
    instance: str = Field(
        default="default",
        description="Which WAHA deployment this volume belongs to; several share one database.",
    )
    max_file_bytes: int = Field(
        default=10 * MIB, ge=1, description="Files larger than this are skipped and reported."
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
    media_storage: Literal["local", "postgresql"] = Field(
        default="local",
        validation_alias=AliasChoices(
            "media_storage", "WAHA_SYNC_MEDIA_STORAGE", "WAHA_MEDIA_STORAGE"
        ),
        description="postgresql: sync --media-dir too, as its own tree (env "
        "WAHA_SYNC_MEDIA_STORAGE or WAHA_MEDIA_STORAGE).",
    )
    media_database_url: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices(
            "media_database_url", "WAHA_SYNC_MEDIA_DATABASE_URL", "WAHA_MEDIA_POSTGRESQL_URL"
        ),
        description="Database for media (env WAHA_SYNC_MEDIA_DATABASE_URL or "
        "WAHA_MEDIA_POSTGRESQL_URL); default: the main database.",
    )
    restore_media: bool = Field(
        default=True, description="Whether restore also fills --media-dir (when media syncs)."
    )

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

    def require_database_url(self) -> str:
        """The database URL, or a ConfigError naming the three ways to give it."""
        from waha_sync.common.errors import ConfigError

        if self.database_url is None or not self.database_url.get_secret_value().strip():
            raise ConfigError(
                "database_url: not set",
                "--database-url URL, or WAHA_SYNC_DATABASE_URL / WHATSAPP_SESSIONS_POSTGRESQL_URL"
                " / DATABASE_URL in the environment, or a file of that name in"
                " WAHA_SYNC_SECRETS_DIR",
            )
        return self.database_url.get_secret_value().strip()

    def excludes(self) -> tuple[str, ...]:
        """The effective exclude globs: the setting plus what is never stored."""
        return (*self.exclude, *ALWAYS_EXCLUDED)

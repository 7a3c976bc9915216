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

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

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
}


class Settings(BaseSettings):
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

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

# The sidecar's HTTP endpoints by name ("dashboard" is "/"), for the auth exclusions.
HTTP_PATHS: tuple[str, ...] = ("health", "livez", "status", "metrics", "dashboard")
_SHA512_KEY_RE = re.compile(r"^sha512:[0-9a-fA-F]{128}$")

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
    "gc_interval_seconds": "--gc-interval-seconds 3600 (0 turns garbage collection off)",
    "media_dir": "--media-dir /app/.media",
    "media_storage": "--media-storage postgresql (or local: media is not synced)",
    "media_database_url": "--media-database-url 'postgresql://user:password@host:5432/media'",
    "restore_media": "--restore-media false (true or false)",
    "port": "--port 3001 (1 to 65535; WAHA itself listens on 3000)",
    "host": "--host 0.0.0.0 (all interfaces) or --host 127.0.0.1",
    "api_key": "--api-key KEY (plain, or sha512:<128 hex digits> as WAHA accepts)",
    "api_key_exclude_path": "--api-key-exclude-path health,livez (any of: "
    + ", ".join(HTTP_PATHS)
    + ")",
    "dashboard_username": "--dashboard-username admin (set together with the password)",
    "dashboard_password": "--dashboard-password PASSWORD (set together with the username)",
    "unhealthy_after_seconds": "--unhealthy-after-seconds 30 (at least 1)",
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

    port: int = Field(
        default=3001, ge=1, le=65535, description="Port of the sidecar's HTTP server."
    )
    host: str = Field(
        default="0.0.0.0",  # noqa: S104 - a probe must reach it from outside the container
        min_length=1,
        description="Address the HTTP server listens on (default: all interfaces).",
    )
    api_key: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices(
            "api_key", "WAHA_SYNC_API_KEY", "WAHA_API_KEY", "WHATSAPP_API_KEY"
        ),
        description="Key required in the X-Api-Key header for /status and /metrics, plain or "
        "as sha512:<hex> like WAHA (env WAHA_SYNC_API_KEY, WAHA_API_KEY or WHATSAPP_API_KEY).",
    )
    api_key_exclude_path: Annotated[list[str], NoDecode] = Field(
        default=["health", "livez"],
        validation_alias=AliasChoices(
            "api_key_exclude_path",
            "WAHA_SYNC_API_KEY_EXCLUDE_PATH",
            "WHATSAPP_API_KEY_EXCLUDE_PATH",
        ),
        description="Endpoints that never ask for the key or a password, comma-separated names "
        "(" + ", ".join(HTTP_PATHS) + ").",
    )
    dashboard_username: str | None = Field(
        default=None,
        validation_alias=AliasChoices(
            "dashboard_username", "WAHA_SYNC_DASHBOARD_USERNAME", "WAHA_DASHBOARD_USERNAME"
        ),
        description="Basic-auth user for the dashboard (env WAHA_DASHBOARD_USERNAME too).",
    )
    dashboard_password: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices(
            "dashboard_password", "WAHA_SYNC_DASHBOARD_PASSWORD", "WAHA_DASHBOARD_PASSWORD"
        ),
        description="Basic-auth password for the dashboard (env WAHA_DASHBOARD_PASSWORD too).",
    )
    unhealthy_after_seconds: float = Field(
        default=30.0,
        ge=1,
        description="/health turns 503 once commits have been failing this long.",
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

    @field_validator("api_key_exclude_path", mode="before")
    @classmethod
    def _split_paths(cls, value: object) -> object:
        if isinstance(value, str):
            return [p.strip().strip("/") for p in value.split(",") if p.strip().strip("/")]
        return value

    @field_validator("api_key_exclude_path")
    @classmethod
    def _known_paths(cls, value: list[str]) -> list[str]:
        unknown = [p for p in value if p not in HTTP_PATHS]
        if unknown:
            raise ValueError(f"unknown endpoint {unknown[0]!r}; known: {', '.join(HTTP_PATHS)}")
        return value

    @field_validator("api_key")
    @classmethod
    def _key_shape(cls, value: SecretStr | None) -> SecretStr | None:
        text = value.get_secret_value().strip() if value is not None else ""
        if not text:
            return None
        if text.lower().startswith("sha512:") and not _SHA512_KEY_RE.match(text):
            raise ValueError("a sha512: key needs exactly 128 hex digits after 'sha512:'")
        return SecretStr(text)

    @field_validator("dashboard_password")
    @classmethod
    def _password_given(cls, value: SecretStr | None, info: ValidationInfo) -> SecretStr | None:
        if value is not None and not value.get_secret_value():
            value = None
        user = info.data.get("dashboard_username") or None
        if (user is None) != (value is None):
            raise ValueError("set both dashboard_username and dashboard_password, or neither")
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

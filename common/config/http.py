"""The sidecar's HTTP settings: port, address, API key, dashboard password, health threshold.

A mixin of ``waha_sync.common.config.settings.Settings`` (which adds the ``WAHA_SYNC_``
prefix): each field also reads WAHA's own variable where WAHA has one
(``WAHA_API_KEY``, ``WHATSAPP_API_KEY``, ``WAHA_DASHBOARD_USERNAME``/``PASSWORD``),
so one Secret can serve both containers.
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AliasChoices, Field, SecretStr, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, NoDecode

# The sidecar's HTTP endpoints by name ("dashboard" is "/"), for the auth exclusions.
HTTP_PATHS: tuple[str, ...] = ("health", "livez", "status", "metrics", "dashboard")
_SHA512_KEY_RE = re.compile(r"^sha512:[0-9a-fA-F]{128}$")

HTTP_HINTS: dict[str, str] = {
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


class HttpSettings(BaseSettings):
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

"""Who may read what: the API key, the dashboard's basic auth, the open endpoints.

- The API key (``X-Api-Key`` header, as WAHA takes it) opens every endpoint.
  It may be configured plain or as ``sha512:<hex>``; either way the client
  sends the plain key. A browser can give it as the basic-auth password.
- The dashboard user and password open the dashboard and ``/status``, the
  data the dashboard shows (otherwise its password would protect nothing).
- ``/metrics`` takes only the key. Endpoints named in the exclusions
  (default ``health`` and ``livez``) and endpoints with nothing configured
  to protect them are open.

Every comparison is of SHA-512 digests with ``hmac.compare_digest``: constant
time, and independent of the secrets' lengths.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Mapping

from waha_sync.common.config.settings import Settings

BASIC_ENDPOINTS = frozenset({"dashboard", "status"})


def _digest(text: str) -> bytes:
    return hashlib.sha512(text.encode("utf-8")).digest()


def _same(presented: str | None, expected: bytes | None) -> bool:
    if presented is None or expected is None:
        return False
    return hmac.compare_digest(_digest(presented), expected)


def key_digest(configured: str) -> bytes:
    """The SHA-512 digest a presented key must have: WAHA's ``sha512:<hex>`` form or plain."""
    if configured.lower().startswith("sha512:"):
        return bytes.fromhex(configured[len("sha512:") :])
    return _digest(configured)


def basic_credentials(header: str | None) -> tuple[str, str] | None:
    """(user, password) from an ``Authorization: Basic ...`` header, or None."""
    if not header or header[:6].lower() != "basic ":
        return None
    try:
        raw = base64.b64decode(header[6:].strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    user, sep, password = raw.partition(":")
    return (user, password) if sep else None


class Guard:
    """Decides, per endpoint name, whether a request's headers are enough."""

    def __init__(self, settings: Settings) -> None:
        key = settings.api_key
        self.key = key_digest(key.get_secret_value()) if key is not None else None
        password = settings.dashboard_password
        self.user = _digest(settings.dashboard_username or "") if password is not None else None
        self.password = _digest(password.get_secret_value()) if password is not None else None
        self.excluded = frozenset(settings.api_key_exclude_path)

    def protected(self, endpoint: str) -> bool:
        """Whether ``endpoint`` asks for credentials at all."""
        if endpoint in self.excluded:
            return False
        if endpoint in BASIC_ENDPOINTS:
            return self.key is not None or self.password is not None
        return self.key is not None

    def allows(self, endpoint: str, headers: Mapping[str, str]) -> bool:
        """True if ``endpoint`` is open or the headers carry a credential that opens it."""
        if not self.protected(endpoint):
            return True
        if _same(headers.get("x-api-key"), self.key):
            return True
        basic = basic_credentials(headers.get("authorization"))
        if basic is None:
            return False
        user, password = basic
        if _same(password, self.key):
            return True
        return (
            endpoint in BASIC_ENDPOINTS
            and _same(user, self.user) & _same(password, self.password)  # both compared, always
        )

    def open_endpoints(self) -> list[str]:
        """Endpoints anyone can read, for the startup warning."""
        names = ("status", "metrics", "dashboard")
        return [n for n in names if not self.protected(n) and n not in self.excluded]

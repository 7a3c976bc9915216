"""waha-sync: keeps WAHA's session directory in PostgreSQL or CockroachDB."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("waha-sync")
except PackageNotFoundError:  # pragma: no cover - running from a bare source tree
    __version__ = "0.0.0"

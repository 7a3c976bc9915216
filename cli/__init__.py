"""waha-sync's command line: one module per command, ``main`` dispatches (``waha-sync`` or
``python -m waha_sync.cli``)."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("waha-sync")
except PackageNotFoundError:  # pragma: no cover - running from a bare source tree
    __version__ = "0.0.0"

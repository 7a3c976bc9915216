"""Which directory trees a deployment syncs: the sessions, and media when WAHA keeps it.

With ``WAHA_MEDIA_STORAGE=postgresql`` the media directory is a second tree
with an instance of its own (``<instance>/media``: ``/`` cannot occur in an
instance name, so it never collides with a real one), in the media database
when one is given, else the main one. Restore and the sidecar both iterate
over ``trees()``, so the two can never disagree about what is synced.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from waha_sync.common.config.settings import Settings
from waha_sync.common.db.url import ConnParams
from waha_sync.common.errors import ConfigError


@dataclass(frozen=True)
class Tree:
    label: str  # "sessions" or "media", for logs and status
    root: Path
    instance: str
    database: ConnParams  # parsed once, when the settings loaded

    def settings_for(self, settings: Settings) -> Settings:
        """``settings`` pointed at this tree (same limits, excludes and timings)."""
        one = settings.model_copy(update={"sessions_dir": self.root, "instance": self.instance})
        return one.with_database(self.database)


def media_enabled(settings: Settings) -> bool:
    return settings.media_storage == "postgresql"


def trees(settings: Settings, *, restoring: bool = False) -> list[Tree]:
    """The trees to sync (or, with ``restoring``, to restore), sessions first.

    Raises ``ConfigError`` (``database_url: not set``) without a database."""
    out = [Tree("sessions", settings.sessions_dir, settings.instance, settings.database())]
    if media_enabled(settings) and not (restoring and not settings.restore_media):
        media = settings.media_database()
        out.append(Tree("media", settings.media_dir, f"{settings.instance}/media", media))
    return out


def require_dirs(found: list[Tree], *, create: bool) -> None:
    """Every tree's root must be a directory (``create``: make missing ones)."""
    for tree in found:
        if create:
            try:
                tree.root.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise ConfigError(
                    f"{tree.label}_dir: cannot create (got {str(tree.root)!r}: {exc.strerror})",
                    "point it at a writable volume",
                ) from exc
        if not tree.root.is_dir():
            field = "sessions_dir" if tree.label == "sessions" else "media_dir"
            raise ConfigError(
                f"{field}: not a directory (got {str(tree.root)!r})",
                f"--{field.replace('_', '-')} pointing at WAHA's {tree.label} folder",
            )

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

from pydantic import SecretStr

from waha_sync.common.config.settings import Settings
from waha_sync.common.errors import ConfigError


@dataclass(frozen=True)
class Tree:
    label: str  # "sessions" or "media", for logs and status
    root: Path
    instance: str
    database_url: str

    def settings_for(self, settings: Settings) -> Settings:
        """``settings`` pointed at this tree (same limits, excludes and timings)."""
        return settings.model_copy(
            update={
                "sessions_dir": self.root,
                "instance": self.instance,
                "database_url": SecretStr(self.database_url),
            }
        )


def media_enabled(settings: Settings) -> bool:
    return settings.media_storage == "postgresql"


def trees(settings: Settings, *, restoring: bool = False) -> list[Tree]:
    """The trees to sync (or, with ``restoring``, to restore), sessions first."""
    url = settings.require_database_url()
    out = [Tree("sessions", settings.sessions_dir, settings.instance, url)]
    if media_enabled(settings) and not (restoring and not settings.restore_media):
        media_url = settings.media_database_url
        chosen = media_url.get_secret_value().strip() if media_url is not None else ""
        out.append(Tree("media", settings.media_dir, f"{settings.instance}/media", chosen or url))
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

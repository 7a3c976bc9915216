"""Exception types shared by every part of waha-sync.

Each maps onto one documented exit code: ``ConfigError`` is a usage or
configuration mistake (exit 2); every other ``WahaSyncError`` is a runtime
failure (exit 1). Messages never contain secrets and name the field or path
they are about, plus a ``Try:`` hint where there is an obvious fix.
"""

from __future__ import annotations

import errno


class WahaSyncError(Exception):
    """A failure that is reported as one clear line, without a traceback (exit 1)."""

    exit_code = 1

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __reduce__(self) -> tuple[type[WahaSyncError], tuple[str, str | None]]:
        return (type(self), (self.message, self.hint))  # keeps the hint across processes

    def render(self) -> str:
        """The message plus its ``Try:`` hint, ready for a terminal."""
        return self.message if not self.hint else f"{self.message}\nTry: {self.hint}"


class ConfigError(WahaSyncError):
    """Bad settings or command-line usage (exit 2)."""

    exit_code = 2


class RefusedError(WahaSyncError):
    """A safety rule refused the operation; a flag can override it (exit 2)."""

    exit_code = 2


class DatabaseUnavailable(WahaSyncError):
    """The database could not be reached or the connection broke."""


class FencedError(WahaSyncError):
    """Another holder claimed the instance; this process must write nothing more."""


def fenced_message(instance: str, claimed: tuple[str, int] | None, mine: str) -> str:
    """The one wording of being fenced, for errors, logs and /health.

    ``claimed``: the lease as stored now (holder, epoch), None when there is no lease
    row; ``mine``: what this writer holds (``this sidecar holds epoch 3``).
    """
    who = f"{claimed[0]} (epoch {claimed[1]})" if claimed is not None else "nobody (no lease row)"
    return f"fenced: instance {instance} was claimed by {who}; {mine}"


def writer_fenced(instance: str, claimed: tuple[str, int] | None, epoch: int) -> FencedError:
    """The error a store raises for a write under ``epoch`` after the instance was claimed
    anew (``claimed``: the lease now, as in ``fenced_message``)."""
    return FencedError(
        fenced_message(instance, claimed, f"this writer holds epoch {epoch}"),
        "run `waha-sync restore` again in this pod, or stop this writer",
    )


class UnsafePathError(WahaSyncError):
    """A stored path would be written outside the target directory."""


class IntegrityError(WahaSyncError):
    """Stored content failed verification (hash or size mismatch, missing chunk)."""


def write_failure(path: str, exc: OSError) -> WahaSyncError:
    """A failed local write as one line naming ``path``; a full volume says so, with the fix."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return WahaSyncError(
            f"{path}: no space left on the target volume",
            "free space or enlarge the volume, then run the command again",
        )
    if exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        return WahaSyncError(
            f"{path}: cannot write ({exc.strerror})",
            "mount the volume read-write for the user waha-sync runs as (the same uid or "
            "fsGroup as WAHA), then run the command again",
        )
    return WahaSyncError(f"{path}: cannot write ({exc.strerror})")

"""Writing files strictly inside the target directory.

A stored path is refused when it is absolute, empty, has ``.``/``..`` or
empty components, a NUL byte, or a component over 255 bytes. Folders are
opened one component at a time relative to their parent with
``O_NOFOLLOW``, so a symlink anywhere on the way (even one planted in the
target) is refused rather than followed. Every file is written to a temp
file in its final folder (``O_TMPFILE``) and linked in complete, or
written under a temp name and renamed into place: no partial file ever
stands under a final name.
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import os
import threading
from collections.abc import Callable
from pathlib import Path

from waha_sync.common.errors import UnsafePathError, write_failure

TMP_MARK = ".waha-sync-tmp-"
_unique = itertools.count()  # next() is atomic under the GIL
USE_UNNAMED = True  # O_TMPFILE + link where the filesystem supports it
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def check_rel(path: str) -> list[str]:
    """The components of a safe relative path; ``UnsafePathError`` otherwise."""
    hint = "delete that row, or restore into a scratch folder with --read-only to inspect"
    if not path or path.startswith("/") or "\x00" in path or "\\" in path:
        raise UnsafePathError(f"{path!r}: refusing stored path (absolute or malformed)", hint)
    parts = path.split("/")
    for part in parts:
        if part in ("", ".", ".."):
            raise UnsafePathError(f"{path!r}: refusing stored path (contains {part!r})", hint)
        if len(part.encode("utf-8")) > 255:
            raise UnsafePathError(f"{path!r}: refusing stored path (name over 255 bytes)", hint)
    return parts


class TargetDir:
    """Folder handles under one root, opened without following symlinks; thread-safe."""

    def __init__(self, root: str, uid: int | None = None, gid: int | None = None) -> None:
        self.root = root
        self.uid = uid
        self.gid = gid
        self._fds: dict[str, int] = {"": os.open(root, os.O_RDONLY | os.O_DIRECTORY)}
        self._lock = threading.Lock()
        self._umask = os.umask(0o022)
        os.umask(self._umask)
        self._unnamed_ok = USE_UNNAMED and Path("/proc/self/fd").is_dir()

    def _owner(self) -> tuple[int, int]:
        return (-1 if self.uid is None else self.uid, -1 if self.gid is None else self.gid)

    def close(self) -> None:
        with self._lock:
            for fd in self._fds.values():
                os.close(fd)
            self._fds.clear()

    def folder(self, rel_dir: str, path: str) -> int:
        """The fd of ``rel_dir`` (created if missing); refuses symlinks on the way."""
        with self._lock:
            if rel_dir in self._fds:
                return self._fds[rel_dir]
            fd = self._fds[""]
            walked = ""
            for part in rel_dir.split("/"):
                walked = f"{walked}/{part}" if walked else part
                if walked in self._fds:
                    fd = self._fds[walked]
                    continue
                fd = self._open_child(fd, part, walked, path)
                self._fds[walked] = fd
            return fd

    def _open_child(self, parent: int, name: str, walked: str, path: str) -> int:
        try:
            os.mkdir(name, 0o755, dir_fd=parent)
            if self.uid is not None or self.gid is not None:
                os.chown(name, *self._owner(), dir_fd=parent, follow_symlinks=False)
        except FileExistsError:
            pass
        except OSError as exc:  # a full volume (no room for one more folder), say
            raise write_failure(walked, exc) from exc
        try:
            return os.open(name, _DIR_FLAGS, dir_fd=parent)
        except OSError as exc:
            if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                raise UnsafePathError(
                    f"{path!r}: refusing to write through {walked!r}, which is a symlink "
                    "or not a folder",
                    f"remove {Path(self.root, walked)} and restore again",
                ) from exc
            raise write_failure(walked, exc) from exc

    def write(self, path: str, data: bytes, mode: int, mtime_ns: int) -> None:
        """Write ``data`` to ``path`` so that only the complete file ever bears the name.

        The content goes to an unnamed file (``O_TMPFILE``) that is linked in
        when complete, or, where that is unsupported or the name is taken,
        to a temp name renamed over the final one. No fsync here (see
        ``sync_and_close``).
        """
        self.write_with(path, lambda fd: _write_all(fd, data), mode, mtime_ns)

    def write_with(self, path: str, fill: Callable[[int], None], mode: int, mtime_ns: int) -> None:
        """Like ``write``, with the content written by ``fill(fd)`` (pieces, streamed);
        whatever ``fill`` raises leaves nothing under the final name."""
        parts = check_rel(path)
        dfd = self.folder("/".join(parts[:-1]), path) if len(parts) > 1 else self._fds[""]
        name = parts[-1]
        tmp = f".{name[:200]}{TMP_MARK}{os.getpid()}-{next(_unique)}"
        named = False
        try:
            fd = self._open_unnamed(dfd, mode)
            if fd is None:
                flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
                fd, named = os.open(tmp, flags, mode & 0o777, dir_fd=dfd), True
            try:
                fill(fd)
                self._finish(fd, mode, mtime_ns)
                if not named:
                    try:  # one directory operation: the fastest way to a final name
                        os.link(f"/proc/self/fd/{fd}", name, dst_dir_fd=dfd)
                        return
                    except FileExistsError:  # replacing a differing local file
                        os.link(f"/proc/self/fd/{fd}", tmp, dst_dir_fd=dfd)
                        named = True
            finally:
                os.close(fd)
            os.rename(tmp, name, src_dir_fd=dfd, dst_dir_fd=dfd)
        except BaseException as exc:
            if named:
                with contextlib.suppress(OSError):
                    os.unlink(tmp, dir_fd=dfd)
            if isinstance(exc, OSError):
                raise write_failure(path, exc) from exc
            raise

    def _open_unnamed(self, dfd: int, mode: int) -> int | None:
        """An unnamed file in the folder, or None where O_TMPFILE or /proc is missing."""
        if not self._unnamed_ok:
            return None
        try:
            return os.open(".", os.O_TMPFILE | os.O_WRONLY | os.O_CLOEXEC, mode & 0o777, dir_fd=dfd)
        except OSError as exc:
            if exc.errno not in (errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL):
                raise
            self._unnamed_ok = False
            return None

    def _finish(self, fd: int, mode: int, mtime_ns: int) -> None:
        if self.uid is not None or self.gid is not None:
            os.fchown(fd, *self._owner())
        if mode & (self._umask | 0o7000):  # open() could not set all of it
            os.fchmod(fd, mode & 0o7777)
        os.utime(fd, ns=(mtime_ns, mtime_ns))

    def sync_and_close(self) -> None:
        """Flush the whole target filesystem once (syncfs), instead of an fsync per file."""
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        try:
            if libc.syncfs(self._fds[""]) != 0:
                os.sync()
        finally:
            self.close()

"""``waha-sync sidecar``: one syncer per tree, signals, the final flush, the exit code.

The sessions tree is synced in the main thread (so a signal interrupts its
wait at once), media in a thread of its own, garbage collection in another;
HTTP (``waha_sync.sidecar.front``) has a health-check thread and a server thread.
SIGTERM or SIGINT: stop watching, ship everything pending within
``shutdown_timeout_seconds``, exit 0 (1 if that was impossible). A second
signal aborts at once. Being fenced stops every tree and exits 1.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import os
import signal
import threading
import time
from collections.abc import Callable
from datetime import timedelta
from types import FrameType

from waha_sync.common.config.settings import Settings
from waha_sync.common.errors import FencedError, WahaSyncError
from waha_sync.common.logs import log_fields
from waha_sync.common.store.base import Store
from waha_sync.common.store.postgres import PgStore
from waha_sync.common.sync.trees import Tree, require_dirs, trees
from waha_sync.common.words import plural
from waha_sync.sidecar.front import Front
from waha_sync.sidecar.start import limit_malloc_arenas
from waha_sync.sidecar.tree_sync import TreeSync

log = logging.getLogger("waha_sync.sync")


class Sidecar:
    def __init__(
        self,
        settings: Settings,
        open_store: Callable[[Tree], Store],
        open_probe: Callable[[Tree], PgStore],
        *,
        force: bool,
    ) -> None:
        limit_malloc_arenas()  # before any thread starts
        self.settings = settings
        self.open_store = open_store
        self.trees = trees(settings)
        require_dirs(self.trees, create=False)
        self.syncs = [
            TreeSync(t.settings_for(settings), open_store(t), t.label, force=force)
            for t in self.trees
        ]
        self.front = Front(settings, self.syncs, {t.label: open_probe(t) for t in self.trees})
        self.stop = threading.Event()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_w, False)
        self.exit_code = 0
        self.deadline = 0.0
        self._signals = 0

    def request_stop(self) -> None:
        """Stop every loop (the wake pipe is never drained, so all of them see it)."""
        if not self.stop.is_set():
            self.deadline = time.monotonic() + self.settings.shutdown_timeout_seconds
            self.front.stopping()
            self.stop.set()
            with contextlib.suppress(BlockingIOError):
                os.write(self._wake_w, b"x")

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        # It interrupts the sessions tree's thread: run in an empty context, its lines
        # are the process's, not that tree's (``log_fields``).
        contextvars.Context().run(self._stop_on_signal, signum)

    def _stop_on_signal(self, signum: int) -> None:
        self._signals += 1
        name = signal.Signals(signum).name
        if self._signals > 1:
            log.error("second %s: aborting without the final flush", name)
            os._exit(1)
        log.info(
            "%s received: final flush (up to %gs)", name, self.settings.shutdown_timeout_seconds
        )
        self.request_stop()
        timer = threading.Timer(self.settings.shutdown_timeout_seconds, self._timed_out)
        timer.daemon = True
        timer.start()

    def _timed_out(self) -> None:
        left = sum(len(s.pending) for s in self.syncs)
        log.error(
            "shutdown timeout (%gs) reached: %s not shipped",
            self.settings.shutdown_timeout_seconds,
            plural(left, "changed path"),
        )
        os._exit(1)

    def run(self) -> int:
        """Sync until stopped; the process's exit code."""
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._on_signal)
        others = [
            threading.Thread(target=self._loop, args=(s,), name=s.label, daemon=True)
            for s in self.syncs[1:]
        ]
        if self.settings.gc_interval_seconds:
            others.append(threading.Thread(target=self._gc_loop, name="gc", daemon=True))
        self.front.start()
        for t in others:
            t.start()
        self._loop(self.syncs[0])
        for t in others:
            t.join()
        self.front.close()
        return self.exit_code

    def _loop(self, sync: TreeSync) -> None:
        with log_fields(tree=sync.label, instance=sync.name):
            self._sync(sync)

    def _sync(self, sync: TreeSync) -> None:
        try:
            sync.watcher.start()  # watches first: nothing changes unseen after the comparison
            log.info(
                "%s: watching %s (%s)",
                sync.label,
                sync.root,
                plural(len(sync.watcher.folders), "folder"),
            )
            while not self.stop.is_set():
                sync.status.beat()
                now = time.monotonic()
                sync.collect(now)
                sync.step(now)
                timeout = max(0.0, sync.wake_at(time.monotonic()) - time.monotonic())
                sync.status.progress_at = None  # waiting is not being stuck
                sync.watcher.wait(timeout, self._wake_r)
            sync.status.beat()
            ok = sync.flush(self.deadline)
        except WahaSyncError as exc:  # fenced, refused or misconfigured: stop everything
            log.error("%s", exc.render(), extra={"plain": isinstance(exc, FencedError)})
            self.exit_code = max(self.exit_code, exc.exit_code)
            self.request_stop()
            return
        except Exception as exc:  # a bug: stop everything cleanly rather than lose a thread
            log.error("%s: unexpected failure: %s: %s", sync.label, type(exc).__name__, exc)
            self.exit_code = max(self.exit_code, 1)
            self.request_stop()
            return
        finally:
            sync.status.progress_at = None
            sync.status.stopped = True
            sync.watcher.close()
            sync.pieced.close()
            sync.store.close()
        if ok:
            log.info("%s: stopped; every change is in the database", sync.label)
        else:
            left = (
                "every change since the restore"
                if sync.known is None
                else plural(len(sync.pending), "changed path")
            )
            log.error(
                "%s: stopped with %s not shipped (%s)", sync.label, left, sync.status.last_error
            )
            self.exit_code = max(self.exit_code, 1)

    def _gc_loop(self) -> None:
        from waha_sync.common.sync.gc import collect

        retention = timedelta(hours=self.settings.retention_hours)
        stores = {t.label: self.open_store(t) for t in self.trees}
        while not self.stop.wait(self.settings.gc_interval_seconds):
            for t in self.trees:
                with log_fields(tree=t.label, instance=t.instance):
                    try:
                        collect(stores[t.label], t.instance, retention)
                    except Exception as exc:
                        log.warning("%s: garbage collection failed: %s", t.label, exc)
        for store in stores.values():
            store.close()

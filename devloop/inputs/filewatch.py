"""File watching that cannot die silently: a supervisor around one backend.

Backends (filewatch_inotify, filewatch_observer): `inotify` adds one non-recursive watch
per *input* directory (never node_modules: watchdog#212), `native` is watchdog's observer for
the platform (FSEvents, ReadDirectoryChangesW, ...), `polling` lists input directories every
second. `auto` is inotify on Linux and native elsewhere; nothing Linux-only is imported unless
inotify is chosen. A backend that raises, or whose threads end, is replaced by a new one and every
service is rescanned (the events it missed are recovered from the files), and the user is told;
repeated failures back off and settle on polling, said once. A reader that dies quietly would
leave a loop that looks healthy and never reloads again: the worst failure a dev loop can have.
"""

from __future__ import annotations

import contextlib
import errno
import sys
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from devloop.inputs.filewatch_observer import ObserverBackend
from devloop.inputs.watchroots import RootSet, WatchRoot
from devloop.text import one_line

__all__ = ["INOTIFY_LIMIT_HELP", "TreeWatcher", "WatchRoot", "choose_backend", "restart_plan"]

INOTIFY_LIMIT_HELP = (
    "inotify watch limit reached (fs.inotify.max_user_watches); raise it with "
    "`sudo sysctl fs.inotify.max_user_watches=524288` (persist in /etc/sysctl.d/), "
    "or add the big directories to ignore: in devloop.yaml; polling every 1 s what could not be"
    " watched"
)
FAILURE_WINDOW_S = 60.0
FAILURES_BEFORE_POLLING = 3


class Backend(Protocol):
    mode: str

    @property
    def watch_count(self) -> int: ...
    def start(self) -> None: ...
    def run(self) -> str | None: ...
    def stop(self) -> None: ...
    def close(self) -> None: ...


@dataclass(frozen=True)
class RestartPlan:
    delay: float  # seconds to wait before the new backend starts
    fall_back: bool  # use polling from now on


def restart_plan(failures: list[float], now: float) -> RestartPlan:
    """After the latest of `failures` (monotonic times): restart at once the first time, then
    back off (0.5, 1, 2 ... 30 s); the third failure within a minute falls back to polling."""
    recent = [t for t in failures if now - t < FAILURE_WINDOW_S]
    if len(recent) <= 1:
        return RestartPlan(0.0, False)
    return RestartPlan(min(0.5 * 2 ** (len(recent) - 2), 30.0),
                       len(recent) >= FAILURES_BEFORE_POLLING)


def choose_backend(setting: str, platform: str, inotify_available: Callable[[], bool]
                   ) -> tuple[str, str | None]:
    """(backend, warning or None) for devloop.yaml's `watch_backend` on `platform`
    (sys.platform). inotify exists only on Linux (and its import can fail there too)."""
    if setting in ("native", "polling"):
        return setting, None
    if setting == "auto":
        if platform.startswith("linux") and inotify_available():
            return "inotify", None
        return "native", None
    if inotify_available():
        return "inotify", None
    return "native", ("watch_backend: inotify is not available on this system; using the"
                      " native observer (set watch_backend: native or polling in devloop.yaml)")


def inotify_available() -> bool:
    """Whether watchdog's inotify bindings load (they raise UnsupportedLibcError off Linux)."""
    try:
        from watchdog.observers import inotify_c  # noqa: F401
    except Exception:
        return False
    return True


class TreeWatcher:
    """Reports changed paths of the watched trees, in batches, for as long as it runs.

    `on_change(paths)` is called from watcher threads; keep it cheap (put on a queue).
    `on_warning(text)` gets one-line warnings; `on_rescan(reason)` is called when events may
    have been lost (queue overflow, a restarted backend, a root re-created): every service must
    be hashed again from its files.
    """

    def __init__(self, roots: Iterable[WatchRoot], on_change: Callable[[list[Path]], None],
                 on_warning: Callable[[str], None], poll_interval: float = 1.0,
                 on_rescan: Callable[[str], None] | None = None, backend: str = "auto",
                 clock: Callable[[], float] = time.monotonic,
                 make_backend: Callable[[str], Backend] | None = None) -> None:
        self.rootset = RootSet(roots)
        self._on_change = on_change
        self._on_warning = on_warning
        self._on_rescan = on_rescan or (lambda reason: on_warning(reason))
        self._poll_interval = poll_interval
        self._setting = backend
        self._clock = clock
        self._make_backend = make_backend or self._new_backend
        self._backend: Backend | None = None
        self._fallback: ObserverBackend | None = None  # polls roots inotify had no watches for
        self._thread: threading.Thread | None = None
        self._stopped = threading.Event()
        self._lock = threading.Lock()
        self._failures: list[float] = []
        self._limit_said = False
        self._mode = "stopped"

    @property
    def roots(self) -> list[WatchRoot]:
        return self.rootset.roots

    @property
    def mode(self) -> str:
        backend = self._backend
        if backend is None:
            return "stopped"
        if self._fallback is not None and backend.mode == "inotify":
            return "polling" if backend.watch_count == 0 else "inotify+polling"
        return backend.mode

    @property
    def watch_count(self) -> int:
        backend = self._backend
        count = backend.watch_count if backend is not None else 0
        return count + (self._fallback.watch_count if self._fallback is not None else 0)

    # --- lifecycle -------------------------------------------------------------------------------

    def start(self) -> None:
        """Add the watches (synchronously, so no save after start() is missed) and start the
        supervised reader."""
        mode, warning = choose_backend(self._setting, sys.platform, inotify_available)
        if warning:
            self._on_warning(warning)
        self._backend = self._started(mode)
        self._thread = threading.Thread(target=self._supervise, name="devloop-watch",
                                        daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopped.set()
        if self._backend is not None:
            self._backend.stop()
        if self._thread is not None:
            self._thread.join(timeout=3)
        # the supervisor may have started a new backend meanwhile: close what is current
        with self._lock:
            backend, self._backend = self._backend, None
            fallback, self._fallback = self._fallback, None
        for part in (backend, fallback):
            if part is not None:
                part.stop()
                part.close()

    def _started(self, mode: str) -> Backend:
        """A started backend for `mode`; inotify without instances left becomes polling."""
        backend = self._make_backend(mode)
        try:
            backend.start()
        except OSError as exc:
            backend.close()
            if mode != "inotify" or exc.errno not in (errno.EMFILE, errno.ENOSPC, errno.ENFILE):
                raise
            self._on_warning(f"cannot start inotify ({exc.strerror}; fs.inotify."
                             "max_user_instances); polling every 1 s instead")
            backend = self._make_backend("polling")
            backend.start()
        return backend

    def _new_backend(self, mode: str) -> Backend:
        if mode == "inotify":
            from devloop.inputs.filewatch_inotify import InotifyBackend  # Linux only

            return InotifyBackend(self.rootset, self, self._poll_root)
        return ObserverBackend(self.rootset, self, polling=mode == "polling",
                               poll_interval=self._poll_interval)

    # --- supervision -----------------------------------------------------------------------------

    def _supervise(self) -> None:
        """Run the current backend and replace it whenever it ends. Nothing may end this thread
        but stop(): a supervisor that died would be the deaf loop all over again."""
        while not self._stopped.is_set():
            backend = self._backend
            if backend is None:  # stop() has closed it
                return
            failed = False
            try:
                why = backend.run()
                if self._stopped.is_set():
                    return
                why = why or "the file watcher stopped on its own"
            except Exception as exc:
                if self._stopped.is_set():
                    return
                failed = True
                self._failures.append(self._clock())
                why = f"file watching failed ({_described(exc)})"
            try:
                self._replace(backend, why, failed)
            except Exception as exc:  # whatever backend is current is run (and replaced) again
                self._failures.append(self._clock())
                with contextlib.suppress(Exception):
                    self._on_warning(f"restarting the file watcher went wrong"
                                     f" ({_described(exc)}); trying again")
                self._stopped.wait(1.0)

    def _replace(self, old: Backend, why: str, failed: bool) -> None:
        """Close `old`, wait as restart_plan says, start a new backend, ask for a rescan."""
        mode = old.mode if old.mode != "inotify+polling" else "inotify"
        old.stop()
        old.close()
        with self._lock:
            fallback, self._fallback = self._fallback, None
        if fallback is not None:
            fallback.close()
        while not self._stopped.is_set():
            plan = restart_plan(self._failures, self._clock()) if failed else RestartPlan(0, False)
            if plan.fall_back and mode != "polling":
                mode = "polling"
                self._on_warning(f"file watching failed {FAILURES_BEFORE_POLLING} times within a"
                                 " minute; polling every 1 s from now on (restart devloop to"
                                 " try again)")
            if self._stopped.wait(plan.delay):
                return
            try:
                self._backend = self._started(mode)
            except Exception as exc:
                failed = True
                self._failures.append(self._clock())
                why = f"{why}; restarting it failed too ({_described(exc)})"
                continue
            self._on_rescan(f"{why}; watching again ({self.mode}), every service rescanned")
            return

    # --- what backends report (the Sink) ---------------------------------------------------------

    def changed(self, paths: list[Path]) -> None:
        self._on_change(paths)

    def rescan(self, reason: str) -> None:
        self._on_rescan(reason)

    def out_of_watches(self) -> None:
        if not self._limit_said:
            self._limit_said = True
            self._on_warning(INOTIFY_LIMIT_HELP)

    def _poll_root(self, root: WatchRoot) -> None:
        """Poll a root the kernel has no inotify watches left for (beside inotify)."""
        with self._lock:
            if self._fallback is None:
                self._fallback = ObserverBackend(RootSet([root]), self, polling=True,
                                                 poll_interval=self._poll_interval)
                self._fallback.start()
            elif root not in self._fallback.roots.roots:
                self._fallback.roots.roots.append(root)
                with contextlib.suppress(OSError):
                    self._fallback.add_root(root)


def _described(exc: BaseException) -> str:
    return one_line(f"{type(exc).__name__}: {exc}", 160)

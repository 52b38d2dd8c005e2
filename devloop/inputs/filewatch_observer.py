"""watchdog observers as watch backends: the platform's native one, or polling.

native is FSEvents on macOS, ReadDirectoryChangesW on Windows, kqueue on BSD (and watchdog's
recursive inotify on Linux); it watches whole trees, so the ignore rules are applied to its
events here (RootSet.wanted with prunes). polling lists only input directories (RootSet.listdir)
once a second: the fallback, and the choice for network file systems where no native event
arrives. Both run on watchdog's own threads; `run()` only checks they are alive and that every
root still exists, and says when the observer must be rebuilt.
"""

from __future__ import annotations

import contextlib
import os
import threading
from pathlib import Path
from typing import Protocol

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers.api import BaseObserver
from watchdog.observers.polling import PollingObserverVFS

from devloop.inputs.watchroots import RootSet, WatchRoot

_CHECK_S = 1.0  # liveness and root checks; a wake-up a second costs nothing measurable


class Sink(Protocol):
    def changed(self, paths: list[Path]) -> None: ...


class ObserverDied(RuntimeError):
    """A watchdog thread ended (an exception in it, printed by threading's hook)."""


class ObserverBackend:
    """`polling=True`: PollingObserverVFS over input directories; else watchdog's Observer."""

    def __init__(self, roots: RootSet, sink: Sink, polling: bool,
                 poll_interval: float = 1.0) -> None:
        self.roots = roots
        self.sink = sink
        self.mode = "polling" if polling else "native"
        self._poll_interval = poll_interval
        self._observer: BaseObserver | None = None
        self._scheduled: list[WatchRoot] = []
        self._stopped = threading.Event()
        self._handler = _Handler(self)

    @property
    def watch_count(self) -> int:
        return len(self._scheduled)

    def start(self) -> None:
        self._observer = self._make()
        for root in self.roots.roots:
            self.add_root(root)
        self._observer.start()

    def _make(self) -> BaseObserver:
        if self.mode == "polling":
            return PollingObserverVFS(stat=os.stat, listdir=self.roots.listdir,
                                      polling_interval=self._poll_interval)
        from watchdog.observers import Observer  # picks the platform's native API

        return Observer()

    def add_root(self, root: WatchRoot) -> None:
        """Watch one more root (also while running); a missing one is waited for by run()."""
        assert self._observer is not None
        if root in self._scheduled or not root.path.is_dir():
            return
        self._observer.schedule(self._handler, str(root.path), recursive=root.recursive)
        self._scheduled.append(root)

    def run(self) -> str | None:
        """Wait until stop() (None), a root appeared or vanished (the reason to rebuild and
        rescan), or raise ObserverDied."""
        assert self._observer is not None
        while not self._stopped.is_set():
            self._handler.wake.wait(_CHECK_S)
            if self._stopped.is_set():
                break
            if self._handler.restart is not None:
                return self._handler.restart
            if self._handler.error is not None:
                raise ObserverDied(f"event handler failed: {self._handler.error!r}")
            if not self._observer.is_alive() or not all(
                    e.is_alive() for e in self._observer.emitters):
                raise ObserverDied(f"{self.mode} observer thread ended")
            for root in self.roots.roots:
                if (root in self._scheduled) != root.path.is_dir():
                    return f"{root.path} {'vanished' if root in self._scheduled else 'appeared'}"
        return None

    def stop(self) -> None:
        self._stopped.set()

    def close(self) -> None:
        if self._observer is not None:
            self._observer.stop()
            if self._observer.is_alive():
                self._observer.join(timeout=2)
            self._observer = None


class _Handler(FileSystemEventHandler):
    def __init__(self, backend: ObserverBackend) -> None:
        self.backend = backend
        self.error: BaseException | None = None
        self.restart: str | None = None  # why the observer must be rebuilt
        self.wake = threading.Event()

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.event_type in ("opened", "closed_no_write"):
            return
        try:
            paths = [Path(os.fsdecode(event.src_path))]
            if getattr(event, "dest_path", ""):
                paths.append(Path(os.fsdecode(event.dest_path)))
            wanted = [p for p in paths if self.backend.roots.wanted(p, check_prunes=True)]
            if wanted:
                self.backend.sink.changed(wanted)
            if wanted and self.restart is None:
                self.restart = self._needs_restart(event, paths)
                if self.restart is not None:
                    self.wake.set()
        except Exception as exc:  # watchdog would end its dispatch thread: let run() restart
            self.error = exc
            self.wake.set()

    def _needs_restart(self, event: FileSystemEvent, paths: list[Path]) -> str | None:
        """Whether the observer's view of the tree is wrong (then it is rebuilt and every
        service rescanned, rather than saves being missed). Both cases are watchdog's recursive
        inotify observer (Linux): it keeps the old path of a folder moved out and back in, and
        adds no watches below a folder moved in with subfolders. Rare events, cheap to check."""
        if self.backend.mode != "native":
            return None
        if (event.event_type in ("modified", "closed", "created")
                and not os.path.isdir(paths[0].parent)):
            return (f"the native observer reported a change in {paths[0].parent}, a folder"
                    " that does not exist (moved out and back in)")
        if event.is_directory and event.event_type in ("created", "moved"):
            with contextlib.suppress(OSError), os.scandir(paths[-1]) as it:
                if any(e.is_dir(follow_symlinks=False) for e in it):
                    return f"{paths[-1]} arrived with subfolders; watching it whole"
        return None

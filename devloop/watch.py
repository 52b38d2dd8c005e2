"""File watching that never looks inside ignored directories.

watchdog's recursive inotify watch adds one watch per subdirectory and cannot skip subtrees
(watchdog#212), so a frontend's node_modules alone can exhaust `fs.inotify.max_user_watches`.
We use watchdog's inotify binding (`Inotify`) with one non-recursive watch per *input* directory,
added and removed as directories come and go. When the kernel refuses a watch (ENOSPC) we say how
to raise the limit and fall back to watchdog's polling observer, listing only input directories.
"""

from __future__ import annotations

import contextlib
import errno
import os
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers.inotify_c import Inotify, InotifyConstants
from watchdog.observers.polling import PollingObserverVFS

from devloop.ignore import is_editor_temp

_MASK = (InotifyConstants.IN_MODIFY | InotifyConstants.IN_ATTRIB | InotifyConstants.IN_CLOSE_WRITE
         | InotifyConstants.IN_MOVED_FROM | InotifyConstants.IN_MOVED_TO
         | InotifyConstants.IN_CREATE | InotifyConstants.IN_DELETE
         | InotifyConstants.IN_DELETE_SELF | InotifyConstants.IN_MOVE_SELF)

INOTIFY_LIMIT_HELP = (
    "inotify watch limit reached (fs.inotify.max_user_watches); raise it with "
    "`sudo sysctl fs.inotify.max_user_watches=524288` (persist in /etc/sysctl.d/), "
    "or add the big directories to ignore: in devloop.yaml; falling back to polling every 1 s"
)


@dataclass(frozen=True)
class WatchRoot:
    """A directory tree to watch; `prunes` says which subdirectories (relative, '/'-separated)
    hold no inputs and must get no watch. `only` limits events to these file names (used to watch
    a single file such as devloop.yaml through its directory)."""

    path: Path
    prunes: Callable[[str], bool]
    recursive: bool = True
    only: frozenset[str] | None = None


class TreeWatcher:
    """Reports changed paths of the watched trees, in batches, from one reader thread.

    `on_change(paths)` is called from the watcher thread; keep it cheap (put on a queue).
    `on_warning(text)` gets one-line warnings (the inotify limit).
    """

    def __init__(self, roots: Iterable[WatchRoot], on_change: Callable[[list[Path]], None],
                 on_warning: Callable[[str], None], poll_interval: float = 1.0) -> None:
        self.roots = list(roots)
        self._on_change = on_change
        self._on_warning = on_warning
        self._poll_interval = poll_interval
        self._inotify: Inotify | None = None
        self._thread: threading.Thread | None = None
        self._polling: PollingObserverVFS | None = None
        self._stopped = threading.Event()
        self._watched: set[str] = set()
        self.mode = "stopped"

    # --- lifecycle -------------------------------------------------------------------------------

    def start(self) -> None:
        """Add the watches (synchronously, so no save after start() is missed) and start reading."""
        dirs = [d for root in self.roots for d in self._input_dirs(root, root.path)]
        try:
            self._inotify = Inotify(str(self.roots[0].path).encode(), event_mask=_MASK)
            self._watched.add(str(self.roots[0].path))
            for d in dirs:
                self._add_watch(d)
        except OSError as exc:
            if self._inotify is not None:
                self._inotify.close()
                self._inotify = None
            if exc.errno not in (errno.ENOSPC, errno.EMFILE):
                raise
            self._on_warning(INOTIFY_LIMIT_HELP)
            self._start_polling()
            return
        self.mode = "inotify"
        self._thread = threading.Thread(target=self._read_loop, name="devloop-watch", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopped.set()
        if self._inotify is not None:
            self._inotify.close()
        if self._thread is not None:
            self._thread.join(timeout=2)
        if self._polling is not None:
            self._polling.stop()
            self._polling.join(timeout=2)
        self.mode = "stopped"

    @property
    def watch_count(self) -> int:
        return len(self._watched)

    # --- inotify ---------------------------------------------------------------------------------

    def _input_dirs(self, root: WatchRoot, start: Path) -> Iterable[Path]:
        """`start` and every directory below it that may hold inputs (pruned ones skipped)."""
        rel0 = self._rel(root, start)
        if rel0 is None or (rel0 and root.prunes(rel0)):
            return
        yield start
        if not root.recursive:
            return
        stack = [start]
        while stack:
            current = stack.pop()
            try:
                with os.scandir(current) as it:
                    subdirs = [Path(e.path) for e in it if e.is_dir(follow_symlinks=False)]
            except (FileNotFoundError, NotADirectoryError, PermissionError):
                continue
            for sub in subdirs:
                rel = self._rel(root, sub)
                if rel is not None and not root.prunes(rel):
                    yield sub
                    stack.append(sub)

    @staticmethod
    def _rel(root: WatchRoot, path: Path) -> str | None:
        try:
            rel = path.relative_to(root.path).as_posix()
        except ValueError:
            return None
        return "" if rel == "." else rel

    def _add_watch(self, path: Path) -> None:
        key = str(path)
        if key in self._watched or self._inotify is None:
            return
        try:
            self._inotify.add_watch(key.encode())
        except FileNotFoundError:
            return
        self._watched.add(key)

    def _remove_below(self, path: Path) -> None:
        prefix = str(path)
        for key in [k for k in self._watched if k == prefix or k.startswith(prefix + os.sep)]:
            self._watched.discard(key)
            if self._inotify is not None:
                with contextlib.suppress(KeyError, OSError):
                    self._inotify.remove_watch(key.encode())

    def _roots_for(self, path: Path) -> list[WatchRoot]:
        return [r for r in self.roots if r.recursive and self._rel(r, path) is not None]

    def _wanted(self, path: Path) -> bool:
        """Whether an event at `path` can matter to anybody."""
        if is_editor_temp(path.name):
            return False
        for root in self.roots:
            rel = self._rel(root, path)
            if rel is None:
                continue
            if root.only is not None:
                if path.parent == root.path and path.name in root.only:
                    return True
                continue
            if root.recursive or path.parent == root.path:
                return True
        return False

    def _read_loop(self) -> None:
        assert self._inotify is not None
        while not self._stopped.is_set():
            try:
                events = self._inotify.read_events()
            except OSError as exc:
                if self._stopped.is_set():
                    return
                self._on_warning(f"file watching failed ({exc}); falling back to polling")
                self._start_polling()
                return
            if self._stopped.is_set():
                return
            changed: list[Path] = []
            for ev in events:
                path = Path(os.fsdecode(ev.src_path))
                if ev.is_directory and (ev.is_moved_from or ev.is_delete):
                    self._remove_below(path)
                if ev.is_directory and (ev.is_create or ev.is_moved_to):
                    try:
                        for root in self._roots_for(path):
                            for d in self._input_dirs(root, path):
                                self._add_watch(d)
                    except OSError as exc:
                        if exc.errno == errno.ENOSPC:
                            self._on_warning(INOTIFY_LIMIT_HELP)
                            self._inotify.close()
                            self._start_polling()
                            return
                        raise
                if ev.is_ignored or ev.is_delete_self or ev.is_move_self:
                    continue
                if self._wanted(path):
                    changed.append(path)
            if changed:
                self._on_change(list(dict.fromkeys(changed)))

    # --- polling fallback ------------------------------------------------------------------------

    def _start_polling(self) -> None:
        self.mode = "polling"
        self._watched.clear()
        handler = _PollingHandler(self)
        observer = PollingObserverVFS(stat=os.stat, listdir=self._listdir,
                                      polling_interval=self._poll_interval)
        for root in self.roots:
            observer.schedule(handler, str(root.path), recursive=root.recursive)
        observer.start()
        self._polling = observer

    def _listdir(self, path: str) -> Iterable[os.DirEntry[str]]:
        """os.scandir without pruned directories, so polling never walks node_modules."""
        parent = Path(path)
        for entry in os.scandir(path):
            if entry.is_dir(follow_symlinks=False):
                child = parent / entry.name
                roots = self._roots_for(child)
                if roots and all(r.prunes(self._rel(r, child) or "") for r in roots):
                    continue
            yield entry


class _PollingHandler(FileSystemEventHandler):
    def __init__(self, watcher: TreeWatcher) -> None:
        self.watcher = watcher

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.event_type in ("opened", "closed_no_write"):
            return
        paths = [Path(os.fsdecode(event.src_path))]
        if getattr(event, "dest_path", ""):
            paths.append(Path(os.fsdecode(event.dest_path)))
        wanted = [p for p in paths if self.watcher._wanted(p)]
        if wanted:
            self.watcher._on_change(wanted)

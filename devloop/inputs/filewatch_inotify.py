"""Linux inotify, one non-recursive watch per input directory, read from the raw event buffer.

Why not watchdog's `Inotify` class: its recursive mode watches node_modules (watchdog#212), its
`read_events()` raises KeyError for an event of a descriptor it has removed (the kernel still
queues IN_IGNORED), and it drops the queue-overflow event (wd -1) silently. Reading the buffer
here makes those three cases ordinary: an unknown descriptor is noise, an overflow asks for a
rescan. Only watchdog's ctypes bindings are used, imported when this backend starts (they raise
UnsupportedLibcError on macOS, so nothing imports this module at load time).
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import select
import struct
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from devloop.inputs.watchroots import RootSet, WatchRoot

IN_MODIFY, IN_ATTRIB, IN_CLOSE_WRITE = 0x2, 0x4, 0x8
IN_MOVED_FROM, IN_MOVED_TO, IN_CREATE, IN_DELETE = 0x40, 0x80, 0x100, 0x200
IN_DELETE_SELF, IN_MOVE_SELF = 0x400, 0x800
IN_Q_OVERFLOW, IN_IGNORED, IN_ISDIR = 0x4000, 0x8000, 0x40000000
MASK = (IN_MODIFY | IN_ATTRIB | IN_CLOSE_WRITE | IN_MOVED_FROM | IN_MOVED_TO | IN_CREATE
        | IN_DELETE | IN_DELETE_SELF | IN_MOVE_SELF)
_HEADER = struct.Struct("iIII")
_BUFFER = 256 * 1024


class Sink(Protocol):
    """Where a backend reports (the supervising TreeWatcher)."""

    def changed(self, paths: list[Path]) -> None: ...
    def rescan(self, reason: str) -> None: ...
    def out_of_watches(self) -> None: ...


class Kernel:
    """The three inotify system calls (watchdog's ctypes bindings, loaded on first use)."""

    def __init__(self) -> None:
        from watchdog.observers import inotify_c  # Linux only: imported here, never at load

        self._init = inotify_c.inotify_init
        self._add = inotify_c.inotify_add_watch
        self._rm = inotify_c.inotify_rm_watch

    def init(self) -> int:
        fd = self._init()
        if fd < 0:
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err))
        return fd

    def add_watch(self, fd: int, path: Path) -> int:
        """The watch descriptor, or raise OSError with the kernel's errno."""
        wd = self._add(fd, os.fsencode(path), MASK)
        if wd < 0:
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err), str(path))
        return wd

    def rm_watch(self, fd: int, wd: int) -> None:
        self._rm(fd, wd)


def read_buffer(fd: int) -> bytes:
    """One read of queued events (module-level: tests replace it to lose events on purpose)."""
    return os.read(fd, _BUFFER)


def parse(buffer: bytes) -> list[tuple[int, int, bytes]]:
    """(wd, mask, name) of each `struct inotify_event` in a read buffer."""
    out = []
    i = 0
    while i + _HEADER.size <= len(buffer):
        wd, mask, _cookie, length = _HEADER.unpack_from(buffer, i)
        name = buffer[i + _HEADER.size: i + _HEADER.size + length].rstrip(b"\0")
        i += _HEADER.size + length
        out.append((wd, mask, name))
    return out


class InotifyBackend:
    """Watches the input directories of `roots`; `run()` reads until `stop()`.

    Roots that do not exist (yet, or any more) are waited for through a watch on their nearest
    existing parent; roots the kernel has no watches left for are handed to `poll_root`.
    """

    mode = "inotify"

    def __init__(self, roots: RootSet, sink: Sink, poll_root: Callable[[WatchRoot], None],
                 kernel: Kernel | None = None) -> None:
        self.roots = roots
        self.sink = sink
        self._poll_root = poll_root
        self._kernel = kernel or Kernel()
        self._fd = -1
        self._kill_r, self._kill_w = -1, -1
        self._path_for_wd: dict[int, Path] = {}
        self._wd_for_path: dict[Path, int] = {}
        self._missing: list[WatchRoot] = []  # roots waited for through a parent's watch
        self._polled: set[Path] = set()  # roots handed to polling (out of watches)
        self._stopped = threading.Event()

    @property
    def watch_count(self) -> int:
        return len(self._wd_for_path)

    def start(self) -> None:
        """Add every watch now, so no save after start() is missed."""
        self._fd = self._kernel.init()
        self._kill_r, self._kill_w = os.pipe()
        for root in self.roots.roots:
            self._watch_root(root)

    def stop(self) -> None:
        self._stopped.set()
        if self._kill_w >= 0:
            with contextlib.suppress(OSError):
                os.write(self._kill_w, b"x")

    def close(self) -> None:
        """Release the descriptors (after run() returned, or when it never ran)."""
        for fd in (self._fd, self._kill_r, self._kill_w):
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self._fd = self._kill_r = self._kill_w = -1
        self._path_for_wd.clear()
        self._wd_for_path.clear()

    def run(self) -> None:
        """Read and handle events until stop(); any exception is the supervisor's to handle."""
        poller = select.poll()
        poller.register(self._fd, select.POLLIN)
        poller.register(self._kill_r, select.POLLIN)
        while not self._stopped.is_set():
            try:
                ready = {fd for fd, _ in poller.poll()}
            except InterruptedError:
                continue
            if self._stopped.is_set() or self._kill_r in ready:
                return
            try:
                buffer = read_buffer(self._fd)
            except InterruptedError:
                continue
            self.handle(buffer)

    # --- events ----------------------------------------------------------------------------------

    def handle(self, buffer: bytes) -> None:
        """Apply one read's events: keep the watches in step with the tree, report changes."""
        changed: list[Path] = []
        overflow = False
        anchors_touched = False
        for wd, mask, name in parse(buffer):
            if wd == -1 or mask & IN_Q_OVERFLOW:
                overflow = True
                continue
            if mask & IN_IGNORED:
                self._forget_wd(wd)
                continue
            parent = self._path_for_wd.get(wd)
            if parent is None:
                continue  # a descriptor already removed (its queued events): noise
            path = parent / os.fsdecode(name) if name else parent
            if mask & (IN_DELETE_SELF | IN_MOVE_SELF):
                if self._root_vanished(parent):
                    changed.append(parent)
                    anchors_touched = True
                continue
            is_dir = bool(mask & IN_ISDIR)
            if is_dir and mask & (IN_MOVED_FROM | IN_DELETE):
                self._remove_below(path)
            if is_dir and mask & (IN_CREATE | IN_MOVED_TO):
                for root in self.roots.recursive_roots_for(path):
                    self._add_dirs(root, path)
            if self._missing and mask & (IN_CREATE | IN_MOVED_TO):
                anchors_touched = True
            if self.roots.wanted(path):
                changed.append(path)
        if anchors_touched:
            changed += self._recheck_missing()
        if overflow:
            self._resync()
        if changed:
            self.sink.changed(list(dict.fromkeys(changed)))
        if overflow:
            self.sink.rescan("the inotify event queue overflowed (fs.inotify.max_queued_events);"
                             " rescanned every service")

    def _forget_wd(self, wd: int) -> None:
        path = self._path_for_wd.pop(wd, None)
        if path is not None and self._wd_for_path.get(path) == wd:
            del self._wd_for_path[path]

    def _root_vanished(self, directory: Path) -> bool:
        """A watched directory was deleted or moved away; when it is a root, it is waited for
        (`_recheck_missing`). True when a root went."""
        self._remove_below(directory)
        gone = [r for r in self.roots.roots if r.path == directory]
        self._missing += [r for r in gone if r not in self._missing]
        return bool(gone)

    def _recheck_missing(self) -> list[Path]:
        """Watch the nearest existing parent of each missing root, then look: the check comes
        after the watch, so a root re-created at any moment (git removes an emptied folder and
        makes it again in the same checkout) is either seen here or reported by that watch.
        Roots that exist again get their watches and are returned as changed."""
        back = []
        for root in list(self._missing):
            self._anchor(root)
            if root.path.is_dir():
                self._missing.remove(root)
                self._add_dirs(root, root.path)
                back.append(root.path)
        return back

    # --- watches ---------------------------------------------------------------------------------

    def _watch_root(self, root: WatchRoot) -> None:
        if not root.path.is_dir():
            if root not in self._missing:
                self._missing.append(root)
            self._recheck_missing()
            return
        self._add_dirs(root, root.path)

    def _anchor(self, root: WatchRoot) -> None:
        """Watch the nearest existing parent of a missing root (its events are not wanted)."""
        parent = root.path.parent
        while not parent.is_dir() and parent != parent.parent:
            parent = parent.parent
        self._add(parent, root)

    def _add_dirs(self, root: WatchRoot, start: Path) -> None:
        if root.path in self._polled:
            return
        for directory in self.roots.input_dirs(root, start):
            if not self._add(directory, root):
                return

    def _add(self, directory: Path, root: WatchRoot) -> bool:
        """Add one watch; False when the kernel has none left (the root is polled instead)."""
        if directory in self._wd_for_path:
            return True
        try:
            wd = self._kernel.add_watch(self._fd, directory)
        except OSError as exc:
            if exc.errno == errno.ENOSPC:
                self._polled.add(root.path)
                self.sink.out_of_watches()
                self._poll_root(root)
                return False
            if exc.errno in (errno.ENOENT, errno.ENOTDIR, errno.EACCES, errno.ELOOP):
                return True  # gone meanwhile or unreadable: nothing to watch there
            raise
        self._path_for_wd[wd] = directory
        self._wd_for_path[directory] = wd
        return True

    def _remove_below(self, directory: Path) -> None:
        prefix = f"{directory}{os.sep}"
        for path in [p for p in self._wd_for_path if p == directory or str(p).startswith(prefix)]:
            wd = self._wd_for_path.pop(path)
            self._path_for_wd.pop(wd, None)
            with contextlib.suppress(OSError):
                self._kernel.rm_watch(self._fd, wd)

    def _resync(self) -> None:
        """After an overflow: drop watches of directories that are gone, add the missing ones."""
        for path in [p for p in self._wd_for_path if not p.is_dir()]:
            self._remove_below(path)
        for root in self.roots.roots:
            if root not in self._missing:
                self._watch_root(root)
        self._recheck_missing()

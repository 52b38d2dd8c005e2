"""What the file watcher looks at: the trees (roots) and which of their paths can matter.

Every backend (inotify, the platform's native observer, polling) asks the same questions here,
so the same ignore rules apply whatever reports the events: inotify never adds a watch in a
pruned directory, while the native and polling observers see everything and drop it here.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from devloop.inputs.ignore import is_editor_temp


@dataclass(frozen=True)
class WatchRoot:
    """A directory tree to watch; `prunes` says which subdirectories (relative, '/'-separated)
    hold no inputs and must get no watch. `only` limits events to these file names (used to watch
    a single file such as devloop.yaml through its directory)."""

    path: Path
    prunes: Callable[[str], bool]
    recursive: bool = True
    only: frozenset[str] | None = None


def relative(root: WatchRoot, path: Path) -> str | None:
    """`path` relative to `root` ('/'-separated, "" for the root itself), None when outside."""
    try:
        rel = path.relative_to(root.path).as_posix()
    except ValueError:
        return None
    return "" if rel == "." else rel


class RootSet:
    """The roots of one watcher and the path questions every backend asks about them."""

    def __init__(self, roots: Iterable[WatchRoot]) -> None:
        self.roots = list(roots)

    def input_dirs(self, root: WatchRoot, start: Path) -> Iterator[Path]:
        """`start` and every directory below it that may hold inputs (pruned ones skipped)."""
        rel0 = relative(root, start)
        if rel0 is None or (rel0 and self.pruned(root, rel0)):
            return
        yield start
        if not root.recursive:
            return
        stack = [start]
        while stack:
            current = stack.pop()
            try:
                with os.scandir(current) as it:
                    subdirs = [Path(e.path) for e in it if _is_dir(e)]
            except OSError:  # gone, replaced by a file, unreadable: nothing to watch below
                continue
            for sub in subdirs:
                rel = relative(root, sub)
                if rel is not None and not root.prunes(rel):
                    yield sub
                    stack.append(sub)

    @staticmethod
    def pruned(root: WatchRoot, rel: str) -> bool:
        """Whether directory `rel` or one of its parents below the root is pruned."""
        parts = rel.split("/")
        return any(root.prunes("/".join(parts[: i + 1])) for i in range(len(parts)))

    def recursive_roots_for(self, path: Path) -> list[WatchRoot]:
        return [r for r in self.roots if r.recursive and relative(r, path) is not None]

    def roots_holding(self, directory: Path) -> list[WatchRoot]:
        """The roots whose watched directories include `directory`."""
        return [r for r in self.roots
                if (rel := relative(r, directory)) is not None and (r.recursive or rel == "")]

    def wanted(self, path: Path, check_prunes: bool = False) -> bool:
        """Whether an event at `path` can matter to anybody. `check_prunes` for backends that
        watch whole trees (native, polling): inotify never watches a pruned directory."""
        if is_editor_temp(path.name):
            return False
        for root in self.roots:
            rel = relative(root, path)
            if rel is None:
                continue
            if root.only is not None:
                if path.parent == root.path and path.name in root.only:
                    return True
                continue
            if root.recursive:
                if not (check_prunes and rel and self.pruned(root, rel)):
                    return True
            elif path.parent == root.path:
                return True
        return False

    def listdir(self, path: str) -> Iterator[os.DirEntry[str]]:
        """os.scandir without pruned directories, so polling never walks node_modules."""
        parent = Path(path)
        with os.scandir(path) as it:
            entries = list(it)
        for entry in entries:
            if _is_dir(entry):
                child = parent / entry.name
                roots = self.recursive_roots_for(child)
                if roots and all(r.prunes(relative(r, child) or "") for r in roots):
                    continue
            yield entry


def _is_dir(entry: os.DirEntry[str]) -> bool:
    try:
        return entry.is_dir(follow_symlinks=False)
    except OSError:
        return False

"""Which paths of a service's tree count as inputs.

One rule set serves the watcher (which directories get an inotify watch), the digest (which files
are hashed) and the build context (which files are sent to Docker), so an ignored path costs
nothing anywhere and what is hashed is exactly what is built. .dockerignore matching is
docker-py's own `PatternMatcher`, the same code `docker build` from Python uses.
"""

from __future__ import annotations

import fnmatch
import os
from collections.abc import Iterable
from pathlib import Path

from docker.utils.build import PatternMatcher

from devloop.text import NotText, decode_text

# Directories that are never build inputs of a dev loop and can hold huge trees.
ALWAYS_IGNORED_DIRS = frozenset({
    ".git", ".hg", ".svn", "node_modules", ".next", ".venv", "venv", "__pycache__",
    ".pytest_cache", ".mypy_cache", ".ruff_cache", ".tox", ".devloop",
})
# Temporary files editors write next to the file being saved.
EDITOR_TEMP_PATTERNS = ("4913", "*.swp", "*.swx", "*.swo", "*~", ".#*", "*___jb_tmp___",
                        "*___jb_old___", "#*#", ".*.kate-swp", "*.tmp.[0-9]*")


def is_editor_temp(name: str) -> bool:
    """True for the scratch files editors create while saving (vim's 4913, *.swp, emacs .#x)."""
    return any(fnmatch.fnmatchcase(name, pat) for pat in EDITOR_TEMP_PATTERNS)


def read_dockerignore(context: Path) -> list[str]:
    """The patterns of `context/.dockerignore`, without comments and blank lines."""
    try:
        data = (context / ".dockerignore").read_bytes()
    except (FileNotFoundError, NotADirectoryError):
        return []
    try:
        text = decode_text(data)
    except NotText:  # reported by the config check; here read as docker does, byte for byte
        text = data.decode("utf-8", "surrogateescape")
    return [line.strip() for line in text.splitlines()
            if line.strip() and not line.strip().startswith("#")]


class IgnoreRules:
    """Decides, for paths relative to one root, whether they are inputs.

    Patterns use .dockerignore syntax (including `!` exceptions). A directory is pruned only when
    no exception pattern could re-include something below it, which is what `docker build` does.
    """

    def __init__(self, root: Path, patterns: Iterable[str] = ()) -> None:
        self.root = root
        # '\' separators (a .dockerignore written on Windows) mean '/', as for docker build there
        self.patterns = [p.replace("\\", "/") for p in patterns]
        self._matcher = PatternMatcher(list(self.patterns)) if self.patterns else None
        self._exceptions = [p[1:].strip().strip("/") for p in self.patterns if p.startswith("!")]

    @classmethod
    def for_context(cls, context: Path, extra: Iterable[str] = (),
                    keep: Iterable[str] = ()) -> IgnoreRules:
        """Rules for a build context: its .dockerignore, then devloop.yaml's ignores; `keep`
        names files that are always inputs (the Dockerfile, like docker build does)."""
        patterns = read_dockerignore(context) + list(extra)
        patterns += [f"!{k}" for k in keep]
        return cls(context, patterns)

    def ignores_file(self, rel: str) -> bool:
        """True when the file at `rel` (relative to root, '/'-separated) is not an input."""
        parts = rel.split("/")
        if any(p in ALWAYS_IGNORED_DIRS for p in parts[:-1]) or is_editor_temp(parts[-1]):
            return True
        return self._matcher is not None and self._matcher.matches(rel)

    def prunes_dir(self, rel: str) -> bool:
        """True when nothing below directory `rel` can be an input, so it is never walked or
        watched."""
        name = rel.rsplit("/", 1)[-1]
        if name in ALWAYS_IGNORED_DIRS:
            return True
        if self._matcher is None or not self._matcher.matches(rel):
            return False
        prefix = rel + "/"
        return not any(exc == rel or exc.startswith(prefix) or _may_match_below(exc, rel)
                       for exc in self._exceptions)

    def walk(self, start: str = "") -> Iterable[tuple[str, os.stat_result]]:
        """Every input file below root (or below its subdirectory `start`) as (relative path,
        stat), pruning ignored directories before they are listed."""
        stack = [start]
        while stack:
            rel_dir = stack.pop()
            try:
                with os.scandir(self.root / rel_dir if rel_dir else self.root) as it:
                    entries = list(it)
            except (FileNotFoundError, NotADirectoryError, PermissionError):
                continue
            for entry in entries:
                rel = f"{rel_dir}/{entry.name}" if rel_dir else entry.name
                try:
                    if entry.is_dir(follow_symlinks=False):
                        if not self.prunes_dir(rel):
                            stack.append(rel)
                        continue
                    if self.ignores_file(rel):
                        continue
                    yield rel, entry.stat(follow_symlinks=False)
                except FileNotFoundError:
                    continue


def _may_match_below(exception: str, rel_dir: str) -> bool:
    """Whether an exception pattern with wildcards could match something under `rel_dir`."""
    head = exception.split("/")[: rel_dir.count("/") + 1]
    return any(c in exception for c in "*?[") and fnmatch.fnmatchcase(rel_dir, "/".join(head))

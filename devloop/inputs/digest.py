"""Content digests of a service's build inputs, kept up to date incrementally.

The digest covers the files of the build context after .dockerignore and devloop.yaml ignores, the
Dockerfile (even when it lives outside the context), the build args, the target and any extra
watched paths. It names the image (`<image>:dl-<12 hex>`), so a save that does not change content
changes nothing, and an image that already exists is never built again.

Why incremental: hashing a 20,000-file context on every save would cost seconds. Each file's hash
is cached under its (size, mtime, inode); the watcher passes the changed paths, so a one-file
change re-stats one file. A full walk (start-up, `devloop sync`, after an inotify overflow) still
re-reads only files whose stat changed, using a cache persisted between runs.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import stat
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from devloop.config.loader import ServiceConfig
from devloop.inputs.ignore import IgnoreRules

TAG_PREFIX = "dl-"
_CHUNK = 1 << 20


@dataclass(frozen=True, slots=True)
class FileEntry:
    """What the cache knows about one input file."""

    size: int
    mtime_ns: int
    ino: int
    mode: int
    sha: str

    def same_stat(self, st: os.stat_result) -> bool:
        return (self.size, self.mtime_ns, self.ino, self.mode) == (
            st.st_size, st.st_mtime_ns, st.st_ino, st.st_mode)


class NotAFile(OSError):
    """The path no longer holds a regular file (replaced by a FIFO, socket or directory)."""


def open_regular(path: Path) -> int:
    """A descriptor of `path` opened for reading, when it is a regular file now. Non-blocking:
    a file replaced by a FIFO after it was listed must not hang the digest or the build."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise NotAFile(errno.EINVAL, "not a regular file", str(path))
    return fd


def hash_file(path: Path, st: os.stat_result) -> str:
    """sha256 of a file's content (of the link target text for a symlink)."""
    h = hashlib.sha256()
    if stat.S_ISLNK(st.st_mode):
        h.update(os.fsencode(os.readlink(path)))
        return h.hexdigest()
    with os.fdopen(open_regular(path), "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def path_bytes(rel: str) -> bytes:
    """A path as the file system holds it: names that are not UTF-8 are kept (surrogateescape)
    rather than failing every digest of the service."""
    return rel.encode("utf-8", "surrogateescape")


def _folders_of(rel: str) -> Iterator[str]:
    """The folders above a relative path: a/b/c.py -> a, a/b."""
    return (rel[:i] for i, c in enumerate(rel) if c == "/")


class UnreadableInputs(PermissionError):
    """Input files devloop may not read; one line naming them and what to do."""


class TreeIndex:
    """The input files below one root, each with its cached content hash."""

    def __init__(self, root: Path, rules: IgnoreRules,
                 cache: dict[str, FileEntry] | None = None) -> None:
        self.root = root
        self.rules = rules
        self.files: dict[str, FileEntry] = {}
        self._cache = cache or {}
        self.reads = 0  # files whose content was read; the benchmark and tests watch this
        self.unreadable: set[str] = set()  # input files open() refused (permission denied)
        self._fold_case = case_insensitive(root)
        self._folders: set[str] | None = None  # indexed folders, for _forget; None: stale

    def scan(self) -> None:
        """Walk the whole tree; re-read only files whose stat differs from the cache."""
        old = {**self._cache, **self.files}
        self.files = {}
        self.unreadable.clear()
        for rel, st in self.rules.walk():
            self._add(rel, st, old.get(rel))

    def update(self, paths: Iterable[Path]) -> bool:
        """Apply changed absolute paths below root; return True when any input changed."""
        changed = False
        listings: dict[Path, set[str]] = {}  # per parent, on case-folding file systems
        self._folders = None  # a folder deleted in this batch is looked up in a fresh set
        for path in paths:
            rel = self.relative(path)
            if rel is None:
                continue
            try:
                st = os.lstat(path)
                if self._fold_case and not _listed_as(path, listings):
                    raise FileNotFoundError(path)  # the old name of a case-only rename
            except (FileNotFoundError, NotADirectoryError):
                changed |= self._forget(rel)
                continue
            if stat.S_ISDIR(st.st_mode):
                changed |= self._rescan_dir(rel)
                self._folders = None  # the rescan may have indexed folders the set lacks
            elif not self.rules.ignores_file(rel) and not self._pruned_parent(rel):
                before = self.files.get(rel)
                self._add(rel, st, before)
                changed |= before != self.files.get(rel)
                if self._folders is not None:  # keep it a superset: add the file's folders
                    self._folders.update(_folders_of(rel))
        return changed

    def relative(self, path: Path) -> str | None:
        """`path` relative to root with '/' separators, or None when it is outside."""
        try:
            rel = path.relative_to(self.root)
        except ValueError:
            return None
        text = rel.as_posix()
        return "" if text == "." else text

    def _pruned_parent(self, rel: str) -> bool:
        parts = rel.split("/")[:-1]
        return any(self.rules.prunes_dir("/".join(parts[: i + 1])) for i in range(len(parts)))

    def _add(self, rel: str, st: os.stat_result, known: FileEntry | None) -> None:
        if not (stat.S_ISREG(st.st_mode) or stat.S_ISLNK(st.st_mode)):
            self.files.pop(rel, None)  # a FIFO, socket or device is never an input
            return
        if known is not None and known.same_stat(st):
            self.files[rel] = known
            return
        self.unreadable.discard(rel)
        try:
            sha = hash_file(self.root / rel, st)
        except PermissionError:
            self.files.pop(rel, None)
            self.unreadable.add(rel)
            return
        except OSError:  # vanished, or became a FIFO/socket/directory: not an input now
            self.files.pop(rel, None)
            return
        self.reads += 1
        self.files[rel] = FileEntry(st.st_size, st.st_mtime_ns, st.st_ino, st.st_mode, sha)

    def _forget(self, rel: str) -> bool:
        """Drop a deleted file, or everything below a deleted folder. A folder removed with
        2,500 files arrives as 2,500 file events: each is one dict lookup, not a pass over
        the whole index (which cost a second per deleted checkout)."""
        if rel in self.files:
            del self.files[rel]
            self.unreadable.discard(rel)
            return True
        if rel in self.unreadable:
            self.unreadable.discard(rel)
            return False
        if self._folders is None:  # once per batch, then kept a superset of what is indexed
            self._folders = {f for k in (*self.files, *self.unreadable) for f in _folders_of(k)}
        if rel and rel not in self._folders:
            return False
        prefix = rel + "/" if rel else ""
        gone = [k for k in self.files if k.startswith(prefix)]
        for k in gone:
            del self.files[k]
        self.unreadable = {k for k in self.unreadable if not (k == rel or k.startswith(prefix))}
        return bool(gone)

    def _rescan_dir(self, rel: str) -> bool:
        """A directory appeared, moved or was touched: re-walk just that subtree."""
        if rel and (self.rules.prunes_dir(rel) or self._pruned_parent(rel + "/x")):
            return False
        prefix = rel + "/" if rel else ""
        before = {k: v for k, v in self.files.items() if k.startswith(prefix)}
        for k in before:
            del self.files[k]
        self.unreadable = {k for k in self.unreadable if not k.startswith(prefix)}
        for child_rel, st in self.rules.walk(rel):
            self._add(child_rel, st, before.get(child_rel))
        after = {k: v for k, v in self.files.items() if k.startswith(prefix)}
        return before != after

    def combined(self) -> str:
        """One hash over the sorted (path, executable bit, content hash) triples."""
        h = hashlib.sha256()
        for rel in sorted(self.files):
            e = self.files[rel]
            h.update(path_bytes(f"{rel}\0{e.mode & 0o111:o}\0{e.sha}\n"))
        return h.hexdigest()


class ServiceDigest:
    """The input digest of one service: context tree, Dockerfile, args, target, extra paths."""

    def __init__(self, service: ServiceConfig, cache: dict[str, dict[str, FileEntry]] | None = None
                 ) -> None:
        self.service = service
        cache = cache or {}
        keep = []
        if _inside(service.dockerfile, service.context):
            keep.append(service.dockerfile.relative_to(service.context).as_posix())
        self.context = TreeIndex(service.context,
                                 IgnoreRules.for_context(service.context, service.ignore, keep),
                                 cache.get(str(service.context)))
        self.extra = [TreeIndex(p if p.is_dir() else p.parent,
                                IgnoreRules(p if p.is_dir() else p.parent), cache.get(str(p)))
                      for p in service.watch]
        self._extra_paths = list(service.watch)
        # sha256 of a Dockerfile outside the context as the last digest() hashed it: the build
        # checks it sends those bytes (files in the context are checked against their entries)
        self.dockerfile_sha: str | None = None
        self.meta: str | None = None  # meta_digest() as of the last digest()

    @property
    def reads(self) -> int:
        return self.context.reads + sum(t.reads for t in self.extra)

    def scan(self) -> None:
        self.context.scan()
        for tree in self.extra:
            tree.scan()

    def owns(self, path: Path) -> bool:
        """Whether a change at `path` may affect this service's inputs."""
        if path == self.service.dockerfile:
            return True
        if (rel := self.context.relative(path)) is not None:
            return rel == "" or not self._ignored(self.context, rel)
        for tree, target in zip(self.extra, self._extra_paths, strict=True):
            rel = tree.relative(path)
            if rel is not None and (target.is_dir() or path == target) and (
                    rel == "" or not self._ignored(tree, rel)):
                return True
        return False

    @staticmethod
    def _ignored(tree: TreeIndex, rel: str) -> bool:
        parts = rel.split("/")
        if any(tree.rules.prunes_dir("/".join(parts[: i + 1])) for i in range(len(parts) - 1)):
            return True
        last = "/".join(parts)
        return tree.rules.ignores_file(last) and not os.path.isdir(tree.root / last)

    def update(self, paths: Iterable[Path]) -> None:
        paths = list(paths)
        self.context.update(paths)
        for tree, target in zip(self.extra, self._extra_paths, strict=True):
            tree.update(p for p in paths if target.is_dir() or p == target)

    def rehash(self, paths: Iterable[Path]) -> None:
        """Like update, but re-reads these files even when their stat looks unchanged (the
        build found content that differs from the cached hash)."""
        paths = list(paths)
        for tree in (self.context, *self.extra):
            for path in paths:
                rel = tree.relative(path)
                if rel:
                    tree.files.pop(rel, None)
        self.update(paths)

    def digest(self) -> str:
        """The hex digest of everything that goes into the image; UnreadableInputs when an
        input cannot be read (building without it would deploy an image missing a file)."""
        unreadable = sorted(str(t.root / r) for t in (self.context, *self.extra)
                            for r in t.unreadable)
        if unreadable:
            shown = ", ".join(os.fsdecode(p).encode("utf-8", "backslashreplace").decode()
                              for p in unreadable[:3])
            more = f" and {len(unreadable) - 3} more" if len(unreadable) > 3 else ""
            raise UnreadableInputs(
                f"{shown}{more}: permission denied; make it readable (chmod a+r) or add it to"
                f" ignore: of {self.service.name} in devloop.yaml")
        meta = self._meta_bytes()
        self.meta = hashlib.sha256(b"devloop-meta-v1\n" + meta).hexdigest()
        h = hashlib.sha256()
        h.update(b"devloop-digest-v1\n")
        h.update(f"context\0{self.context.combined()}\n".encode())
        h.update(meta)
        return h.hexdigest()

    def meta_digest(self) -> str:
        """The digest of every input except the context's files (Dockerfile outside the
        context, args, target, extra paths) as of the last digest(): live update can only sync
        when it is unchanged."""
        if self.meta is None:
            self.digest()
        assert self.meta is not None
        return self.meta

    def context_files(self) -> dict[str, str]:
        """{context path: sha256} of the context's input files, as hashed now."""
        return {rel: e.sha for rel, e in self.context.files.items()}

    def _meta_bytes(self) -> bytes:
        """What the digest covers besides the context's files; sets dockerfile_sha when the
        Dockerfile is outside the context (the build checks it sends what was hashed)."""
        svc = self.service
        parts: list[bytes] = []
        rel_df = (svc.dockerfile.relative_to(svc.context).as_posix()
                  if _inside(svc.dockerfile, svc.context) else None)
        if rel_df is None:  # outside the context: hash it explicitly
            data = svc.dockerfile.read_bytes()
            self.dockerfile_sha = hashlib.sha256(data).hexdigest()
            parts.append(b"dockerfile\0" + data + b"\n")
        else:
            self.dockerfile_sha = None
            parts.append(f"dockerfile-path\0{rel_df}\n".encode())
        for key in sorted(svc.build_args):
            parts.append(f"arg\0{key}\0{svc.build_args[key]}\n".encode())
        parts.append(f"target\0{svc.target or ''}\n".encode())
        if svc.platform:  # another platform is another image (absent: the tags stay as they were)
            parts.append(f"platform\0{svc.platform}\n".encode())
        for target, tree in zip(self._extra_paths, self.extra, strict=True):
            if target.is_dir():
                parts.append(f"watch\0{target}\0{tree.combined()}\n".encode())
            else:
                entry = tree.files.get(target.name)
                parts.append(f"watch\0{target}\0{entry.sha if entry else '-'}\n".encode())
        return b"".join(parts)

    def cache_snapshot(self) -> dict[str, dict[str, FileEntry]]:
        snap = {str(self.service.context): dict(self.context.files)}
        for target, tree in zip(self._extra_paths, self.extra, strict=True):
            snap[str(target)] = dict(tree.files)
        return snap


def image_tag(image: str, digest: str) -> str:
    """`<image>:dl-<first 12 hex of the digest>`; never `latest`."""
    return f"{image}:{TAG_PREFIX}{digest[:12]}"


def dl_tag_hex(image: str | None) -> str | None:
    """`0123456789ab` from `[registry/]name:dl-0123456789ab[@sha256:...]`, else None (the
    inverse of image_tag: tags hold the digest's first 12 hex)."""
    if not image:
        return None
    name = image.split("@", 1)[0].rsplit("/", 1)[-1]
    _, sep, tag = name.partition(":")
    hex12 = tag[len(TAG_PREFIX):] if sep and tag.startswith(TAG_PREFIX) else ""
    return hex12 if len(hex12) == 12 and all(c in "0123456789abcdef" for c in hex12) else None


def case_insensitive(root: Path) -> bool:
    """Whether the file system under `root` folds case (macOS, Windows): the same directory
    answers under its name with the case swapped."""
    name = root.name
    swapped = name.swapcase()
    if swapped == name:
        return False
    try:
        return os.path.samestat(os.lstat(root), os.lstat(root.with_name(swapped)))
    except OSError:
        return False


def _listed_as(path: Path, listings: dict[Path, set[str]]) -> bool:
    """Whether `path`'s parent lists it under exactly this case (listings: read once per
    parent for a whole batch of changes)."""
    if path.parent not in listings:
        try:
            listings[path.parent] = set(os.listdir(path.parent))
        except OSError:
            listings[path.parent] = set()
    return path.name in listings[path.parent]


def _inside(path: Path, root: Path) -> bool:
    try:
        path.relative_to(root)
    except ValueError:
        return False
    return True


class DigestCache:
    """Persists per-file hashes between runs so `devloop sync` re-reads only changed files."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self) -> dict[str, dict[str, FileEntry]]:
        try:
            raw = json.loads(self.path.read_text())
        except (FileNotFoundError, ValueError, OSError):
            return {}
        if raw.get("version") != 1:
            return {}
        return {root: {rel: FileEntry(*vals) for rel, vals in files.items()}
                for root, files in raw.get("trees", {}).items()}

    def save(self, trees: dict[str, dict[str, FileEntry]]) -> None:
        data = {"version": 1, "trees": {
            root: {rel: [e.size, e.mtime_ns, e.ino, e.mode, e.sha] for rel, e in files.items()}
            for root, files in trees.items()}}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, separators=(",", ":")))
        os.replace(tmp, self.path)


def default_cache_path(config_path: Path) -> Path:
    """Per-project cache file under $XDG_CACHE_HOME, outside every watched tree."""
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    key = hashlib.sha256(str(config_path.resolve()).encode()).hexdigest()[:16]
    return base / "devloop" / key / "digests.json"

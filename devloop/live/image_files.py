"""What each image was built from: `{context path: sha256}` per image digest, kept on disk.

Live update needs to know what a running container holds, as content, not timestamps: the
image's files plus whatever devloop synced since. The image part is recorded here when devloop
deploys an image whose inputs it has just hashed, and survives a restart of devloop, so a
`watch` started later can still sync on top of an image built earlier. `meta` is the digest of
every input that is not a context file (Dockerfile outside the context, build args, target,
extra watched paths): when it differs, no file sync can reproduce the image.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
from dataclasses import dataclass
from pathlib import Path

_KEEP = 30  # snapshots kept per project; older ones are removed (an image that old is rebuilt)


@dataclass(frozen=True)
class Snapshot:
    files: dict[str, str]
    meta: str


class SnapshotStore:
    """One JSON file per image digest under `directory` (the project's cache directory)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        # a record never changes once written (it is named by the image digest): every save
        # syncs on top of the same image, so it is read from disk once, not on every save
        self._known: dict[str, Snapshot] = {}
        self._lock = threading.Lock()  # services sync from their own workers

    def _path(self, digest: str) -> Path:
        return self.directory / f"{digest[:12]}.json"

    def load(self, digest: str) -> Snapshot | None:
        with self._lock:
            known = self._known.get(digest[:12])
        if known is not None:
            return known
        try:
            raw = json.loads(self._path(digest).read_text())
            snap = Snapshot(dict(raw["files"]), str(raw["meta"]))
        except (OSError, ValueError, KeyError, TypeError):
            return None
        self._remember(digest, snap)
        return snap

    def _remember(self, digest: str, snap: Snapshot) -> None:
        with self._lock:
            self._known[digest[:12]] = snap
            while len(self._known) > _KEEP:
                self._known.pop(next(iter(self._known)))

    def save(self, digest: str, files: dict[str, str], meta: str) -> None:
        """Record an image's inputs; failures are ignored (live update then rebuilds)."""
        snap = Snapshot(dict(files), meta)
        with self._lock:
            if self._known.get(digest[:12]) == snap:
                return  # recorded already (an image deployed again)
        self._remember(digest, snap)
        with contextlib.suppress(OSError):
            self.directory.mkdir(parents=True, exist_ok=True)
            path = self._path(digest)
            tmp = path.with_suffix(".tmp")
            tmp.write_text(json.dumps({"files": files, "meta": meta}, separators=(",", ":")))
            os.replace(tmp, path)
            self._trim()

    def _trim(self) -> None:
        entries = sorted(self.directory.glob("*.json"), key=lambda p: p.stat().st_mtime,
                         reverse=True)
        for old in entries[_KEEP:]:
            with contextlib.suppress(OSError):
                old.unlink()

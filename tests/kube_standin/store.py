"""Versioned object storage with a watch history: the stand-in's etcd.

Every write bumps one global resourceVersion and appends an event to a bounded history, from
which watches replay; a watch older than the history gets 410 like a compacted etcd.
"""

from __future__ import annotations

import copy
import json
import threading
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import errors
from .clock import rfc3339
from .resources import Resource

Obj = dict[str, Any]


@dataclass(frozen=True)
class Event:
    """A committed change; `obj` is the stored (never mutated) object after the change."""

    rv: int
    plural: str
    type: str  # ADDED, MODIFIED, DELETED
    obj: Obj
    old: Obj | None


class Store:
    """Thread-safe object map keyed by (plural, namespace, name)."""

    def __init__(self, history: int = 5000) -> None:
        self._cond = threading.Condition()
        self._objects: dict[str, dict[tuple[str, str], Obj]] = {}
        self._rv = 0
        self._history: deque[Event] = deque(maxlen=history)
        # Events with rv > _compacted are replayable.
        self._compacted = 0
        self._closed = False

    # -- reads ---------------------------------------------------------------------------------

    @property
    def resource_version(self) -> int:
        with self._cond:
            return self._rv

    def get(self, plural: str, namespace: str, name: str) -> Obj | None:
        with self._cond:
            obj = self._objects.get(plural, {}).get((namespace, name))
            return copy.deepcopy(obj) if obj is not None else None

    def list(self, plural: str, namespace: str | None = None) -> tuple[list[Obj], int]:
        """All objects of a kind (optionally one namespace) and the rv they are consistent at."""
        with self._cond:
            items = [
                copy.deepcopy(obj)
                for (ns, _), obj in sorted(self._objects.get(plural, {}).items())
                if namespace is None or ns == namespace
            ]
            return items, self._rv

    def list_raw(self, plural: str, namespace: str | None = None) -> tuple[list[Obj], int]:
        """Like `list` but without copies: callers must treat the objects as read-only."""
        with self._cond:
            items = [
                obj
                for (ns, _), obj in sorted(self._objects.get(plural, {}).items())
                if namespace is None or ns == namespace
            ]
            return items, self._rv

    def namespaced_kinds_in(self, namespace: str) -> list[tuple[str, str]]:
        with self._cond:
            return [
                (plural, name)
                for plural, objs in self._objects.items()
                for (ns, name) in objs
                if ns == namespace
            ]

    # -- writes --------------------------------------------------------------------------------

    def create(self, res: Resource, obj: Obj) -> Obj:
        meta = obj.setdefault("metadata", {})
        key = (meta.get("namespace", "") if res.namespaced else "", meta["name"])
        with self._cond:
            objs = self._objects.setdefault(res.plural, {})
            if key in objs:
                raise errors.already_exists(res.plural, res.group, meta["name"])
            self._rv += 1
            meta["uid"] = meta.get("uid") or str(uuid.uuid4())  # the API may pick it (Jobs)
            meta["resourceVersion"] = str(self._rv)
            meta["creationTimestamp"] = rfc3339()
            if res.has_generation:
                meta["generation"] = 1
            stored = copy.deepcopy(obj)
            objs[key] = stored
            self._record(Event(self._rv, res.plural, "ADDED", stored, None))
            return copy.deepcopy(stored)

    def update(
        self,
        res: Resource,
        namespace: str,
        name: str,
        change: Callable[[Obj], Obj | None],
    ) -> Obj:
        """Atomically applies `change` to a copy of the current object and stores the result.

        `change` may raise ApiError; returning None means "no change" (no new resourceVersion).
        Objects that carry a deletionTimestamp and no finalizers left are removed.
        """
        key = (namespace if res.namespaced else "", name)
        with self._cond:
            current = self._objects.get(res.plural, {}).get(key)
            if current is None:
                raise errors.not_found(res.plural, res.group, name)
            updated = change(copy.deepcopy(current))
            if updated is None or _same(updated, current):
                return copy.deepcopy(current)
            meta = updated["metadata"]
            # Identity fields are owned by the store.
            for field in ("uid", "creationTimestamp", "name", "namespace"):
                if field in current["metadata"]:
                    meta[field] = current["metadata"][field]
            if res.has_generation:
                meta["generation"] = current["metadata"].get("generation", 1)
                if updated.get("spec") != current.get("spec"):
                    meta["generation"] += 1
            if current["metadata"].get("deletionTimestamp"):
                meta["deletionTimestamp"] = current["metadata"]["deletionTimestamp"]
            self._rv += 1
            meta["resourceVersion"] = str(self._rv)
            stored = copy.deepcopy(updated)
            finalized = (
                meta.get("deletionTimestamp")
                and current["metadata"].get("finalizers")
                and not meta.get("finalizers")
                and not res.graceful_delete
            )
            if finalized:
                # The last finalizer went away: the object disappears now.
                del self._objects[res.plural][key]
                self._record(Event(self._rv, res.plural, "DELETED", stored, current))
            else:
                self._objects[res.plural][key] = stored
                self._record(Event(self._rv, res.plural, "MODIFIED", stored, current))
            return copy.deepcopy(stored)

    def remove(self, res: Resource, namespace: str, name: str, uid: str | None = None) -> Obj:
        """Deletes immediately (optionally only if the uid still matches)."""
        key = (namespace if res.namespaced else "", name)
        with self._cond:
            current = self._objects.get(res.plural, {}).get(key)
            if current is None or (uid is not None and current["metadata"].get("uid") != uid):
                raise errors.not_found(res.plural, res.group, name)
            del self._objects[res.plural][key]
            self._rv += 1
            final = copy.deepcopy(current)
            final["metadata"]["resourceVersion"] = str(self._rv)
            self._record(Event(self._rv, res.plural, "DELETED", final, current))
            return copy.deepcopy(final)

    def _record(self, event: Event) -> None:
        if len(self._history) == self._history.maxlen:
            self._compacted = self._history[0].rv
        self._history.append(event)
        self._cond.notify_all()

    # -- watch support -------------------------------------------------------------------------

    def events_after(self, rv: int) -> list[Event]:
        """Events newer than `rv`; raises 410 Gone when `rv` predates the kept history."""
        with self._cond:
            return self._events_after_locked(rv)

    def _events_after_locked(self, rv: int) -> list[Event]:
        if rv < self._compacted:
            raise errors.gone(f"too old resource version: {rv} ({self._rv})")
        if rv >= self._rv:
            return []
        return [e for e in self._history if e.rv > rv]

    def wait_for_events(self, rv: int, timeout: float) -> list[Event]:
        """Blocks until something newer than `rv` is committed, the timeout ends or close()."""
        with self._cond:
            if self._rv <= rv and not self._closed:
                self._cond.wait(timeout)
            return self._events_after_locked(rv)

    def wait_for_change(self, rv: int, timeout: float) -> int:
        """Blocks until the global rv moves past `rv` (or timeout); returns the current rv."""
        with self._cond:
            if self._rv <= rv and not self._closed:
                self._cond.wait(timeout)
            return self._rv

    def compact(self) -> None:
        """Forgets the history, as etcd compaction does: older watches now get 410 Gone."""
        with self._cond:
            self._history.clear()
            self._compacted = self._rv

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    @property
    def closed(self) -> bool:
        return self._closed

    # -- persistence ---------------------------------------------------------------------------

    def save(self, path: Path) -> None:
        with self._cond:
            data = {
                "resourceVersion": self._rv,
                "objects": {
                    plural: list(objs.values()) for plural, objs in self._objects.items()
                },
            }
            text = json.dumps(data)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(text)
        tmp.replace(path)

    def load(self, path: Path, table: Any) -> None:
        data = json.loads(path.read_text())
        with self._cond:
            self._rv = int(data["resourceVersion"])
            self._compacted = self._rv
            self._history.clear()
            self._objects = {}
            table.set_custom(data["objects"].get("customresourcedefinitions") or [])
            for plural, objs in data["objects"].items():
                res = table.by_plural(plural)
                bucket = self._objects.setdefault(plural, {})
                for obj in objs:
                    meta = obj["metadata"]
                    ns = meta.get("namespace", "") if res.namespaced else ""
                    bucket[(ns, meta["name"])] = obj


def _same(a: Obj, b: Obj) -> bool:
    """Equal apart from resourceVersion (a no-op write must not bump it)."""
    if a.keys() != b.keys():
        return False
    for key in a:
        if key == "metadata":
            ma = {k: v for k, v in a[key].items() if k != "resourceVersion"}
            mb = {k: v for k, v in b[key].items() if k != "resourceVersion"}
            if ma != mb:
                return False
        elif a[key] != b[key]:
            return False
    return True

"""Field ownership (`metadata.managedFields`) and server-side apply, as the API server does them.

Every write through the API records who set which fields: an ordinary create/update/patch is an
`Update` by its field manager (the `fieldManager` parameter, else the User-Agent's first word)
and takes the fields it changed from everyone else; an apply (`application/apply-patch+yaml`)
is an `Apply` that owns exactly the fields of its configuration, conflicts (409) with other
managers over fields whose values it would change unless forced, and removes from the object
the fields it owned alone and no longer applies.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

from . import errors
from .clock import rfc3339
from .field_sets import (
    MISSING,
    FieldSet,
    FieldSets,
    Path,
    describe,
    from_fields_v1,
    is_atomic_map,
    is_set_list,
    item_key,
    list_keys,
    to_fields_v1,
)
from .schema import Schemas, child, items

Obj = dict[str, Any]


@dataclass
class Entry:
    """One `managedFields` entry: a manager's fields for one operation (and subresource)."""

    manager: str
    operation: str
    api_version: str
    time: str | None
    subresource: str = ""
    fields: FieldSet = field(default_factory=set)

    @property
    def key(self) -> tuple[str, str, str]:
        return self.manager, self.operation, self.subresource

    def describe(self) -> str:
        """How conflict messages name a manager (the API server's printManager)."""
        text = f'"{self.manager}"'
        if self.subresource:
            text += f' with subresource "{self.subresource}"'
        if self.operation == "Update":
            text += f" using {self.api_version}"
        return text

    def to_json(self) -> Obj:
        out: Obj = {"manager": self.manager, "operation": self.operation,
                    "apiVersion": self.api_version}
        if self.time:
            out["time"] = self.time
        out["fieldsType"] = "FieldsV1"
        out["fieldsV1"] = to_fields_v1(self.fields)
        if self.subresource:
            out["subresource"] = self.subresource
        return out


def manager_from_user_agent(user_agent: str | None) -> str:
    """The API server's default manager name: the User-Agent up to its first '/'."""
    return (user_agent or "").split("/")[0][:128] or "unknown"


def scope(has_status: bool, subresource: str | None) -> bool | None:
    """Which part of an object a write may touch: the status (True), all but the status
    (False: the main endpoint of a kind with a status subresource) or everything (None)."""
    if subresource == "status":
        return True
    return False if has_status else None


def _entries(obj: Obj | None) -> list[Entry]:
    out = []
    for raw in ((obj or {}).get("metadata") or {}).get("managedFields") or []:
        if not isinstance(raw, dict) or not raw.get("manager"):
            continue
        out.append(Entry(raw["manager"], raw.get("operation", "Update"),
                         raw.get("apiVersion", ""), raw.get("time"),
                         raw.get("subresource", ""), from_fields_v1(raw.get("fieldsV1"))))
    return out


def _store(obj: Obj, entries: list[Entry]) -> None:
    kept = [e.to_json() for e in entries if e.fields]
    meta = obj.setdefault("metadata", {})
    if kept:
        meta["managedFields"] = kept
    else:
        meta.pop("managedFields", None)


def _content(obj: Obj) -> Obj:
    """What a write compares to decide whether anything changed."""
    out = dict(obj)
    out["metadata"] = {k: v for k, v in (obj.get("metadata") or {}).items()
                       if k not in ("managedFields", "resourceVersion", "generation")}
    return out


class FieldManager:
    """Keeps `metadata.managedFields` for every write and performs server-side apply."""

    def __init__(self, schemas: Schemas) -> None:
        self._schemas = schemas
        self._sets = FieldSets(schemas)

    # -- ordinary writes (operation Update) ----------------------------------------------------

    def created(self, obj: Obj, manager: str, part: bool | None, subresource: str = "",
                applied: Obj | None = None) -> None:
        """Records the creator: an applier owns its configuration, an Update all it sent
        (defaults included, as on the real server)."""
        if applied is not None:
            entry = Entry(manager, "Apply", obj.get("apiVersion", ""), rfc3339(), subresource,
                          self._sets.of(applied, part))
        else:
            entry = Entry(manager, "Update", obj.get("apiVersion", ""), rfc3339(), subresource,
                          self._sets.of(obj, part))
        _store(obj, [entry])

    def updated(self, old: Obj, new: Obj, manager: str | None, part: bool | None,
                subresource: str = "") -> None:
        """Moves the fields `new` changed relative to `old` to `manager` (None: a stand-in
        controller, which owns nothing)."""
        sent = (new.get("metadata") or {}).get("managedFields")
        base = old if sent is None or sent == (old.get("metadata") or {}).get(
            "managedFields") else new
        entries = _entries(base)
        if manager is None or _content(old) == _content(new):
            _store(new, entries)
            return
        before, after = self._sets.of(old, part), self._sets.of(new, part)
        changed = {p for p in after if p not in before or (
            self._sets.is_leaf(new, p) and self._sets.get(old, p) != self._sets.get(new, p))}
        removed = before - after
        mine = self._entry(entries, manager, "Update", subresource, new)
        for entry in entries:
            if entry is not mine:
                entry.fields -= changed | removed
        mine.fields = (mine.fields | changed) - removed
        _store(new, entries)

    @staticmethod
    def _entry(entries: list[Entry], manager: str, operation: str, subresource: str,
               obj: Obj) -> Entry:
        for entry in entries:
            if entry.key == (manager, operation, subresource):
                entry.time = rfc3339()
                entry.api_version = obj.get("apiVersion", entry.api_version)
                return entry
        entry = Entry(manager, operation, obj.get("apiVersion", ""), rfc3339(), subresource)
        entries.append(entry)
        return entry

    # -- server-side apply ---------------------------------------------------------------------

    def apply(self, live: Obj, applied: Obj, manager: str, force: bool, part: bool | None,
              subresource: str = "") -> Obj:
        """The object after `manager` applies `applied` to `live` (managedFields included);
        raises 409 Conflict naming the managers and fields unless `force`."""
        entries = _entries(live)
        key = (manager, "Apply", subresource)
        previous = next((e.fields for e in entries if e.key == key), set())
        wanted = self._sets.of(applied, part)
        conflicts: list[tuple[Entry, Path]] = []
        for path in sorted(wanted):
            if not self._sets.is_leaf(applied, path):
                continue
            current = self._sets.get(live, path)
            if current is MISSING or current == self._sets.get(applied, path):
                continue
            conflicts += [(e, path) for e in entries if e.key != key and path in e.fields]
        if conflicts and not force:
            raise conflict_error(conflicts)
        for entry, path in conflicts:
            entry.fields.discard(path)
        merged = self._merge(live, applied, self._sets.root(live))
        others: FieldSet = set().union(*(e.fields for e in entries if e.key != key))
        for path in sorted(previous - wanted - others, key=lambda p: (-len(p), p)):
            self._sets.remove(merged, path, others | wanted)
        if _content(merged) == _content(live) and previous == wanted and not conflicts:
            return copy.deepcopy(live)
        mine = self._entry(entries, manager, "Apply", subresource, applied)
        mine.fields = wanted
        _store(merged, entries)
        return merged

    def _merge(self, live: Any, applied: Any, node: dict[str, Any] | None) -> Any:
        """Structural merge: maps by key, associative lists by their keys, sets by value,
        everything else (scalars, atomic lists and maps) replaced by the applied value."""
        schemas = self._schemas
        if isinstance(applied, dict) and isinstance(live, dict) and \
                not is_atomic_map(schemas, node):
            out = copy.deepcopy(live)
            for key, value in applied.items():
                if value is not None:
                    out[key] = self._merge(live.get(key, MISSING), value,
                                           child(schemas, node, key))
            return out
        if isinstance(applied, list) and isinstance(live, list):
            keys = list_keys(schemas, node)
            if keys:
                out_list = copy.deepcopy(live)
                element = items(schemas, node)
                for item in applied:
                    name = item_key(item, keys)
                    index = next((i for i, v in enumerate(out_list)
                                  if item_key(v, keys) == name), None)
                    if index is None:
                        out_list.append(copy.deepcopy(item))
                    else:
                        out_list[index] = self._merge(out_list[index], item, element)
                return out_list
            if is_set_list(schemas, node):
                return copy.deepcopy(live) + [copy.deepcopy(v) for v in applied if v not in live]
        return copy.deepcopy(applied)


def conflict_error(conflicts: list[tuple[Entry, Path]]) -> errors.ApiError:
    """409 Conflict worded and detailed as the API server's apply conflicts."""
    causes = [{"type": "FieldManagerConflict", "message": f"conflict with {e.describe()}",
               "field": describe(p)} for e, p in conflicts]
    if len(conflicts) == 1:
        entry, path = conflicts[0]
        message = f"Apply failed with 1 conflict: conflict with {entry.describe()}: " \
                  f"{describe(path)}"
    else:
        by_manager: dict[str, list[str]] = {}
        for entry, path in conflicts:
            by_manager.setdefault(entry.describe(), []).append(describe(path))
        lines = []
        for name in sorted(by_manager):
            lines.append(f"conflicts with {name}:")
            lines += [f"- {p}" for p in by_manager[name]]
        message = f"Apply failed with {len(conflicts)} conflicts: " + "\n".join(lines)
    return errors.ApiError(409, "Conflict", message, {"causes": causes})


def manager_required() -> errors.ApiError:
    """What the API server answers to an apply without `fieldManager`."""
    return errors.ApiError(
        422, "Invalid",
        'PatchOptions.meta.k8s.io "" is invalid: fieldManager: Required value: is required '
        "for apply patch",
        {"group": "meta.k8s.io", "kind": "PatchOptions", "causes": [{
            "reason": "FieldValueRequired", "message": "Required value: is required for apply "
            "patch", "field": "fieldManager"}]},
    )

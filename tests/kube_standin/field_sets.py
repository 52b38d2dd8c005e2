"""Field sets, the vocabulary of server-side apply's `metadata.managedFields`.

A field set is a set of paths; a path is a tuple of structured-merge-diff path elements:
`f:<field>`, `k:<json of the item's list-map keys>` (an item of an associative list such as
containers or env), `v:<json value>` (an item of a set list such as finalizers). The schema says
which lists are associative (`x-kubernetes-list-type: map` + `list-map-keys`), sets, or atomic
(owned as one value), and which maps are atomic (`x-kubernetes-map-type: atomic`), exactly as
the real API server's OpenAPI models do. `FieldsV1` is the nested-dict spelling of a set, where
`"."` marks a path that is itself a member and also has members below it.
"""

from __future__ import annotations

import json
from typing import Any

from .schema import Schemas, child, items

Path = tuple[str, ...]
FieldSet = set[Path]
MISSING = object()

# Set by the server, never owned by a manager (the API server's strip set).
_SERVER_META = ("name", "namespace", "uid", "resourceVersion", "generation", "creationTimestamp",
                "deletionTimestamp", "deletionGracePeriodSeconds", "managedFields", "selfLink")
# Key fields of associative lists that defaulting fills in when the client leaves them out.
_KEY_DEFAULTS = {"protocol": "TCP"}


def _ext(schemas: Schemas, node: dict[str, Any] | None, name: str) -> Any:
    """An `x-kubernetes-*` extension, looked up on the property and on what it refers to."""
    if not node:
        return None
    if name in node:
        return node[name]
    resolved = schemas.resolve(node)
    return (resolved or {}).get(name)


def list_keys(schemas: Schemas, node: dict[str, Any] | None) -> list[str] | None:
    """The item keys of an associative list, None for atomic and set lists."""
    kind = _ext(schemas, node, "x-kubernetes-list-type")
    if kind == "map":
        return list(_ext(schemas, node, "x-kubernetes-list-map-keys") or [])
    merge_key = _ext(schemas, node, "x-kubernetes-patch-merge-key")
    if kind is None and merge_key:
        return [merge_key]
    return None


def is_set_list(schemas: Schemas, node: dict[str, Any] | None) -> bool:
    return _ext(schemas, node, "x-kubernetes-list-type") == "set"


def is_atomic_map(schemas: Schemas, node: dict[str, Any] | None) -> bool:
    return _ext(schemas, node, "x-kubernetes-map-type") == "atomic"


def is_granular_map(schemas: Schemas, node: dict[str, Any] | None) -> bool:
    """A map with free keys (labels, data): the map itself is a member besides its keys."""
    resolved = schemas.resolve(node) if node else None
    return bool(resolved) and not resolved.get("properties") and \
        isinstance(resolved.get("additionalProperties"), dict)


def item_key(item: Any, keys: list[str]) -> str:
    """The `k:` element naming `item` in an associative list with `keys`."""
    values = {}
    for key in keys:
        value = item.get(key, _KEY_DEFAULTS.get(key)) if isinstance(item, dict) else None
        if value is not None:
            values[key] = value
    return "k:" + json.dumps(values, sort_keys=True, separators=(",", ":"))


def value_key(value: Any) -> str:
    return "v:" + json.dumps(value, sort_keys=True, separators=(",", ":"))


def _item_matches(item: Any, element: str, keys: list[str]) -> bool:
    return item_key(item, keys) == element


class FieldSets:
    """Computes, reads and edits field sets of objects of the schemas' kinds."""

    def __init__(self, schemas: Schemas) -> None:
        self._schemas = schemas

    def root(self, obj: dict[str, Any]) -> dict[str, Any] | None:
        return self._schemas.root(obj.get("apiVersion", ""), obj.get("kind", ""))

    # -- computing -----------------------------------------------------------------------------

    def of(self, obj: dict[str, Any], status: bool | None) -> FieldSet:
        """The fields `obj` sets. `status`: True for the status only (the status subresource),
        False for all but the status (a main endpoint of a kind with a status subresource),
        None for everything."""
        out: FieldSet = set()
        schema = self.root(obj)
        for key, value in obj.items():
            if key in ("apiVersion", "kind"):
                continue
            if status is not None and (key == "status") != status:
                continue
            if key == "metadata" and isinstance(value, dict):
                meta_schema = child(self._schemas, schema, "metadata")
                for field, sub in value.items():
                    if field not in _SERVER_META:
                        self._walk(sub, child(self._schemas, meta_schema, field),
                                   ("f:metadata", f"f:{field}"), out)
                continue
            self._walk(value, child(self._schemas, schema, key), (f"f:{key}",), out)
        return out

    def _walk(self, value: Any, node: dict[str, Any] | None, path: Path, out: FieldSet) -> None:
        schemas = self._schemas
        if isinstance(value, dict):
            if is_atomic_map(schemas, node) or (not value and not is_granular_map(schemas, node)):
                out.add(path)
                return
            if is_granular_map(schemas, node):
                out.add(path)
            for key, sub in value.items():
                self._walk(sub, child(schemas, node, key), (*path, f"f:{key}"), out)
            return
        if isinstance(value, list):
            keys = list_keys(schemas, node)
            if keys:
                element = items(schemas, node)
                for item in value:
                    item_path = (*path, item_key(item, keys))
                    out.add(item_path)
                    if isinstance(item, dict):
                        for key, sub in item.items():
                            self._walk(sub, child(schemas, element, key),
                                       (*item_path, f"f:{key}"), out)
                return
            if is_set_list(schemas, node):
                for item in value:
                    out.add((*path, value_key(item)))
                return
        out.add(path)

    def is_leaf(self, obj: dict[str, Any], path: Path) -> bool:
        """Whether the member `path` holds a value (scalar, atomic list or map) rather than only
        marking that a map or list item exists: only values can conflict."""
        if path[-1].startswith(("k:", "v:")):
            return False
        node = self._node(obj, path)
        value = self.get(obj, path)
        if isinstance(value, dict):
            return is_atomic_map(self._schemas, node) or not value
        if isinstance(value, list):
            return not list_keys(self._schemas, node) and not is_set_list(self._schemas, node)
        return True

    def _node(self, obj: dict[str, Any], path: Path) -> dict[str, Any] | None:
        node = self.root(obj)
        for element in path:
            if element.startswith("f:"):
                node = child(self._schemas, node, element[2:])
            else:
                node = items(self._schemas, node)
        return node

    # -- reading and editing objects by path ---------------------------------------------------

    def get(self, obj: Any, path: Path) -> Any:
        node = obj
        parent_schema = self.root(obj) if isinstance(obj, dict) else None
        for element in path:
            if element.startswith("f:"):
                if not isinstance(node, dict) or element[2:] not in node:
                    return MISSING
                parent_schema = child(self._schemas, parent_schema, element[2:])
                node = node[element[2:]]
            else:
                if not isinstance(node, list):
                    return MISSING
                found = self._find(node, element, parent_schema)
                if found is None:
                    return MISSING
                node = node[found]
                parent_schema = items(self._schemas, parent_schema)
        return node

    def _find(self, values: list[Any], element: str, schema: dict[str, Any] | None) -> int | None:
        if element.startswith("v:"):
            wanted = json.loads(element[2:])
            return next((i for i, v in enumerate(values) if v == wanted), None)
        keys = list(json.loads(element[2:]))
        keys = list_keys(self._schemas, schema) or keys
        return next((i for i, v in enumerate(values) if _item_matches(v, element, keys)), None)

    def remove(self, obj: dict[str, Any], path: Path, keep: FieldSet) -> None:
        """Removes `path` from `obj`, then parents left empty that nobody in `keep` owns. A map
        or list item that still holds fields in `keep` stays, and an item's key fields go only
        with the item (they are how it is found)."""
        if any(len(kept) > len(path) and kept[:len(path)] == path for kept in keep):
            return
        if len(path) > 1 and path[-2].startswith("k:") and \
                path[-1][2:] in json.loads(path[-2][2:]):
            return
        chain: list[tuple[Any, Any]] = []  # (container, index or key) from the root down
        node: Any = obj
        schema = self.root(obj)
        for element in path:
            if element.startswith("f:"):
                if not isinstance(node, dict) or element[2:] not in node:
                    return
                chain.append((node, element[2:]))
                schema = child(self._schemas, schema, element[2:])
                node = node[element[2:]]
            else:
                if not isinstance(node, list):
                    return
                index = self._find(node, element, schema)
                if index is None:
                    return
                chain.append((node, index))
                schema = items(self._schemas, schema)
                node = node[index]
        depth = len(chain)
        while depth:
            container, where = chain[depth - 1]
            del container[where]
            depth -= 1  # `container` is the node at path[:depth]
            if container or depth < 2 or path[:depth] in keep:
                return


def to_fields_v1(fields: FieldSet) -> dict[str, Any]:
    """The nested-dict (`FieldsV1`) spelling of a field set."""
    root: dict[str, Any] = {}
    for path in sorted(fields):
        node = root
        for element in path:
            node = node.setdefault(element, {})
    for path in fields:
        node = root
        for element in path:
            node = node[element]
        if node:  # "." first, as the API server writes it
            children = dict(node)
            node.clear()
            node["."] = {}
            node.update(children)
    return root


def from_fields_v1(tree: dict[str, Any] | None, prefix: Path = ()) -> FieldSet:
    out: FieldSet = set()
    for element, sub in (tree or {}).items():
        if element == ".":
            out.add(prefix)
            continue
        path = (*prefix, element)
        if not sub:
            out.add(path)
        else:
            out |= from_fields_v1(sub, path)
    return out


def describe(path: Path) -> str:
    """A path as the API server prints it: `.spec.template.spec.containers[name="app"].image`."""
    out = ""
    for element in path:
        if element.startswith("f:"):
            out += "." + element[2:]
        elif element.startswith("k:"):
            keys = json.loads(element[2:])
            out += "[" + ",".join(f"{k}={json.dumps(v)}" for k, v in keys.items()) + "]"
        else:
            out += "[=" + element[2:] + "]"
    return out

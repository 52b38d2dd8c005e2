"""The three PATCH flavours the API server accepts: strategic merge, JSON merge and JSON patch.

Strategic merge follows apimachinery's `strategicpatch`: lists tagged `patchStrategy: merge` in
the schema merge element-wise by their merge key (containers by `name`, ports by
`containerPort`), `$patch: delete|replace`, `$retainKeys`, `$setElementOrder/<list>` and
`$deleteFromPrimitiveList/<list>` directives; other lists are replaced.
"""

from __future__ import annotations

import copy
from typing import Any

from . import errors
from .schema import Schemas, child, items

SET_ORDER = "$setElementOrder/"
DELETE_PRIMITIVE = "$deleteFromPrimitiveList/"


def json_merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = json_merge_patch(result.get(key), value)
    return result


def _pointer(path: str) -> list[str]:
    if path == "":
        return []
    if not path.startswith("/"):
        raise errors.ApiError(422, "Invalid", f"invalid JSON pointer {path!r}")
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def _container_and_key(doc: Any, parts: list[str], path: str) -> tuple[Any, str]:
    node = doc
    for part in parts[:-1]:
        try:
            node = node[int(part)] if isinstance(node, list) else node[part]
        except (KeyError, IndexError, ValueError, TypeError) as exc:
            raise errors.ApiError(
                422, "Invalid", f"the server rejected our request: path {path!r} does not exist"
            ) from exc
    return node, parts[-1]


def _get(doc: Any, path: str) -> Any:
    node = doc
    for part in _pointer(path):
        try:
            node = node[int(part)] if isinstance(node, list) else node[part]
        except (KeyError, IndexError, ValueError, TypeError) as exc:
            raise errors.ApiError(
                422, "Invalid", f"the server rejected our request: path {path!r} does not exist"
            ) from exc
    return node


def _remove(doc: Any, path: str) -> Any:
    parent, key = _container_and_key(doc, _pointer(path), path)
    try:
        return parent.pop(int(key)) if isinstance(parent, list) else parent.pop(key)
    except (KeyError, IndexError, ValueError) as exc:
        raise errors.ApiError(
            422, "Invalid", f"the server rejected our request: unable to remove {path!r}"
        ) from exc


def _add(doc: Any, path: str, value: Any, replace: bool = False) -> Any:
    parts = _pointer(path)
    if not parts:
        return copy.deepcopy(value)
    parent, key = _container_and_key(doc, parts, path)
    if isinstance(parent, list):
        if key == "-":
            parent.append(copy.deepcopy(value))
        else:
            index = int(key)
            if replace:
                parent[index] = copy.deepcopy(value)
            elif 0 <= index <= len(parent):
                parent.insert(index, copy.deepcopy(value))
            else:
                raise errors.ApiError(422, "Invalid", f"index out of range in {path!r}")
    elif isinstance(parent, dict):
        if replace and key not in parent:
            raise errors.ApiError(
                422, "Invalid", f"the server rejected our request: path {path!r} does not exist"
            )
        parent[key] = copy.deepcopy(value)
    else:
        raise errors.ApiError(422, "Invalid", f"cannot add at {path!r}")
    return doc


def json_patch(target: Any, operations: Any) -> Any:
    """RFC 6902."""
    if not isinstance(operations, list):
        raise errors.bad_request("a JSON patch must be a list of operations")
    doc = copy.deepcopy(target)
    for op in operations:
        kind, path = op.get("op"), op.get("path", "")
        if kind == "add":
            doc = _add(doc, path, op.get("value"))
        elif kind == "remove":
            _remove(doc, path)
        elif kind == "replace":
            doc = _add(doc, path, op.get("value"), replace=True)
        elif kind == "move":
            doc = _add(doc, path, _remove(doc, op["from"]))
        elif kind == "copy":
            doc = _add(doc, path, _get(doc, op["from"]))
        elif kind == "test":
            if _get(doc, path) != op.get("value"):
                raise errors.ApiError(
                    422, "Invalid", f"the server rejected our request: test failed at {path!r}"
                )
        else:
            raise errors.bad_request(f"unknown JSON patch operation {kind!r}")
    return doc


class StrategicMerge:
    """Applies strategic merge patches using schema-declared merge keys."""

    def __init__(self, schemas: Schemas) -> None:
        self._schemas = schemas

    def apply(self, original: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
        if not isinstance(patch, dict):
            raise errors.bad_request("a strategic merge patch must be a JSON object")
        root = self._schemas.root(original.get("apiVersion", ""), original.get("kind", ""))
        return self._merge_map(copy.deepcopy(original), patch, root)

    def _merge_map(
        self, original: dict[str, Any], patch: dict[str, Any], schema: dict[str, Any] | None
    ) -> dict[str, Any]:
        directive = patch.get("$patch")
        if directive == "replace":
            return {k: copy.deepcopy(v) for k, v in patch.items() if k != "$patch"}
        if directive == "delete":
            return {}
        retain = patch.get("$retainKeys")
        for key, value in patch.items():
            if key in ("$patch", "$retainKeys") or key.startswith(SET_ORDER):
                continue
            if key.startswith(DELETE_PRIMITIVE):
                field = key[len(DELETE_PRIMITIVE):]
                if isinstance(original.get(field), list):
                    original[field] = [v for v in original[field] if v not in value]
                continue
            prop = child(self._schemas, schema, key)
            if value is None:
                original.pop(key, None)
            elif isinstance(value, dict):
                current = original.get(key)
                if isinstance(value.get("$patch"), str) and value["$patch"] == "delete":
                    original.pop(key, None)
                else:
                    original[key] = self._merge_map(
                        current if isinstance(current, dict) else {}, value, prop
                    )
            elif isinstance(value, list):
                original[key] = self._merge_list(original.get(key), value, prop)
            else:
                original[key] = copy.deepcopy(value)
        for key, order in patch.items():
            if key.startswith(SET_ORDER) and isinstance(original.get(key[len(SET_ORDER):]), list):
                field = key[len(SET_ORDER):]
                original[field] = self._ordered(original[field], order, child(
                    self._schemas, schema, field))
        if isinstance(retain, list):
            for key in list(original):
                if key not in retain:
                    del original[key]
        return original

    def _merge_list(
        self, original: Any, patch: list[Any], prop: dict[str, Any] | None
    ) -> list[Any]:
        strategy = str((prop or {}).get("x-kubernetes-patch-strategy", "")).split(",")
        merge_key = (prop or {}).get("x-kubernetes-patch-merge-key")
        if "merge" not in strategy or not isinstance(original, list):
            return [
                _strip_directives(copy.deepcopy(v)) for v in patch
                if not (isinstance(v, dict) and v.get("$patch"))
            ]
        if not merge_key:  # list of primitives: union
            merged = list(original)
            for value in patch:
                if value not in merged:
                    merged.append(value)
            return merged
        if any(isinstance(v, dict) and v.get("$patch") == "replace" for v in patch):
            return [
                _strip_directives(copy.deepcopy(v)) for v in patch
                if not (isinstance(v, dict) and v.get("$patch") == "replace")
            ]
        element_schema = items(self._schemas, prop)
        merged = [copy.deepcopy(v) for v in original]
        for value in patch:
            if not isinstance(value, dict):
                raise errors.bad_request(f"list element {value!r} must be an object")
            if merge_key not in value:
                raise errors.bad_request(f"map: {value} does not contain declared merge key: "
                                         f"{merge_key}")
            index = next(
                (i for i, v in enumerate(merged)
                 if isinstance(v, dict) and v.get(merge_key) == value[merge_key]),
                None,
            )
            if value.get("$patch") == "delete":
                if index is not None:
                    merged.pop(index)
                continue
            if index is None:
                merged.append(self._merge_map({}, value, element_schema))
            else:
                merged[index] = self._merge_map(merged[index], value, element_schema)
        return merged

    def _ordered(self, values: list[Any], order: list[Any], prop: dict[str, Any] | None) -> list:
        merge_key = (prop or {}).get("x-kubernetes-patch-merge-key")

        def ident(v: Any) -> Any:
            return v.get(merge_key) if merge_key and isinstance(v, dict) else v

        wanted = [o.get(merge_key) if merge_key and isinstance(o, dict) else o for o in order]
        ranked = sorted(
            enumerate(values),
            key=lambda iv: (wanted.index(ident(iv[1])) if ident(iv[1]) in wanted else len(wanted),
                            iv[0]),
        )
        return [v for _, v in ranked]


def _strip_directives(value: Any) -> Any:
    if isinstance(value, dict):
        return {
            k: _strip_directives(v) for k, v in value.items()
            if not (k.startswith("$setElementOrder/") or k in ("$patch", "$retainKeys"))
        }
    return value

"""Kubernetes OpenAPI schemas (shipped by `kubernetes-validate`): validation and patch metadata.

The schemas carry `x-kubernetes-patch-merge-key` / `x-kubernetes-patch-strategy`, so the strategic
merge patch uses exactly the merge keys the real API server uses.
"""

from __future__ import annotations

import functools
import json
import re
import threading
from importlib import resources as importlib_resources
from pathlib import Path
from typing import Any

import jsonschema
from referencing import Registry, Resource

KUBE_VERSION = "1.35"


def _schema_dir() -> Path:
    root = Path(str(importlib_resources.files("kubernetes_validate"))) / "kubernetes-json-schema"
    wanted = root / f"v{KUBE_VERSION}.0-local-strict"
    if wanted.is_dir():
        return wanted
    candidates = sorted(p for p in root.iterdir() if p.name.endswith("-local-strict"))
    return candidates[-1]


@functools.cache
def _read_json(path: Path) -> dict[str, Any] | None:
    """A schema file parsed once per process (the definitions file alone is 1.5 MB; every
    stand-in and every request would otherwise parse it again). Callers only read it."""
    return json.loads(path.read_text()) if path.exists() else None


@functools.cache
def _definitions_registry(directory: Path) -> Registry:
    return Resource.from_contents(_read_json(directory / "_definitions.json")) @ Registry()


_validators_lock = threading.Lock()
_validators: dict[tuple[Path, str, str], jsonschema.Validator] = {}


class Schemas:
    """Schema set, loaded lazily and shared per process: every instance on one directory reads
    the same parsed files and validators (thread-safe)."""

    def __init__(self, directory: Path | None = None) -> None:
        self._dir = directory or _schema_dir()

    @property
    def _definitions(self) -> dict[str, Any]:
        definitions = _read_json(self._dir / "_definitions.json")
        assert definitions is not None, f"no _definitions.json in {self._dir}"
        return definitions

    def _kind_schema(self, api_version: str, kind: str) -> dict[str, Any] | None:
        group_version = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", api_version)
        return _read_json(self._dir / f"{kind.lower()}-{group_version}.json")

    def validator(self, api_version: str, kind: str) -> jsonschema.Validator | None:
        key = (self._dir, api_version, kind)
        with _validators_lock:
            if key not in _validators:
                schema = self._kind_schema(api_version, kind)
                if schema is None:
                    return None
                registry = Resource.from_contents(schema) @ _definitions_registry(self._dir)
                _validators[key] = jsonschema.Draft202012Validator(schema, registry=registry)
            return _validators[key]

    def errors(self, obj: dict[str, Any]) -> list[tuple[str, str]]:
        """(field path, message) pairs; empty when the object is valid."""
        validator = self.validator(obj.get("apiVersion", ""), obj.get("kind", ""))
        if validator is None:
            return []
        found: list[tuple[str, str]] = []
        for error in sorted(validator.iter_errors(obj), key=lambda e: list(map(str, e.path))):
            found.extend(_describe(error))
            if len(found) >= 5:
                break
        return found

    # -- navigation for strategic merge patch --------------------------------------------------

    def resolve(self, node: dict[str, Any] | None) -> dict[str, Any] | None:
        """Follows `$ref`s (and single-branch allOf) to the concrete schema."""
        while node is not None:
            ref = node.get("$ref")
            if ref:
                name = ref.rsplit("/", 1)[-1]
                node = self._definitions["$defs"].get(name)
                continue
            if "allOf" in node and len(node["allOf"]) == 1:
                node = node["allOf"][0]
                continue
            return node
        return None

    def root(self, api_version: str, kind: str) -> dict[str, Any] | None:
        return self._kind_schema(api_version, kind)


def child(schemas: Schemas, node: dict[str, Any] | None, key: str) -> dict[str, Any] | None:
    """The (unresolved) property schema of `key` inside object schema `node`."""
    resolved = schemas.resolve(node)
    if not resolved:
        return None
    props = resolved.get("properties") or {}
    if key in props:
        return props[key]
    extra = resolved.get("additionalProperties")
    return extra if isinstance(extra, dict) else None


def items(schemas: Schemas, node: dict[str, Any] | None) -> dict[str, Any] | None:
    resolved = schemas.resolve(node)
    return resolved.get("items") if resolved else None


def _path(error: jsonschema.ValidationError) -> str:
    out = ""
    for part in error.absolute_path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _describe(error: jsonschema.ValidationError) -> list[tuple[str, str]]:
    path = _path(error)
    if error.validator == "additionalProperties":
        known = set((error.schema.get("properties") or {}).keys())
        unknown = [k for k in error.instance if k not in known]
        return [
            (f"{path}.{k}" if path else k, f'unknown field "{f"{path}.{k}" if path else k}"')
            for k in unknown
        ]
    if error.validator in ("oneOf", "anyOf") and error.context:
        # int-or-string and quantity fields: report the value, not every branch.
        return [(path, f"Invalid value: {json.dumps(error.instance)}: {error.message}")]
    if error.validator == "required":
        return [(path, f"Required value: {error.message}")]
    return [(path, f"Invalid value: {json.dumps(error.instance)[:80]}: {error.message}")]

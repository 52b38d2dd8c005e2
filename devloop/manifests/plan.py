"""What an apply does, decided from the rendered objects and what devloop applied last. Pure.

The rendered set (images already injected) is compared with the content hashes devloop applied
last: changed or new objects are applied, the others are left alone (no request at all), and
objects devloop applied before that are no longer rendered are orphaned (deleted only with
`prune: true`, and never a claim or a namespace). A PersistentVolumeClaim is created when
missing and never modified, so its data cannot be touched by an apply.

A workload that consumes a ConfigMap or Secret (env, envFrom, volumes, projected volumes)
carries a hash of those objects' content in a pod-template annotation, so a changed ConfigMap
changes exactly the workloads that read it, and they roll, without any checksum annotation in
the chart; the others stay as they are.
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from devloop.k8s.kinds import group_of, pod_specs, pod_template

CONFIG_HASH_ANNOTATION = "devloop.dev/config-hash"
CREATE_ONLY = frozenset({"PersistentVolumeClaim"})
# A claim holds data, a Namespace everything in it, a CustomResourceDefinition every object of
# its kind (anyone's): none is ever pruned.
NEVER_PRUNED = frozenset({"PersistentVolumeClaim", "Namespace", "CustomResourceDefinition"})
# Apply order: what others refer to comes first (namespaces, then config and storage, then
# Services, the workloads last so their pods find everything on start).
_ORDER = ("Namespace", "CustomResourceDefinition", "ServiceAccount", "Role", "ClusterRole",
          "RoleBinding", "ClusterRoleBinding", "ConfigMap", "Secret", "PersistentVolumeClaim",
          "Service")
_WORKLOAD_LAST = len(_ORDER) + 1


def key_of(obj: Mapping[str, Any]) -> str:
    """`group/Kind/namespace/name` ("" group for the core API, "" namespace cluster-wide)."""
    meta = obj.get("metadata") or {}
    return (f"{group_of(obj.get('apiVersion'))}/{obj.get('kind')}/{meta.get('namespace') or ''}"
            f"/{meta.get('name')}")


def kind_name(obj: Mapping[str, Any]) -> str:
    """"Kind/name" of a manifest object (how devloop names objects in messages)."""
    return f"{obj.get('kind')}/{(obj.get('metadata') or {}).get('name')}"


def display(key: str) -> str:
    """`Kind/name` (`Kind/namespace/name` is too long for most lines) of a key."""
    _, kind, _, name = key.split("/", 3)
    return f"{kind}/{name}"


def content_hash(obj: Mapping[str, Any]) -> str:
    """Hash of an object's content as devloop would apply it (key order does not matter)."""
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:20]


# --- what a workload consumes --------------------------------------------------------------------

def consumed(obj: Mapping[str, Any]) -> set[tuple[str, str]]:
    """("ConfigMap"|"Secret", name) every pod spec of `obj` reads: env valueFrom, envFrom,
    volumes and projected volume sources."""
    out: set[tuple[str, str]] = set()
    for spec in pod_specs(obj):
        for lst in ("initContainers", "containers", "ephemeralContainers"):
            for container in spec.get(lst) or []:
                for env in container.get("env") or []:
                    ref = (env.get("valueFrom") or {}) if isinstance(env, dict) else {}
                    if (ref.get("configMapKeyRef") or {}).get("name"):
                        out.add(("ConfigMap", ref["configMapKeyRef"]["name"]))
                    if (ref.get("secretKeyRef") or {}).get("name"):
                        out.add(("Secret", ref["secretKeyRef"]["name"]))
                for src in container.get("envFrom") or []:
                    if (src.get("configMapRef") or {}).get("name"):
                        out.add(("ConfigMap", src["configMapRef"]["name"]))
                    if (src.get("secretRef") or {}).get("name"):
                        out.add(("Secret", src["secretRef"]["name"]))
        for volume in spec.get("volumes") or []:
            sources = [volume, *((volume.get("projected") or {}).get("sources") or [])]
            for src in sources:
                if (src.get("configMap") or {}).get("name"):
                    out.add(("ConfigMap", src["configMap"]["name"]))
                if (src.get("secret") or {}).get("secretName"):
                    out.add(("Secret", src["secret"]["secretName"]))
                if (src.get("secret") or {}).get("name"):  # projected sources say `name`
                    out.add(("Secret", src["secret"]["name"]))
    return out


def with_config_hashes(objects: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Copies where each workload that consumes rendered ConfigMaps/Secrets carries their
    content hash in its pod template's annotations (CONFIG_HASH_ANNOTATION)."""
    objects = list(objects)
    configs = {(o.get("kind"), (o.get("metadata") or {}).get("namespace"),
                (o.get("metadata") or {}).get("name")): o
               for o in objects if o.get("kind") in ("ConfigMap", "Secret")}
    out: list[dict[str, Any]] = []
    for obj in objects:
        uses = consumed(obj)
        ns = (obj.get("metadata") or {}).get("namespace")
        found = sorted(k for k in ((kind, ns, name) for kind, name in uses) if k in configs)
        if not found:
            out.append(obj)
            continue
        digest = hashlib.sha256()
        for k in found:
            o = configs[k]
            digest.update(json.dumps([k, o.get("data"), o.get("binaryData"), o.get("stringData")],
                                     sort_keys=True, default=str).encode())
        obj = copy.deepcopy(obj)
        template = pod_template(obj)
        if template is not None:
            meta = template.setdefault("metadata", {}) or {}
            template["metadata"] = meta
            meta["annotations"] = {**(meta.get("annotations") or {}),
                                   CONFIG_HASH_ANNOTATION: digest.hexdigest()[:16]}
        out.append(obj)
    return out


# --- the plan ------------------------------------------------------------------------------------

@dataclass
class Plan:
    """What one apply does. Keys are `key_of` strings."""

    apply: list[dict[str, Any]] = field(default_factory=list)  # in dependency order
    create: list[dict[str, Any]] = field(default_factory=list)  # PVCs: only when missing
    unchanged: list[str] = field(default_factory=list)
    orphaned: list[str] = field(default_factory=list)  # no longer rendered
    prune: list[str] = field(default_factory=list)  # orphans to delete (prune: true)
    rolls: dict[str, list[str]] = field(default_factory=dict)  # workload -> changed configs
    hashes: dict[str, str] = field(default_factory=dict)  # every rendered key -> content hash

    @property
    def empty(self) -> bool:
        return not (self.apply or self.create or self.prune)


def order(obj: Mapping[str, Any]) -> int:
    """Rank in apply order (Namespaces first, workloads last)."""
    kind = str(obj.get("kind"))
    return _ORDER.index(kind) if kind in _ORDER else _WORKLOAD_LAST


def plan(rendered: Iterable[dict[str, Any]], last: Mapping[str, str] | None,
         prune: bool = False, earlier: Iterable[str] = ()) -> Plan:
    """Compare `rendered` (namespaces filled in, images injected, marked) with `last`, the
    {key: content hash} devloop applied (None: nothing known, apply everything). `earlier`:
    keys of objects an earlier run applied (found by devloop's mark), orphaned when no longer
    rendered even though their content is not known."""
    objects = with_config_hashes(rendered)
    result = Plan()
    changed_configs: set[tuple[str, str | None, str]] = set()
    for obj in objects:
        key = key_of(obj)
        digest = content_hash(obj)
        result.hashes[key] = digest
        if last is not None and last.get(key) == digest:
            result.unchanged.append(key)
            continue
        if obj.get("kind") in CREATE_ONLY:
            result.create.append(obj)
            continue
        result.apply.append(obj)
        if obj.get("kind") in ("ConfigMap", "Secret") and last is not None and key in last:
            meta = obj.get("metadata") or {}
            changed_configs.add((str(obj["kind"]), meta.get("namespace"), str(meta.get("name"))))
    result.apply.sort(key=order)
    for obj in result.apply:
        ns = (obj.get("metadata") or {}).get("namespace")
        hit = sorted(f"{kind}/{name}" for kind, name in consumed(obj)
                     if (kind, ns, name) in changed_configs)
        if hit:
            result.rolls[key_of(obj)] = hit
    known = {*(last or {}), *earlier}
    result.orphaned = sorted(k for k in known if k not in result.hashes)
    if prune:
        result.prune = [k for k in result.orphaned if k.split("/")[1] not in NEVER_PRUNED]
    return result

"""Put built images into manifest objects, wherever the objects name them.

As Tilt and Skaffold do, an image is matched by repository name: a manifest that says
`image: api` (or `api:latest`, or `docker.io/library/api@sha256:..`) runs the image devloop
built for `api`, in every container and init container of every
workload kind (kinds.py), and at the configured image paths of custom kinds. An image no manifest
names runs where devloop.yaml says it does (`deployment:`/`workload:` and `container:`), whatever
that container's image in the manifests is (a placeholder): `name_fed` makes the manifests say so
before anything else reads them. Pure: no I/O, the objects given are never changed.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from devloop.k8s.kinds import ImagePaths, custom_paths, pod_specs, resolve

_CONTAINER_LISTS = (("initContainers", True), ("containers", False))
_DOCKER_HUB = ("docker.io/", "index.docker.io/", "registry-1.docker.io/")


def repository(ref: str) -> str:
    """The repository of an image reference: tag and digest stripped, registry host:port kept.

    `localhost:5000/app:dl-1@sha256:ab` -> `localhost:5000/app`; `app:1.2` -> `app`."""
    name = ref.split("@", 1)[0]
    slash = name.rfind("/")
    colon = name.rfind(":")
    return name[:colon] if colon > slash else name


def _normal(repo: str) -> str:
    """Docker Hub's spellings of one repository made equal (`docker.io/library/x` is `x`)."""
    for prefix in _DOCKER_HUB:
        if repo.startswith(prefix):
            repo = repo[len(prefix):]
            break
    return repo[len("library/"):] if repo.startswith("library/") else repo


def same_repository(ref: str, repo: str) -> bool:
    """True when image reference `ref` names repository `repo` (any tag or digest)."""
    return _normal(repository(ref)) == _normal(repository(repo))


@dataclass(frozen=True)
class Use:
    """One place a workload runs an image."""

    kind: str
    name: str
    namespace: str | None
    container: str | None  # None for an image at a custom path that is not in a container list
    init: bool
    image: str  # the reference as the manifest writes it
    path: str | None = None  # the configured image path, for custom kinds

    @property
    def workload(self) -> str:
        """`kind/name` as devloop.yaml's `workload:` writes it (e.g. `statefulset/db`)."""
        return f"{self.kind.lower()}/{self.name}"


@dataclass
class _Slot:
    parent: Any
    key: str | int
    container: str | None
    init: bool
    path: str | None


def _slots(obj: Mapping[str, Any], image_paths: ImagePaths | None) -> Iterator[_Slot]:
    """Every image field of `obj`: containers of its pod specs, then its custom image paths."""
    seen: list[tuple[int, str | int]] = []
    for spec in pod_specs(obj, image_paths):
        for field, init in _CONTAINER_LISTS:
            for container in spec.get(field) or []:
                if isinstance(container, dict) and isinstance(container.get("image"), str):
                    seen.append((id(container), "image"))
                    yield _Slot(container, "image", container.get("name"), init, None)
    for path in custom_paths(obj, image_paths):
        for parent, key in resolve(obj, path):
            if isinstance(parent[key], str) and (id(parent), key) not in seen:
                seen.append((id(parent), key))
                in_container = isinstance(parent, dict) and key == "image"
                yield _Slot(parent, key, parent.get("name") if in_container else None,
                            "initContainers" in path, path)


@dataclass(frozen=True)
class Feed:
    """A container devloop.yaml says runs a built image: `repo` in `container` of the workload
    `kind`/`name`."""

    repo: str
    kind: str
    name: str
    container: str


def name_fed(objects: Iterable[Mapping[str, Any]], feeds: Iterable[Feed], namespace: str,
             image_paths: ImagePaths | None = None) -> list[dict[str, Any]]:
    """`objects`, where the container of every feed whose repository no object names runs that
    repository (the copies changed; the others as given). So an apply injects the image devloop
    deployed there too, instead of taking the workload back to the manifests' placeholder."""
    objects = list(objects)
    out: list[Any] = list(objects)
    for feed in feeds:
        if any(users(objects, feed.repo, image_paths)):
            continue
        for i, obj in enumerate(out):
            meta = obj.get("metadata") or {}
            if (obj.get("kind") != feed.kind or meta.get("name") != feed.name
                    or meta.get("namespace", namespace) != namespace):
                continue
            copied = copy.deepcopy(dict(obj))
            for slot in _slots(copied, image_paths):
                if slot.container == feed.container and slot.key == "image":
                    slot.parent[slot.key] = feed.repo
            out[i] = copied
    return out


def inject(obj: Mapping[str, Any], images: Mapping[str, str],
           image_paths: ImagePaths | None = None) -> dict[str, Any]:
    """A copy of `obj` where every image whose repository is a key of `images` is replaced by
    that key's value (the full reference devloop built and delivered)."""
    out = copy.deepcopy(dict(obj))
    for slot in _slots(out, image_paths):
        ref = slot.parent[slot.key]
        for repo, built in images.items():
            if same_repository(ref, repo):
                slot.parent[slot.key] = built
                break
    return out


def users(objects: Iterable[Mapping[str, Any]], repo: str,
          image_paths: ImagePaths | None = None) -> list[Use]:
    """Every workload container (and custom image path) in `objects` that runs `repo`."""
    found: list[Use] = []
    for obj in objects:
        meta = obj.get("metadata") or {}
        for slot in _slots(obj, image_paths):
            ref = slot.parent[slot.key]
            if same_repository(ref, repo):
                found.append(Use(str(obj.get("kind")), str(meta.get("name")),
                                 meta.get("namespace"), slot.container, slot.init, ref,
                                 slot.path))
    return found

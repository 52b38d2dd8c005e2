"""Patch one container's image in one Deployment, and read back what is deployed.

The patch is a strategic merge patch, in which containers merge by name: a name that does not
exist would silently ADD a container. So the container is verified first, and the patch carries
the resourceVersion it was verified against (optimistic concurrency: the server refuses it if the
Deployment changed in between). The input digest is recorded as an annotation on the Deployment
and on its pod template, so `sync` learns what is deployed from the cluster, not from local files.
"""

from __future__ import annotations

import copy
import functools
import json
import random
import time
from dataclasses import dataclass
from typing import Any

from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from devloop.inputs.digest import dl_tag_hex
from devloop.k8s import retry, timeouts
from devloop.k8s.cluster import ClusterUnreachable
from devloop.k8s.errors import api_message, is_connection_error, one_line
from devloop.k8s.kinds import client_method
from devloop.k8s.workloads import (
    REPLACED_KINDS,
    Workload,
    WorkloadRef,
    read_workload,
    replace_workload,
)

DIGEST_ANNOTATION = "devloop.dev/digest"
_TIMEOUT = timeouts.REQUEST
CONFLICT_DEADLINE_S = 30.0  # controllers settle a new Deployment's status within seconds


class PatchError(Exception):
    """One line naming the Deployment (namespace/name) and what is wrong with it."""


class DeploymentNotFound(PatchError):
    """The Deployment does not exist (yet): the first deploy installs it."""


@dataclass
class Deployed:
    """What a Deployment's pod template runs, and the digests devloop recorded on it.

    The annotations alone do not say what runs: `kubectl set image` or `rollout undo` change the
    image and leave (or restore) annotations. So the identity is the container image's `dl-` tag,
    trusted only when it names the recorded digest."""

    image: str | None
    annotation: str | None  # the Deployment's devloop.dev/digest (the last patch)
    generation: int
    template_annotation: str | None = None  # the pod template's (restored by rollout undo)

    @property
    def tag_digest(self) -> str | None:
        """The 12 hex of the image's `dl-` tag; None for any other tag."""
        return dl_tag_hex(self.image)

    @property
    def digest(self) -> str | None:
        """The full digest of the running image: a recorded digest its `dl-` tag agrees with;
        None when devloop never deployed it or it was changed behind devloop's back."""
        hex12 = self.tag_digest
        if hex12 is None:
            return None
        for recorded in (self.annotation, self.template_annotation):
            if recorded and recorded[:12] == hex12:
                return recorded
        return None


def _read(apps: k8s.AppsV1Api, namespace: str, deployment: str) -> k8s.V1Deployment:
    try:
        return retry.call(lambda: apps.read_namespaced_deployment(
            deployment, namespace, _request_timeout=_TIMEOUT),
            what=f"read deployment {namespace}/{deployment}")
    except ApiException as exc:
        if exc.status == 404:
            raise DeploymentNotFound(
                f"deployment {namespace}/{deployment} not found: install the chart first"
                " (devloop does it when the Deployment is missing)") from exc
        raise _api_error(apps, exc, f"cannot read deployment {namespace}/{deployment}") from exc
    except Exception as exc:
        if is_connection_error(exc):
            raise _api_error(apps, exc, "") from exc
        raise


def _api_error(api: Any, exc: BaseException, what: str) -> Exception:
    """ClusterUnreachable for connection/auth failures and for an API server that stayed
    overloaded (429/5xx) through the retries: those are retried by the engine, not the
    inputs' fault; PatchError for refusals."""
    if isinstance(exc, ApiException) and exc.status not in (0, None, 401, 403) \
            and not retry.is_transient(exc):
        return PatchError(one_line(f"{what}: {api_message(exc)}"))
    return ClusterUnreachable.from_error(exc, str(api.api_client.configuration.host))


def _field(dep: k8s.V1Deployment, container: str) -> str:
    """"initContainers" when `container` is an init container of the template, else
    "containers" (an init container may run the built image too: a migration, a seed)."""
    inits = dep.spec.template.spec.init_containers or []
    return "initContainers" if any(c.name == container for c in inits) else "containers"


def _containers(dep: k8s.V1Deployment, field: str) -> list[k8s.V1Container]:
    spec = dep.spec.template.spec
    return (spec.init_containers if field == "initContainers" else spec.containers) or []


def _container(dep: k8s.V1Deployment, namespace: str, deployment: str, container: str
               ) -> k8s.V1Container:
    containers = [*(dep.spec.template.spec.init_containers or []),
                  *(dep.spec.template.spec.containers or [])]
    for item in containers:
        if item.name == container:
            return item
    names = ", ".join(c.name for c in containers) or "none"
    raise PatchError(f"deployment {namespace}/{deployment} has no container '{container}'"
                     f" (containers: {names}); fix the container name in devloop.yaml")


def read_deployed(apps: k8s.AppsV1Api, namespace: str, deployment: str, container: str
                  ) -> Deployed:
    """The image of `container` and the digest it runs (see Deployed)."""
    dep = _read(apps, namespace, deployment)
    return deployed_of(dep, namespace, container)


def deployed_of(dep: k8s.V1Deployment, namespace: str, container: str) -> Deployed:
    """Deployed from a Deployment already read (see read_deployed)."""
    image = _container(dep, namespace, dep.metadata.name, container).image
    template = dep.spec.template.metadata
    return Deployed(image=image,
                    annotation=(dep.metadata.annotations or {}).get(DIGEST_ANNOTATION),
                    generation=int(dep.metadata.generation or 0),
                    template_annotation=((template.annotations if template else None) or {}
                                         ).get(DIGEST_ANNOTATION))


def patch_image(apps: k8s.AppsV1Api, namespace: str, deployment: str, container: str,
                image: str, digest: str, conflict_deadline_s: float = CONFLICT_DEADLINE_S
                ) -> int:
    """Set only `container`'s image and the digest annotations; return the new generation.

    Volumes, other containers, env and replicas are not in the patch, so they cannot change.
    Controllers write a new Deployment's status several times in its first second, each write
    a new resourceVersion, so a conflict (409) is expected right after install: the Deployment
    is re-read and re-verified and the patch retried, with short growing pauses, for up to
    `conflict_deadline_s` seconds.
    """
    deadline = time.monotonic() + conflict_deadline_s
    pause = 0.05
    conflicts = 0
    while True:
        dep = _read(apps, namespace, deployment)
        _container(dep, namespace, deployment, container)
        field = _field(dep, container)
        before = len(_containers(dep, field))
        body = {
            "metadata": {"resourceVersion": dep.metadata.resource_version,
                         "annotations": {DIGEST_ANNOTATION: digest}},
            "spec": {"template": {
                "metadata": {"annotations": {DIGEST_ANNOTATION: digest}},
                "spec": {field: [{"name": container, "image": image}]},
            }},
        }
        try:
            patched = retry.call(lambda body=body: apps.patch_namespaced_deployment(
                deployment, namespace, body, field_manager="devloop", _request_timeout=_TIMEOUT),
                what=f"patch deployment {namespace}/{deployment}")
        except ApiException as exc:
            if exc.status == 409:
                conflicts += 1
                if time.monotonic() + pause < deadline:
                    time.sleep(pause * random.uniform(0.5, 1.5))
                    pause = min(pause * 2, 1.0)
                    continue
                raise PatchError(
                    f"deployment {namespace}/{deployment} kept changing while patching"
                    f" ({conflicts} conflicts in {conflict_deadline_s:.0f} s): something keeps"
                    f" rewriting it; watch it with `kubectl -n {namespace} get deployment"
                    f" {deployment} -w`") from exc
            raise _api_error(apps, exc, f"cannot patch deployment {namespace}/{deployment}"
                             ) from exc
        except Exception as exc:
            if is_connection_error(exc):
                raise _api_error(apps, exc, "") from exc
            raise
        after = _containers(patched, field)
        if len(after) != before or not any(c.name == container and c.image == image
                                           for c in after):
            raise PatchError(f"deployment {namespace}/{deployment}: the API server did not apply"
                             f" image {image} to container '{container}' as expected")
        return int(patched.metadata.generation or 0)


def container_index(apps: k8s.AppsV1Api, namespace: str, deployment: str, container: str) -> int:
    """Position of `container` in the pod template (for patch_image_at); PatchError for an
    init container (patched by patch_image only)."""
    dep = _read(apps, namespace, deployment)
    _container(dep, namespace, deployment, container)
    if _field(dep, container) == "initContainers":
        raise PatchError(f"deployment {namespace}/{deployment}: '{container}' is an init"
                         " container")
    return [c.name for c in dep.spec.template.spec.containers].index(container)


def patch_image_at(apps: k8s.AppsV1Api, namespace: str, deployment: str, container: str,
                   index: int, image: str, digest: str) -> int | None:
    """The one-request form of patch_image for later reloads: a JSON patch whose `test`
    operation makes the server check, atomically, that the container at `index` still has
    that name. Needs the digest annotations to exist (set by a first patch_image). Returns the
    new generation, or None when the Deployment no longer matches (the caller falls back to
    patch_image, which reads and verifies)."""
    key = DIGEST_ANNOTATION.replace("~", "~0").replace("/", "~1")
    base = f"/spec/template/spec/containers/{index}"
    body = [
        {"op": "test", "path": f"{base}/name", "value": container},
        {"op": "replace", "path": f"{base}/image", "value": image},
        {"op": "add", "path": f"/metadata/annotations/{key}", "value": digest},
        {"op": "add", "path": f"/spec/template/metadata/annotations/{key}", "value": digest},
    ]
    try:
        # 500 is how some API servers answer a failed `test`: not retried, it falls back below
        patched = retry.call(lambda: apps.patch_namespaced_deployment(
            deployment, namespace, body, field_manager="devloop", _request_timeout=_TIMEOUT),
            what=f"patch deployment {namespace}/{deployment}",
            transient=lambda e: retry.is_transient(e) and getattr(e, "status", None) != 500)
    except ApiException as exc:
        if exc.status == 404:
            raise DeploymentNotFound(f"deployment {namespace}/{deployment} not found") from exc
        if exc.status in (400, 409, 415, 422, 500):
            return None  # precondition failed or JSON patch unsupported: verify the slow way
        raise _api_error(apps, exc, f"cannot patch deployment {namespace}/{deployment}") from exc
    except Exception as exc:
        if is_connection_error(exc):
            raise _api_error(apps, exc, "") from exc
        raise
    return int(patched.metadata.generation or 0)


def _max_surge_is_zero(dep: k8s.V1Deployment) -> bool:
    rolling = dep.spec.strategy.rolling_update if dep.spec.strategy else None
    surge = rolling.max_surge if rolling else None
    return surge is not None and str(surge).strip() in ("0", "0%")


def warn_rwo_rolling(apps: k8s.AppsV1Api, core: k8s.CoreV1Api, namespace: str,
                     deployment: str) -> str | None:
    """Warning text when a RollingUpdate Deployment mounts a ReadWriteOnce claim.

    A rolling update starts the new pod before the old one stops: two SQLite writers on one
    volume, or a new pod stuck on a multi-attach error on real nodes. Recreate avoids both.
    """
    dep = _read(apps, namespace, deployment)
    strategy = (dep.spec.strategy.type if dep.spec.strategy else None) or "RollingUpdate"
    if strategy != "RollingUpdate" or _max_surge_is_zero(dep):
        return None
    for volume in dep.spec.template.spec.volumes or []:
        claim = volume.persistent_volume_claim
        if claim is None:
            continue
        try:
            pvc = retry.call(functools.partial(
                core.read_namespaced_persistent_volume_claim, claim.claim_name, namespace,
                _request_timeout=_TIMEOUT),
                what=f"read PVC {namespace}/{claim.claim_name}")
        except ApiException as exc:
            if exc.status == 404:
                continue
            raise _api_error(core, exc, f"cannot read PVC {namespace}/{claim.claim_name}"
                             ) from exc
        modes = set(pvc.spec.access_modes or [])
        if modes & {"ReadWriteOnce", "ReadWriteOncePod"}:
            return (f"deployment {namespace}/{deployment} uses RollingUpdate but mounts"
                    f" ReadWriteOnce claim {claim.claim_name}: during a rollout two pods share it"
                    " (two SQLite writers, or a pod stuck on multi-attach); set"
                    " spec.strategy.type: Recreate")
    return None


# --- workloads of any other kind (devloop.k8s.workloads) ---------------------------------

def workload_deployed(workload: Workload, container: str) -> Deployed:
    """Deployed (see read_deployed) of a workload of any kind, from one read of it."""
    image = workload.template_image(container)
    if image is None:
        names = ", ".join(workload.container_names()) or "none"
        raise PatchError(f"{workload.ref} in namespace {workload.namespace} has no container"
                         f" '{container}' (containers: {names}); fix the container name in"
                         " devloop.yaml")
    template = workload.template.get("metadata") or {}
    return Deployed(image=image,
                    annotation=(workload.obj["metadata"].get("annotations") or {}
                                ).get(DIGEST_ANNOTATION),
                    generation=workload.generation,
                    template_annotation=(template.get("annotations") or {}
                                         ).get(DIGEST_ANNOTATION))


def read_workload_deployed(api_client: Any, namespace: str, ref: WorkloadRef, container: str
                           ) -> tuple[Workload, Deployed]:
    """The workload and what its template runs; DeploymentNotFound (naming the kind) when it
    does not exist, ClusterUnreachable or PatchError for other failures."""
    try:
        workload = read_workload(api_client, namespace, ref)
    except ApiException as exc:
        if exc.status == 404:
            raise DeploymentNotFound(f"{ref} not found in namespace {namespace}: apply the"
                                     " manifests first (devloop does it when it is missing)"
                                     ) from exc
        raise _api_error(_Api(api_client), exc, f"cannot read {ref} in namespace {namespace}"
                         ) from exc
    except Exception as exc:
        if is_connection_error(exc):
            raise _api_error(_Api(api_client), exc, "") from exc
        raise
    return workload, workload_deployed(workload, container)


@dataclass(frozen=True)
class _Api:
    api_client: Any  # what _api_error reads the server address from


def patch_workload_image(api_client: Any, namespace: str, ref: WorkloadRef, container: str,
                         image: str, digest: str,
                         conflict_deadline_s: float = CONFLICT_DEADLINE_S) -> int:
    """Set `container`'s image (an init container's too) and the digest annotations in a
    workload of any kind but Deployment (patch_image); return the generation to wait for.

    A JSON patch tests the resourceVersion and the container's name at its index, so the server
    applies it only to the object verified (re-read and retried on a conflict). A Job's or a
    Pod's template cannot change: the object is replaced (deleted, then created again), unless
    it runs the image already."""
    deadline = time.monotonic() + conflict_deadline_s
    while True:
        workload, deployed = read_workload_deployed(api_client, namespace, ref, container)
        ops: list[dict[str, Any]] = [{"op": "test", "path": "/metadata/resourceVersion",
                                      "value": workload.obj["metadata"].get("resourceVersion")}]
        metas = [("/metadata", workload.obj["metadata"])]
        if ref.kind.kind in REPLACED_KINDS and deployed.image != image:
            return _replace_image(api_client, workload, container, image, digest)
        if ref.kind.kind not in REPLACED_KINDS:
            base = "/" + "/".join(ref.kind.template or ())
            spec = workload.template.get("spec") or {}
            field, index = next((f, i) for f in ("initContainers", "containers")
                                for i, c in enumerate(spec.get(f) or [])
                                if c.get("name") == container)
            ops += [
                {"op": "test", "path": f"{base}/spec/{field}/{index}/name", "value": container},
                {"op": "replace", "path": f"{base}/spec/{field}/{index}/image", "value": image},
            ]
            metas.append((f"{base}/metadata", workload.template.get("metadata")))
        # else a Job or Pod that runs the image already (a manifest apply put it there): only
        # its own annotation is recorded, so it does not run again
        for meta_path, meta in metas:
            if meta is None:
                ops.append({"op": "add", "path": meta_path,
                            "value": {"annotations": {DIGEST_ANNOTATION: digest}}})
            elif meta.get("annotations") is None:
                ops.append({"op": "add", "path": f"{meta_path}/annotations",
                            "value": {DIGEST_ANNOTATION: digest}})
            else:
                key = DIGEST_ANNOTATION.replace("~", "~0").replace("/", "~1")
                ops.append({"op": "add", "path": f"{meta_path}/annotations/{key}",
                            "value": digest})
        try:
            resp = client_method(api_client, ref.kind, "patch")(
                ref.name, namespace, ops, _preload_content=False, _request_timeout=_TIMEOUT)
        except ApiException as exc:
            if exc.status in (409, 422) and time.monotonic() < deadline:
                time.sleep(random.uniform(0.05, 0.2))  # changed since read: verify again
                continue
            raise _api_error(_Api(api_client), exc, f"cannot patch {ref} in namespace"
                             f" {namespace}") from exc
        except Exception as exc:
            if is_connection_error(exc):
                raise _api_error(_Api(api_client), exc, "") from exc
            raise
        try:
            return int((json.loads(resp.data or b"{}").get("metadata") or {}).get("generation")
                       or 0)
        finally:
            resp.release_conn()


def _replace_image(api_client: Any, workload: Workload, container: str, image: str,
                   digest: str) -> int:
    obj = copy.deepcopy(workload.obj)
    replaced = Workload(obj)
    for c in replaced.containers:
        if c.get("name") == container:
            c["image"] = image
    for meta in (obj.setdefault("metadata", {}),
                 replaced.template.setdefault("metadata", {}) if replaced.kind.kind != "Pod"
                 else obj["metadata"]):
        meta.setdefault("annotations", {})[DIGEST_ANNOTATION] = digest
    try:
        created = replace_workload(api_client, workload.namespace, obj)
    except ApiException as exc:
        raise _api_error(_Api(api_client), exc, f"cannot replace {workload.ref} in namespace"
                         f" {workload.namespace}") from exc
    except TimeoutError as exc:
        raise PatchError(str(exc)) from exc
    return int((created.get("metadata") or {}).get("generation") or 0)

"""First deploy: render the chart with `helm template` and create only what is missing.

Why not `helm upgrade --install`: devloop renders with `helm template` and creates only the
missing objects through the Kubernetes client, so it can guarantee that nothing is ever deleted
or modified (the SQLite PersistentVolumeClaim included) whatever the chart or the cluster state;
it needs no Helm release storage (no release Secrets to drift from what devloop patched); and
afterwards it patches only the images that changed. `helm upgrade` would instead reconcile every
object back to the chart, undoing devloop's image patches and possibly re-creating resources.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from devloop import retry
from devloop.cluster import Cluster, ClusterUnreachable
from devloop.errors_k8s import api_message, is_connection_error, one_line
from devloop.manifests.render import (  # noqa: F401 - re-exported for down and the tests
    RenderError,
    chart_values,
    render_chart,
)
from devloop.ownership import mark

# Creation order: what others refer to comes first (the namespace, then config and storage,
# then the Services, and the Deployments last so their pods find everything on start).
CREATE_ORDER = ("Namespace", "ServiceAccount", "ConfigMap", "Secret", "PersistentVolumeClaim",
                "Service", "Deployment", "StatefulSet")

# One error type for "the manifests cannot be rendered or an object cannot be created".
InstallError = RenderError

RELEASE_ANNOTATION = "meta.helm.sh/release-name"  # helm's; devloop sets it on what it creates


@dataclass(frozen=True)
class _KindApi:
    group: str  # "core" or "apps"
    snake: str  # e.g. "config_map": used to find read_/create_ methods
    namespaced: bool = True


KINDS: dict[str, _KindApi] = {
    "Namespace": _KindApi("core", "namespace", namespaced=False),
    "ServiceAccount": _KindApi("core", "service_account"),
    "ConfigMap": _KindApi("core", "config_map"),
    "Secret": _KindApi("core", "secret"),
    "PersistentVolumeClaim": _KindApi("core", "persistent_volume_claim"),
    "Service": _KindApi("core", "service"),
    "Deployment": _KindApi("apps", "deployment"),
    "StatefulSet": _KindApi("apps", "stateful_set"),
}


def kind_name(obj: Mapping[str, Any]) -> str:
    """"Kind/name" of a manifest object (how devloop names objects in messages and plans)."""
    return f"{obj.get('kind')}/{(obj.get('metadata') or {}).get('name')}"


def _spec(obj: Mapping[str, Any]) -> _KindApi:
    spec = KINDS.get(str(obj.get("kind")))
    if spec is None:
        raise InstallError(f"the chart renders {kind_name(obj)}, a kind devloop does not create"
                           f" (it creates {', '.join(KINDS)}); install the chart with helm once")
    if not (obj.get("metadata") or {}).get("name"):
        raise InstallError(f"the chart renders a {obj.get('kind')} without metadata.name")
    return spec


def _api_for(api_client: k8s.ApiClient, obj: Mapping[str, Any]) -> tuple[Any, _KindApi]:
    spec = _spec(obj)
    api = k8s.CoreV1Api(api_client) if spec.group == "core" else k8s.AppsV1Api(api_client)
    return api, spec


def _with_namespaces(objects: list[dict[str, Any]], default_ns: str) -> list[dict[str, Any]]:
    """Copies with metadata.namespace filled in, plus a Namespace object for every namespace used
    that the chart does not render itself (helm template leaves both to the installer)."""
    out: list[dict[str, Any]] = []
    used: list[str] = []
    rendered_ns = {o["metadata"]["name"] for o in objects if o.get("kind") == "Namespace"}
    for obj in objects:
        spec = _spec(obj)
        copy = dict(obj)
        meta = dict(copy.get("metadata") or {})
        if spec.namespaced:
            meta.setdefault("namespace", default_ns)
            if meta["namespace"] not in used:
                used.append(meta["namespace"])
        copy["metadata"] = meta
        out.append(copy)
    extra = [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}
             for ns in used if ns not in rendered_ns]
    return extra + out


def _exists(api_client: k8s.ApiClient, obj: Mapping[str, Any]) -> bool:
    api, spec = _api_for(api_client, obj)
    meta = obj["metadata"]
    read = getattr(api, f"read_{'namespaced_' if spec.namespaced else ''}{spec.snake}")
    args = [meta["name"], meta["namespace"]] if spec.namespaced else [meta["name"]]
    try:
        resp = retry.call(lambda: read(*args, _preload_content=False,
                                       _request_timeout=retry.REQUEST_TIMEOUT),
                          what=f"read {kind_name(obj)}")
    except ApiException as exc:
        if exc.status == 404:
            return False
        if retry.is_transient(exc):  # still overloaded after the retries: the engine retries
            raise ClusterUnreachable.from_error(exc, str(api_client.configuration.host)) from exc
        raise InstallError(one_line(f"cannot read {kind_name(obj)}: {api_message(exc)}")) from exc
    except Exception as exc:
        if is_connection_error(exc):
            raise ClusterUnreachable.from_error(exc, str(api_client.configuration.host)) from exc
        raise
    resp.drain_conn()  # read the rest: an unread body would poison the pooled connection
    resp.release_conn()
    return True


def missing_objects(cluster: Cluster, objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The objects (namespaces filled in, plus needed Namespaces) that do not exist yet."""
    try:
        return [o for o in _with_namespaces(objects, cluster.namespace)
                if not _exists(cluster.api_client, o)]
    except ClusterUnreachable as exc:
        raise cluster.unreachable(exc.__cause__ or exc) from exc


def _adoptable(obj: dict[str, Any], release: str) -> dict[str, Any]:
    """Helm's ownership annotations, so a later `helm upgrade --install` of the same release
    adopts these objects instead of refusing to touch them."""
    meta = dict(obj["metadata"])
    annotations = dict(meta.get("annotations") or {})
    annotations.setdefault(RELEASE_ANNOTATION, release)
    annotations.setdefault("meta.helm.sh/release-namespace", meta.get("namespace") or "")
    meta["annotations"] = annotations
    meta["labels"] = {**(meta.get("labels") or {}), "app.kubernetes.io/managed-by": "Helm"}
    return {**obj, "metadata": meta}


def install_missing(cluster: Cluster, objects: list[dict[str, Any]],
                    release: str | None = None) -> list[str]:
    """CREATE the missing objects in dependency order and return "Kind/name" for each created.

    Existing objects are never replaced, patched or deleted, so a PVC holding data, a Secret
    edited by hand or a Deployment devloop already patched stays exactly as it is. Created
    objects carry devloop's mark (ownership.mark); with `release`, also Helm's ownership
    metadata for that release name.
    """
    api_client = cluster.api_client
    todo = sorted(missing_objects(cluster, objects), key=lambda o: CREATE_ORDER.index(o["kind"]))
    if release:
        todo = [_adoptable(o, release) if o["kind"] != "Namespace" else o for o in todo]
    todo = [mark(o, release) for o in todo]  # devloop's own mark: what `down` may delete
    created: list[str] = []
    for obj in todo:
        api, spec = _api_for(api_client, obj)
        meta = obj["metadata"]
        create = getattr(api, f"create_{'namespaced_' if spec.namespaced else ''}{spec.snake}")
        args = [meta["namespace"], obj] if spec.namespaced else [obj]
        try:
            # a create whose answer was lost is retried and meets 409: skipped below
            resp = retry.call(lambda create=create, args=args: create(
                *args, _preload_content=False, _request_timeout=retry.REQUEST_TIMEOUT),
                what=f"create {kind_name(obj)}")
        except ApiException as exc:
            if exc.status == 409:
                continue  # created meanwhile by someone else: leave theirs alone
            if retry.is_transient(exc):
                raise cluster.unreachable(exc) from exc
            raise InstallError(one_line(f"cannot create {kind_name(obj)} in namespace"
                                        f" {meta.get('namespace', '-')}: {api_message(exc)}")
                               ) from exc
        except Exception as exc:
            if is_connection_error(exc):
                raise cluster.unreachable(exc) from exc
            raise
        resp.drain_conn()  # read the rest: an unread body would poison the pooled connection
        resp.release_conn()
        created.append(kind_name(obj))
    return created

"""Server-side apply of rendered objects, claims created only when missing, owned orphans
deleted.

Apply is the API server's own merge (field manager `devloop`): fields devloop stops rendering
are removed, fields other managers set (an HPA's replicas, a person's `kubectl edit`) are kept,
and a field devloop would change that another manager owns is a conflict, reported in one line
naming that manager and the field, never forced (only fields devloop's own image patches own are
taken back). Objects of the kind table (devloop.k8s.kinds) are
addressed directly; other kinds (custom resources) through API discovery.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Mapping
from typing import Any

from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from devloop.k8s import retry
from devloop.k8s.cluster import ClusterUnreachable
from devloop.k8s.discovery import Kind, Unreachable, served_kinds
from devloop.k8s.errors import api_message, is_connection_error, one_line
from devloop.k8s.kinds import find_kind, group_of, kind_of
from devloop.k8s.ownership import MANAGED_LABEL, MANAGED_VALUE, is_devloop_owned

FIELD_MANAGER = "devloop"
APPLY_CONTENT_TYPE = "application/apply-patch+yaml"
_TIMEOUT = (5, 30)


class ApplyError(Exception):
    """An object could not be applied, created or deleted; str() is one line naming it."""


class Immutable(ApplyError):
    """The API server refused to change a field that cannot change (a Job's pod template)."""


def _name(obj: Mapping[str, Any]) -> str:
    return f"{obj.get('kind')}/{(obj.get('metadata') or {}).get('name')}"


def object_path(api_client: k8s.ApiClient, api_version: str, kind: str,
                namespace: str | None, name: str | None = None) -> str:
    """The REST path of an object (or of its collection without `name`)."""
    entry = kind_of({"apiVersion": api_version, "kind": kind})
    if entry is not None:
        plural, namespaced = entry.plural, entry.namespaced
    else:
        plural, namespaced = _discover(api_client, api_version, kind)
    base = f"/api/{api_version}" if "/" not in api_version else f"/apis/{api_version}"
    if namespaced:
        base += f"/namespaces/{namespace}"
    return f"{base}/{plural}" + (f"/{name}" if name else "")


def _discover(api_client: k8s.ApiClient, api_version: str, kind: str) -> tuple[str, bool]:
    """(plural, namespaced) of a kind the table does not know, from the API's discovery."""
    from kubernetes.dynamic import DynamicClient
    from kubernetes.dynamic.exceptions import ResourceNotFoundError

    try:
        resource = DynamicClient(api_client).resources.get(api_version=api_version, kind=kind)
    except ResourceNotFoundError as exc:
        raise ApplyError(f"the cluster serves no {kind} in {api_version}: is its"
                         " CustomResourceDefinition installed?") from exc
    return str(resource.name), bool(resource.namespaced)


def _call(api_client: k8s.ApiClient, method: str, path: str, what: str, *,
          body: Any = None, query: list[tuple[str, str]] | None = None,
          content_type: str = "application/json") -> dict[str, Any]:
    """One request with devloop's retry policy; the decoded JSON answer."""

    def once() -> dict[str, Any]:
        resp = api_client.call_api(
            path, method, query_params=query or [],
            header_params={"Content-Type": content_type, "Accept": "application/json"},
            body=body, auth_settings=["BearerToken"], _preload_content=False,
            _request_timeout=_TIMEOUT)
        data = resp[0].data if isinstance(resp, tuple) else resp.data
        return json.loads(data or b"{}")

    try:
        return retry.call(once, what=what)
    except ApiException as exc:
        if retry.is_transient(exc):  # overloaded through the retries: the engine retries it
            raise ClusterUnreachable.from_error(exc, str(api_client.configuration.host)) from exc
        raise
    except Exception as exc:
        if is_connection_error(exc):
            raise ClusterUnreachable.from_error(exc, str(api_client.configuration.host)) from exc
        raise


def _conflict_causes(exc: ApiException) -> list[Any]:
    body = exc.body.decode("utf-8", "replace") if isinstance(exc.body, bytes) else exc.body
    try:
        return (json.loads(body or "{}").get("details") or {}).get("causes") or []
    except (ValueError, AttributeError):
        return []


_MANAGER = re.compile(r'conflict with "([^"]*)"')


def only_own_patches(exc: ApiException) -> bool:
    """A 409 apply conflict whose every field is owned by devloop's own patches (manager
    `devloop`, an Update: the image and digest of a source edit patched in directly), never by
    another tool or person."""
    managers = [m.group(1) if (m := _MANAGER.search(str(c.get("message") or ""))) else None
                for c in _conflict_causes(exc) if isinstance(c, dict)]
    return bool(managers) and all(m == FIELD_MANAGER for m in managers)


def conflict_message(exc: ApiException, what: str) -> str:
    """One line from a 409 apply conflict: the managers and fields the API server named."""
    causes = _conflict_causes(exc)
    parts = [" ".join(p for p in (f"field {c['field']}" if c.get("field") else "",
                                   str(c.get("message") or "")) if p)
             for c in causes if isinstance(c, dict)]
    detail = "; ".join(parts) or api_message(exc)
    return one_line(f"cannot apply {what}: {detail} (another field manager owns a value the"
                    " manifests change: change it back with that tool, or drop the field from"
                    " the manifests and let the other manager keep it)", 600)


def apply(api_client: k8s.ApiClient, obj: Mapping[str, Any], source: str = "") -> dict[str, Any]:
    """Server-side apply `obj` as field manager `devloop` (never forced); the object as the
    API server stored it."""
    meta = obj.get("metadata") or {}
    what = f"{_name(obj)}" + (f" ({source})" if source else "")
    path = object_path(api_client, str(obj.get("apiVersion")), str(obj.get("kind")),
                       meta.get("namespace"), str(meta.get("name")))
    query = [("fieldManager", FIELD_MANAGER)]
    try:
        try:
            return _call(api_client, "PATCH", path, f"apply {_name(obj)}", body=dict(obj),
                         query=query, content_type=APPLY_CONTENT_TYPE)
        except ApiException as exc:
            if exc.status != 409 or not only_own_patches(exc):
                raise
            # the fields devloop's own image patches own (manager `devloop`, operation Update):
            # taken back for the apply, which carries the image devloop deployed anyway
            return _call(api_client, "PATCH", path, f"apply {_name(obj)}", body=dict(obj),
                         query=[*query, ("force", "true")], content_type=APPLY_CONTENT_TYPE)
    except ApiException as exc:
        if exc.status == 409:
            raise ApplyError(conflict_message(exc, what)) from exc
        if exc.status == 422 and "immutable" in api_message(exc):
            raise Immutable(one_line(f"cannot apply {what}: {api_message(exc)}", 600)) from exc
        raise ApplyError(one_line(f"cannot apply {what} in namespace"
                                  f" {meta.get('namespace') or '-'}: {api_message(exc)}", 600)
                         ) from exc


def create_if_missing(api_client: k8s.ApiClient, obj: Mapping[str, Any], source: str = ""
                      ) -> bool:
    """Create `obj` unless it exists (a claim: never modified, its data never touched);
    True when created."""
    meta = obj.get("metadata") or {}
    path = object_path(api_client, str(obj.get("apiVersion")), str(obj.get("kind")),
                       meta.get("namespace"))
    try:
        _call(api_client, "POST", path, f"create {_name(obj)}", body=dict(obj),
              query=[("fieldManager", FIELD_MANAGER)])
    except ApiException as exc:
        if exc.status == 409:
            return False
        where = f" ({source})" if source else ""
        raise ApplyError(one_line(f"cannot create {_name(obj)}{where}: {api_message(exc)}")
                         ) from exc
    return True


def read(api_client: k8s.ApiClient, api_version: str, kind: str, namespace: str | None,
         name: str) -> dict[str, Any] | None:
    """The object as JSON, None when it does not exist."""
    path = object_path(api_client, api_version, kind, namespace, name)
    try:
        return _call(api_client, "GET", path, f"read {kind}/{name}")
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise ApplyError(one_line(f"cannot read {kind}/{name}: {api_message(exc)}")) from exc


def api_version_of(key: str, known: Mapping[str, str] | None = None) -> str | None:
    """The apiVersion for a plan key (`group/Kind/ns/name`): recorded, else the kind table's."""
    if known and key in known:
        return known[key]
    group, kind = key.split("/")[:2]
    entry = find_kind(kind)
    if entry is None or entry.group != group:
        return None
    return entry.api_version


def delete_owned(api_client: k8s.ApiClient, key: str, api_version: str,
                 owned: Callable[[Mapping[str, Any]], bool] = is_devloop_owned,
                 wait: bool = False, timeout: float = 60.0) -> str:
    """Delete the object of `key` when it carries devloop's mark; "deleted", "gone" or "kept"
    (not devloop's: someone else's object of the same name). With `wait`, return once it is
    gone (so an object of the same name can be created again)."""
    _, kind, namespace, name = key.split("/", 3)
    current = read(api_client, api_version, kind, namespace or None, name)
    if current is None:
        return "gone"
    if group_of(current.get("apiVersion")) != group_of(api_version) or not owned(current):
        return "kept"
    path = object_path(api_client, api_version, kind, namespace or None, name)
    try:
        _call(api_client, "DELETE", path, f"delete {kind}/{name}",
              body={"propagationPolicy": "Background"})
    except ApiException as exc:
        if exc.status == 404:
            return "gone"
        raise ApplyError(one_line(f"cannot delete {kind}/{name}: {api_message(exc)}")) from exc
    deadline = time.monotonic() + timeout
    while wait and read(api_client, api_version, kind, namespace or None, name) is not None:
        if time.monotonic() > deadline:
            raise ApplyError(f"{kind}/{name} was deleted but still exists after {timeout:.0f}s")
        time.sleep(0.2)
    return "deleted"


# Never listed as what an earlier run applied: objects that copy another object's labels
# (Endpoints and EndpointSlices take their Service's), records (Events), and Namespaces (devloop
# creates the ones it deploys to; never pruned, and shared by every project deployed there).
_NOT_LISTED = frozenset({"Event", "Endpoints", "EndpointSlice", "Namespace"})


def served(api_client: k8s.ApiClient) -> list[Kind]:
    """Every kind the cluster serves (API discovery, best effort; devloop.k8s.discovery)."""
    try:
        return served_kinds(api_client)
    except Unreachable as exc:
        raise ClusterUnreachable.from_error(exc.__cause__ or exc,
                                            str(api_client.configuration.host)) from exc


def applied_by_devloop(obj: Mapping[str, Any], project: str) -> bool:
    """Whether devloop applied `obj` for `project`: its mark, and (where the server records
    field managers) a `devloop` entry in managedFields, so an object that merely copies a
    marked object's labels is never taken for devloop's."""
    if not is_devloop_owned(obj, project):
        return False
    managers = (obj.get("metadata") or {}).get("managedFields")
    return not managers or any(m.get("manager") == FIELD_MANAGER for m in managers)


def list_owned(api_client: k8s.ApiClient, namespace: str, project: str,
               kinds: list[Kind] | None = None) -> list[dict[str, Any]]:
    """Every object in `namespace` (and cluster-wide, for cluster-scoped kinds) that devloop
    applied for `project`, of any kind the server serves (custom resources included; `kinds`,
    else found by API discovery): what an earlier run applied. A kind that cannot be listed
    is skipped: this is a report, and what is not seen is never deleted."""
    found: list[dict[str, Any]] = []
    for kind in served(api_client) if kinds is None else kinds:
        if kind.kind in _NOT_LISTED:
            continue
        try:
            data = _call(api_client, "GET", kind.path(namespace), f"list {kind.kind}",
                         query=[("labelSelector", f"{MANAGED_LABEL}={MANAGED_VALUE}")])
        except ApiException as exc:
            if exc.status in (403, 404, 405):
                continue  # not served after all, or not ours to list
            raise ApplyError(one_line(f"cannot list {kind.kind} in {namespace}:"
                                      f" {api_message(exc)}")) from exc
        for item in data.get("items") or []:
            item.setdefault("apiVersion", kind.group_version)
            item.setdefault("kind", kind.kind)
            if applied_by_devloop(item, project):
                found.append(item)
    return found

"""Every kind the API server serves, found through API discovery, and a plain list of one kind's
objects in a namespace.

A fixed list of kinds goes out of date the moment a cluster has an Ingress controller, an HPA or
any CustomResourceDefinition; discovery is what `kubectl api-resources` and Kubernetes' own
namespace controller use to know what a namespace can hold.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from devloop.k8s import timeouts
from devloop.k8s.errors import api_message, is_connection_error


@dataclass(frozen=True)
class Kind:
    """One resource kind at its group's preferred version."""

    group_version: str  # "v1", "apps/v1", "example.com/v1"
    kind: str
    plural: str
    namespaced: bool = True

    def path(self, namespace: str) -> str:
        """The collection's path (in `namespace` when the kind is namespaced)."""
        root = "/api" if "/" not in self.group_version else "/apis"
        where = f"/namespaces/{namespace}" if self.namespaced else ""
        return f"{root}/{self.group_version}{where}/{self.plural}"


class DiscoveryIncomplete(Exception):
    """A group or kind could not be discovered or listed (one line naming it): what a namespace
    holds is then unknown."""


class Unreachable(Exception):
    """The API server did not answer (the caller turns it into its own unreachable error)."""


def _get(api_client: k8s.ApiClient, path: str) -> dict[str, Any]:
    try:
        resp = api_client.call_api(path, "GET", auth_settings=["BearerToken"],
                                   _preload_content=False, _return_http_data_only=True,
                                   _request_timeout=timeouts.BULK)
    except ApiException as exc:
        raise DiscoveryIncomplete(f"GET {path}: {api_message(exc)}") from exc
    except Exception as exc:
        if is_connection_error(exc):
            raise Unreachable(str(exc)) from exc
        raise
    try:
        return json.loads(resp.data or b"{}")
    finally:
        resp.release_conn()


def namespaced_kinds(api_client: k8s.ApiClient,
                     keep: Callable[[Kind], bool] = lambda _k: True) -> list[Kind]:
    """The namespaced kinds that can be listed and deleted (what deleting a namespace deletes),
    at each group's preferred version, in discovery order, core first; raise
    DiscoveryIncomplete when any group does not answer (an aggregated API that is down hides
    what it serves)."""
    return [k for k in _served(api_client, strict=True) if k.namespaced and keep(k)]


def served_kinds(api_client: k8s.ApiClient) -> list[Kind]:
    """Every kind, namespaced or cluster-wide, that can be listed and deleted (custom resources
    included), best effort: a group that does not answer is left out (its objects go
    unseen), while an API server that does not answer at all raises Unreachable."""
    return _served(api_client, strict=False)


def _served(api_client: k8s.ApiClient, strict: bool) -> list[Kind]:
    def get(path: str) -> dict[str, Any]:
        try:
            return _get(api_client, path)
        except DiscoveryIncomplete:
            if strict:
                raise
            return {}

    versions = ["v1"]
    for group in (get("/apis").get("groups") or []):
        preferred = (group.get("preferredVersion") or {}).get("groupVersion")
        if preferred:
            versions.append(preferred)
    kinds: list[Kind] = []
    for group_version in versions:
        root = "/api" if "/" not in group_version else "/apis"
        listing = get(f"{root}/{group_version}")
        for res in listing.get("resources") or []:
            verbs = set(res.get("verbs") or ())
            if "/" in res.get("name", "") or not {"list", "delete"} <= verbs:
                continue
            kinds.append(Kind(group_version, res.get("kind", ""), res["name"],
                              bool(res.get("namespaced"))))
    return kinds


def list_objects(api_client: k8s.ApiClient, kind: Kind, namespace: str) -> list[dict[str, Any]]:
    """The namespace's objects of `kind`, each with its `kind` filled in (lists omit it)."""
    items = _get(api_client, kind.path(namespace)).get("items") or []
    for item in items:
        item.setdefault("kind", kind.kind)
        item.setdefault("apiVersion", kind.group_version)
    return items

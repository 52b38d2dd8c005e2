"""Every namespaced kind the API server serves, found through API discovery, and a plain list of
one kind's objects in a namespace.

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
    """One namespaced resource kind at its group's preferred version."""

    group_version: str  # "v1", "apps/v1", "example.com/v1"
    kind: str
    plural: str

    def path(self, namespace: str) -> str:
        root = "/api" if "/" not in self.group_version else "/apis"
        return f"{root}/{self.group_version}/namespaces/{namespace}/{self.plural}"


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
    versions = ["v1"]
    for group in (_get(api_client, "/apis").get("groups") or []):
        preferred = (group.get("preferredVersion") or {}).get("groupVersion")
        if preferred:
            versions.append(preferred)
    kinds: list[Kind] = []
    for group_version in versions:
        root = "/api" if "/" not in group_version else "/apis"
        listing = _get(api_client, f"{root}/{group_version}")
        for res in listing.get("resources") or []:
            verbs = set(res.get("verbs") or ())
            if "/" in res.get("name", "") or not res.get("namespaced") \
                    or not {"list", "delete"} <= verbs:
                continue
            kind = Kind(group_version, res.get("kind", ""), res["name"])
            if keep(kind):
                kinds.append(kind)
    return kinds


def list_objects(api_client: k8s.ApiClient, kind: Kind, namespace: str) -> list[dict[str, Any]]:
    """The namespace's objects of `kind`, each with its `kind` filled in (lists omit it)."""
    items = _get(api_client, kind.path(namespace)).get("items") or []
    for item in items:
        item.setdefault("kind", kind.kind)
        item.setdefault("apiVersion", kind.group_version)
    return items

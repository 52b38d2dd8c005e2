"""Custom resources on the stand-in, as kube-apiserver serves them: a CustomResourceDefinition
makes its kind appear in discovery and be stored, listed and deleted with its namespace
(`devloop down --namespace` relies on discovery to see every kind in a namespace)."""

from __future__ import annotations

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from tests.kube_standin.fixtures import wait_for

pytestmark = pytest.mark.docker

CRD = {
    "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
    "metadata": {"name": "widgets.example.com"},
    "spec": {"group": "example.com", "scope": "Namespaced",
             "names": {"plural": "widgets", "singular": "widget", "kind": "Widget",
                       "shortNames": ["wd"]},
             "versions": [{"name": "v1", "served": True, "storage": True,
                           "schema": {"openAPIV3Schema": {
                               "type": "object", "x-kubernetes-preserve-unknown-fields": True}}}]},
}


def _served(api_client: client.ApiClient) -> set[tuple[str, str, bool]]:
    found = set()
    for group in client.ApisApi(api_client).get_api_versions().groups:
        for version in group.versions:
            listing = client.CustomObjectsApi(api_client).get_api_resources(
                group.name, version.version)
            found |= {(version.group_version, r.name, r.namespaced) for r in listing.resources}
    return found


def test_a_crd_serves_its_kind_in_discovery_and_stores_its_objects(standin_factory):
    standin = standin_factory(run_pods=False)
    api_client = standin.api_client()
    standin.create_namespace("shop")
    assert ("example.com/v1", "widgets", True) not in _served(api_client)
    client.ApiextensionsV1Api(api_client).create_custom_resource_definition(CRD)
    assert ("example.com/v1", "widgets", True) in _served(api_client)

    custom = client.CustomObjectsApi(api_client)
    custom.create_namespaced_custom_object("example.com", "v1", "shop", "widgets", {
        "apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w1"},
        "spec": {"size": 3}})
    items = custom.list_namespaced_custom_object("example.com", "v1", "shop", "widgets")["items"]
    assert [(i["metadata"]["name"], i["spec"]) for i in items] == [("w1", {"size": 3})]

    standin.stop(keep_pods=True)  # kept state: the CRD is served again after a restart
    standin.start()
    custom = client.CustomObjectsApi(standin.api_client())
    assert custom.get_namespaced_custom_object("example.com", "v1", "shop", "widgets", "w1")

    client.CoreV1Api(standin.api_client()).delete_namespace("shop")
    wait_for(lambda: not custom.list_namespaced_custom_object(
        "example.com", "v1", "shop", "widgets")["items"], 30, what="widgets deleted with ns")

    client.ApiextensionsV1Api(standin.api_client()).delete_custom_resource_definition(
        "widgets.example.com")
    assert ("example.com/v1", "widgets", True) not in _served(standin.api_client())
    with pytest.raises(ApiException) as err:
        custom.list_namespaced_custom_object("example.com", "v1", "shop", "widgets")
    assert err.value.status == 404

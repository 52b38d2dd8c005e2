"""The pure rules behind orphans: what counts as applied by devloop, where a custom kind lives,
and what is never pruned."""

from __future__ import annotations

from devloop.deploy.manifest_session import crd_scopes, normalise
from devloop.manifests.apply import applied_by_devloop
from devloop.manifests.plan import key_of, plan
from devloop.manifests.render import Rendered

MARK = {"labels": {"devloop.dev/managed-by": "devloop"},
        "annotations": {"devloop.dev/release": "shop"}}


def _obj(kind: str, name: str, api_version: str = "v1", **meta: object) -> dict:
    return {"apiVersion": api_version, "kind": kind, "metadata": {"name": name, **meta}}


def test_only_devloops_mark_for_the_project_and_its_field_manager_make_an_object_devloops():
    devloop_applied = [{"manager": "devloop", "operation": "Apply"}]
    assert applied_by_devloop(_obj("ConfigMap", "a", **MARK, managedFields=devloop_applied),
                              "shop")
    # the server records no managers: the mark alone says it
    assert applied_by_devloop(_obj("ConfigMap", "a", **MARK), "shop")
    # the label copied by someone else (an Endpoints takes its Service's labels)
    assert not applied_by_devloop(_obj("ConfigMap", "a", **MARK, managedFields=[
        {"manager": "kube-controller-manager", "operation": "Update"}]), "shop")
    # another project's, or no mark at all
    assert not applied_by_devloop(_obj("ConfigMap", "a", **MARK), "other")
    assert not applied_by_devloop(_obj("ConfigMap", "a", managedFields=devloop_applied), "shop")


CRD = {"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
       "metadata": {"name": "widgets.example.com"},
       "spec": {"group": "example.com", "scope": "Namespaced",
                "names": {"plural": "widgets", "kind": "Widget"}}}
CLUSTER_CRD = {**CRD, "metadata": {"name": "gadgets.example.com"},
               "spec": {"group": "example.com", "scope": "Cluster",
                        "names": {"plural": "gadgets", "kind": "Gadget"}}}


def test_a_custom_kind_is_namespaced_as_its_crd_or_the_cluster_says():
    assert crd_scopes([CRD, CLUSTER_CRD, _obj("ConfigMap", "x")]) == {
        ("example.com", "Widget"): True, ("example.com", "Gadget"): False,
        ("apiextensions.k8s.io", "CustomResourceDefinition"): False}
    rendered = [Rendered(o, "k8s/x.yaml") for o in (
        CRD, CLUSTER_CRD, _obj("Widget", "w", "example.com/v1"),
        _obj("Gadget", "g", "example.com/v1"),
        _obj("Knob", "k", "other.io/v1"), _obj("Dial", "d", "other.io/v1"))]
    served = {("other.io", "Knob"): False}.get  # Dial: not served (yet): namespaced
    objects, _ = normalise(rendered, "app", "shop", lambda g, k: served((g, k)))
    keys = sorted(key_of(o) for o in objects)
    assert keys == ["/Namespace//app",
                    "apiextensions.k8s.io/CustomResourceDefinition//gadgets.example.com",
                    "apiextensions.k8s.io/CustomResourceDefinition//widgets.example.com",
                    "example.com/Gadget//g", "example.com/Widget/app/w",
                    "other.io/Dial/app/d", "other.io/Knob//k"]
    assert all(o["metadata"]["labels"]["devloop.dev/managed-by"] == "devloop" for o in objects)


def test_orphans_of_an_earlier_run_are_pruned_but_never_a_claim_namespace_or_crd():
    earlier = ["/PersistentVolumeClaim/app/data", "/Namespace//old",
               "apiextensions.k8s.io/CustomResourceDefinition//widgets.example.com",
               "example.com/Widget/app/w2", "/ConfigMap/app/extra"]
    rendered = [_obj("ConfigMap", "kept", namespace="app")]
    kept = plan(rendered, None, prune=False, earlier=earlier)
    assert kept.orphaned == sorted(earlier) and kept.prune == []
    pruned = plan(rendered, None, prune=True, earlier=earlier)
    assert pruned.orphaned == sorted(earlier)
    assert pruned.prune == ["/ConfigMap/app/extra", "example.com/Widget/app/w2"]

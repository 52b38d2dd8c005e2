"""Which chart objects belong to a service, for `devloop down` (no cluster needed)."""

from __future__ import annotations

from devloop.commands.down import chart_objects_of, references


def _deployment(name: str, labels: dict, spec: dict) -> dict:
    return {"kind": "Deployment", "metadata": {"name": name},
            "spec": {"template": {"metadata": {"labels": labels}, "spec": spec}}}


def test_every_kind_of_reference_of_a_pod_template_is_found():
    spec = {
        "volumes": [{"name": "a", "configMap": {"name": "cm-vol"}},
                    {"name": "b", "secret": {"secretName": "s-vol"}},
                    {"name": "c", "persistentVolumeClaim": {"claimName": "data"}},
                    {"name": "d", "projected": {"sources": [{"configMap": {"name": "cm-proj"}},
                                                            {"secret": {"name": "s-proj"}}]}},
                    {"name": "e", "emptyDir": {}}],
        "containers": [{"name": "app", "env": [
            {"name": "A", "valueFrom": {"configMapKeyRef": {"name": "cm-env", "key": "k"}}},
            {"name": "B", "valueFrom": {"secretKeyRef": {"name": "s-env", "key": "k"}}},
            {"name": "C", "value": "plain"}],
            "envFrom": [{"configMapRef": {"name": "cm-from"}}, {"secretRef": {"name": "s-from"}}]}],
        "initContainers": [{"name": "init", "envFrom": [{"secretRef": {"name": "s-init"}}]}],
        "imagePullSecrets": [{"name": "pull"}],
    }
    assert references(_deployment("app", {}, spec)) == {
        "ConfigMap/cm-vol", "Secret/s-vol", "PersistentVolumeClaim/data", "ConfigMap/cm-proj",
        "Secret/s-proj", "ConfigMap/cm-env", "Secret/s-env", "ConfigMap/cm-from",
        "Secret/s-from", "Secret/s-init", "Secret/pull"}


def test_a_service_owns_its_deployment_what_it_uses_and_the_services_selecting_it():
    backend = _deployment("backend", {"app": "backend", "tier": "api"}, {
        "containers": [{"name": "backend", "envFrom": [{"configMapRef": {"name": "backend-cfg"}},
                                                       {"secretRef": {"name": "outside"}}]}]})
    frontend = _deployment("frontend", {"app": "frontend"}, {"containers": [{"name": "f"}]})
    objects = [
        backend, frontend,
        {"kind": "ConfigMap", "metadata": {"name": "backend-cfg"}},
        {"kind": "Service", "metadata": {"name": "backend-svc"},
         "spec": {"selector": {"app": "backend"}}},
        {"kind": "Service", "metadata": {"name": "frontend-svc"},
         "spec": {"selector": {"app": "frontend"}}},
        {"kind": "Service", "metadata": {"name": "headless"}, "spec": {}},
    ]
    # "outside" is not a chart object: devloop did not install it, so it is no candidate
    assert chart_objects_of(objects, "backend") == {
        "Deployment/backend", "ConfigMap/backend-cfg", "Service/backend-svc"}
    assert chart_objects_of(objects, "frontend") == {"Deployment/frontend",
                                                     "Service/frontend-svc"}
    assert chart_objects_of(objects, "missing") == set()


def test_only_devloops_own_mark_makes_an_object_devloops():
    from devloop.k8s.ownership import is_devloop_owned, mark

    helm_installed = {"kind": "Ingress", "metadata": {
        "name": "web", "labels": {"app.kubernetes.io/managed-by": "Helm"},
        "annotations": {"meta.helm.sh/release-name": "lumina"}}}
    assert not is_devloop_owned(helm_installed)
    assert not is_devloop_owned(helm_installed, "lumina")
    marked = mark(helm_installed, "lumina")
    assert is_devloop_owned(marked) and is_devloop_owned(marked, "lumina")
    assert not is_devloop_owned(marked, "other-release")
    assert marked["metadata"]["annotations"]["meta.helm.sh/release-name"] == "lumina"
    assert "devloop.dev/managed-by" not in helm_installed["metadata"]["labels"]  # a copy


def _obj(kind: str, name: str, uid: str, owner: str | None = None, **extra) -> dict:
    meta: dict = {"name": name, "uid": uid}
    if owner:
        meta["ownerReferences"] = [{"uid": owner}]
    return {"kind": kind, "metadata": meta, **extra}


def test_the_namespace_is_blocked_by_anything_not_deleted_nor_owned_by_what_was():
    from devloop.commands.down import dependents, namespace_blockers

    before = [_obj("Deployment", "data", "d1"), _obj("ReplicaSet", "data-7c", "r1", "d1"),
              _obj("Pod", "data-7c-x", "p1", "r1"), _obj("Widget", "w", "w1"),
              _obj("Service", "data", "s1"), _obj("EndpointSlice", "data-abc", "e1", "s1")]
    gone = dependents(before, {"Deployment/data", "Service/data"})
    assert gone == {"d1", "r1", "p1", "s1", "e1"}  # owners at any depth; never the Widget
    after = [
        _obj("Pod", "data-7c-x", "p1", "r1"),  # still terminating
        _obj("Pod", "data-7c-y", "p2", "r1"),  # made after the snapshot by a dying owner
        _obj("Endpoints", "data", "n1"), _obj("ConfigMap", "kube-root-ca.crt", "c1"),
        _obj("ServiceAccount", "default", "a1"),
        _obj("Secret", "default-token", "t1", type="kubernetes.io/service-account-token"),
        _obj("Widget", "w", "w1"), _obj("PersistentVolumeClaim", "db", "v1"),
    ]
    assert namespace_blockers(after, {"Deployment/data", "Service/data"}, gone) == \
        ["PersistentVolumeClaim/db", "Widget/w"]


def test_what_is_already_going_does_not_block_the_namespace():
    """A second `down --namespace` right after the first: the first one's pods are still
    terminating or waiting for the garbage collector. They go anyway; a person's objects, and
    anything whose owner may live where down did not look, still keep the namespace."""
    from devloop.commands.down import namespace_blockers

    def owned(kind: str, name: str, uid: str, owner_kind: str, owner_uid: str,
              api_version: str = "apps/v1", **meta) -> dict:
        obj = _obj(kind, name, uid)
        obj["metadata"]["ownerReferences"] = [
            {"apiVersion": api_version, "kind": owner_kind, "uid": owner_uid}]
        obj["metadata"].update(meta)
        return obj

    objects = [
        owned("Pod", "data-7c-x", "p1", "ReplicaSet", "r-gone"),  # its ReplicaSet is gone
        {"kind": "Pod", "metadata": {"name": "mine", "uid": "p2",  # terminating
                                     "deletionTimestamp": "2026-12-03T14:00:00Z"}},
        owned("Pod", "web-5d-y", "p3", "ReplicaSet", "r1"),  # its ReplicaSet is still there
        _obj("ReplicaSet", "web-5d", "r1"),
        owned("Pod", "op-z", "p4", "Widget", "w-gone", api_version="example.com/v1"),
    ]
    assert namespace_blockers(objects, set(), set()) == [
        "Pod/op-z", "Pod/web-5d-y", "ReplicaSet/web-5d"]
    # positive control: the same pods without those marks block it
    assert "Pod/data-7c-x" in namespace_blockers([_obj("Pod", "data-7c-x", "p1")], set(), set())

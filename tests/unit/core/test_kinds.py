"""The kind table: which API serves a kind and where each workload kind keeps its pods."""

from __future__ import annotations

import pytest
from kubernetes import client as k8s

from devloop.k8s.kinds import (
    KINDS,
    PathError,
    client_method,
    find_kind,
    kind_of,
    parse_path,
    pod_specs,
    pod_template,
    resolve,
)


def _template(image: str = "app") -> dict:
    return {"metadata": {"labels": {"app": "x"}},
            "spec": {"containers": [{"name": "c", "image": image}]}}


WORKLOADS = {
    "Deployment": {"apiVersion": "apps/v1", "kind": "Deployment",
                  "spec": {"template": _template()}},
    "StatefulSet": {"apiVersion": "apps/v1", "kind": "StatefulSet",
                    "spec": {"template": _template()}},
    "DaemonSet": {"apiVersion": "apps/v1", "kind": "DaemonSet",
                 "spec": {"template": _template()}},
    "ReplicaSet": {"apiVersion": "apps/v1", "kind": "ReplicaSet",
                  "spec": {"template": _template()}},
    "Job": {"apiVersion": "batch/v1", "kind": "Job", "spec": {"template": _template()}},
    "CronJob": {"apiVersion": "batch/v1", "kind": "CronJob",
                "spec": {"jobTemplate": {"spec": {"template": _template()}}}},
    "Pod": {"apiVersion": "v1", "kind": "Pod", **_template()},
}


@pytest.mark.parametrize("kind", sorted(WORKLOADS))
def test_every_workload_kind_gives_its_pod_spec_by_reference(kind: str) -> None:
    obj = WORKLOADS[kind]
    specs = pod_specs(obj)
    assert len(specs) == 1 and specs[0]["containers"][0]["image"] == "app"
    specs[0]["containers"][0]["image"] = "edited"  # a reference: editing it edits the object
    assert pod_specs(obj)[0]["containers"][0]["image"] == "edited"
    specs[0]["containers"][0]["image"] = "app"


def test_objects_without_pods_have_no_pod_spec() -> None:
    for obj in ({"apiVersion": "v1", "kind": "ConfigMap", "data": {"spec": "x"}},
                {"apiVersion": "v1", "kind": "Service", "spec": {"template": _template()}},
                {"apiVersion": "example.com/v1", "kind": "Widget",
                 "spec": {"template": _template()}}):
        assert pod_specs(obj) == [] and pod_template(obj) is None


def test_kind_is_looked_up_by_group_and_kind() -> None:
    assert kind_of({"apiVersion": "apps/v1", "kind": "StatefulSet"}).plural == "statefulsets"
    assert kind_of({"apiVersion": "batch/v1", "kind": "CronJob"}).template == (
        "spec", "jobTemplate", "spec", "template")
    # the same kind name in another group is not the built-in one
    assert kind_of({"apiVersion": "example.com/v1", "kind": "Deployment"}) is None
    assert kind_of({"apiVersion": "v1", "kind": "Namespace"}).namespaced is False
    assert find_kind("statefulset") is find_kind("StatefulSets") is find_kind("StatefulSet")
    assert find_kind("widget") is None


def test_every_kind_names_a_real_client_method() -> None:
    api_client = k8s.ApiClient()  # no request is made: only the bound methods are looked up
    for kind in KINDS:
        for verb in ("read", "create", "list", "delete", "patch", "replace"):
            assert callable(client_method(api_client, kind, verb)), (kind.kind, verb)


def test_custom_kind_pod_specs_and_image_paths() -> None:
    rollout = {"apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout",
               "spec": {"template": _template("web"), "image": "side"}}
    paths = {"Rollout": ["spec.template.spec.containers[*].image", "spec.image"]}
    assert [s["containers"][0]["image"] for s in pod_specs(rollout, paths)] == ["web"]
    assert pod_specs(rollout, {"argoproj.io/Rollout": paths["Rollout"]})[0] is \
        rollout["spec"]["template"]["spec"]
    assert pod_specs(rollout, {"other.io/Rollout": paths["Rollout"]}) == []
    assert pod_specs(rollout, {"Rollout": ["spec.image"]}) == []  # an image, not a pod spec


def test_paths_resolve_lists_indexes_and_missing_keys() -> None:
    obj = {"spec": {"c": [{"image": "a"}, {"image": "b"}, {"name": "no image"}]}}
    assert [p[k] for p, k in resolve(obj, "spec.c[*].image")] == ["a", "b"]
    assert [p[k] for p, k in resolve(obj, "spec.c[1].image")] == ["b"]
    assert list(resolve(obj, "spec.c[7].image")) == []
    assert list(resolve(obj, "spec.missing.image")) == []
    assert list(resolve({"spec": "text"}, "spec.image")) == []
    assert parse_path("a.b[*][0].c") == ["a", "b", "*", 0, "c"]
    for bad in ("spec..image", "spec.c[x]", "[*].image", ""):
        with pytest.raises(PathError, match="image path"):
            parse_path(bad)

"""Strategic merge patch details that kubectl and helm rely on (pure functions, no server)."""

from __future__ import annotations

from tests.kube_standin.patching import StrategicMerge, json_merge_patch, json_patch
from tests.kube_standin.schema import Schemas

SMP = StrategicMerge(Schemas())

DEPLOY = {
    "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"},
    "spec": {"template": {"spec": {
        "containers": [
            {"name": "app", "image": "a:1",
             "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}],
             "ports": [{"containerPort": 80}],
             "volumeMounts": [{"name": "data", "mountPath": "/data"}]},
            {"name": "side", "image": "s:1"},
        ],
        "volumes": [{"name": "data", "emptyDir": {}}],
    }}},
}


def containers(obj: dict) -> list[dict]:
    return obj["spec"]["template"]["spec"]["containers"]


def test_lists_merge_by_their_schema_keys():
    patched = SMP.apply(DEPLOY, {"spec": {"template": {"spec": {"containers": [
        {"name": "app", "env": [{"name": "B", "value": "3"}, {"name": "C", "value": "4"}],
         "ports": [{"containerPort": 81}]}]}}}})
    app, side = containers(patched)
    assert app["image"] == "a:1" and side["image"] == "s:1"
    assert app["env"] == [{"name": "A", "value": "1"}, {"name": "B", "value": "3"},
                          {"name": "C", "value": "4"}]
    assert [p["containerPort"] for p in app["ports"]] == [80, 81]
    assert containers(DEPLOY)[0]["env"][1]["value"] == "2"  # the original is untouched


def test_patch_directives_delete_replace_and_order():
    deleted = SMP.apply(DEPLOY, {"spec": {"template": {"spec": {"containers": [
        {"name": "side", "$patch": "delete"}]}}}})
    assert [c["name"] for c in containers(deleted)] == ["app"]
    replaced = SMP.apply(DEPLOY, {"spec": {"template": {"spec": {"containers": [
        {"name": "only", "image": "o:1"}, {"$patch": "replace"}]}}}})
    assert containers(replaced) == [{"name": "only", "image": "o:1"}]
    ordered = SMP.apply(DEPLOY, {"spec": {"template": {"spec": {
        "$setElementOrder/containers": [{"name": "side"}, {"name": "app"}],
        "containers": [{"name": "app", "image": "a:2"}]}}}})
    assert [(c["name"], c["image"]) for c in containers(ordered)] == [("side", "s:1"),
                                                                      ("app", "a:2")]
    dropped = SMP.apply(DEPLOY, {"spec": {"template": {"spec": {"volumes": None}}}})
    assert "volumes" not in dropped["spec"]["template"]["spec"]


def test_json_merge_patch_and_json_patch():
    merged = json_merge_patch(DEPLOY, {"metadata": {"labels": {"x": "y"}}, "spec": None})
    assert merged == {"apiVersion": "apps/v1", "kind": "Deployment",
                      "metadata": {"name": "d", "labels": {"x": "y"}}}
    patched = json_patch(DEPLOY, [
        {"op": "replace", "path": "/spec/template/spec/containers/1/image", "value": "s:2"},
        {"op": "add", "path": "/metadata/labels", "value": {"a": "b"}},
        {"op": "remove", "path": "/spec/template/spec/volumes/0"},
        {"op": "test", "path": "/metadata/name", "value": "d"},
    ])
    assert containers(patched)[1]["image"] == "s:2"
    assert patched["metadata"]["labels"] == {"a": "b"}
    assert patched["spec"]["template"]["spec"]["volumes"] == []

"""Built images go wherever the manifests name them, matched by repository (as Tilt and Skaffold
match): every workload kind, containers and init containers, custom kinds by image paths."""

from __future__ import annotations

import copy

import pytest

from devloop.k8s.inject import Feed, inject, name_fed, repository, same_repository, users

BUILT = "localhost:5000/backend:dl-0123456789ab"


@pytest.mark.parametrize(("ref", "repo"), [
    ("backend", "backend"),
    ("backend:1.2", "backend"),
    ("backend@sha256:" + "a" * 64, "backend"),
    ("backend:dl-1@sha256:" + "a" * 64, "backend"),
    ("localhost:5000/backend", "localhost:5000/backend"),
    ("localhost:5000/backend:dl-1", "localhost:5000/backend"),
    ("registry.example:443/team/backend:v1", "registry.example:443/team/backend"),
])
def test_repository_strips_tag_and_digest_and_keeps_the_registry_port(ref: str, repo: str) -> None:
    assert repository(ref) == repo


def test_docker_hub_spellings_are_one_repository() -> None:
    assert same_repository("docker.io/library/backend:1", "backend")
    assert same_repository("backend", "index.docker.io/library/backend")
    assert not same_repository("backend-worker", "backend")
    assert not same_repository("other/backend", "backend")
    assert not same_repository("localhost:5000/backend", "backend")


def _containers(*images: str) -> list[dict]:
    return [{"name": f"c{i}", "image": image} for i, image in enumerate(images)]


def _deployment() -> dict:
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "api"},
            "spec": {"template": {"spec": {
                "initContainers": [{"name": "migrate", "image": "backend:latest"}],
                "containers": [{"name": "api", "image": "backend"},
                               {"name": "proxy", "image": "nginx:1.27"}]}}}}


def test_inject_replaces_containers_and_init_containers_and_leaves_the_input_alone() -> None:
    dep = _deployment()
    before = copy.deepcopy(dep)
    out = inject(dep, {"backend": BUILT})
    spec = out["spec"]["template"]["spec"]
    assert spec["initContainers"][0]["image"] == BUILT
    assert spec["containers"][0]["image"] == BUILT
    assert spec["containers"][1]["image"] == "nginx:1.27"  # another repository: untouched
    assert dep == before


@pytest.mark.parametrize("obj", [
    {"apiVersion": "apps/v1", "kind": "StatefulSet",
     "spec": {"template": {"spec": {"containers": _containers("backend:x")}}}},
    {"apiVersion": "apps/v1", "kind": "DaemonSet",
     "spec": {"template": {"spec": {"containers": _containers("backend:x")}}}},
    {"apiVersion": "apps/v1", "kind": "ReplicaSet",
     "spec": {"template": {"spec": {"containers": _containers("backend:x")}}}},
    {"apiVersion": "batch/v1", "kind": "Job",
     "spec": {"template": {"spec": {"containers": _containers("backend:x")}}}},
    {"apiVersion": "batch/v1", "kind": "CronJob", "spec": {"jobTemplate": {"spec": {
        "template": {"spec": {"containers": _containers("backend:x")}}}}}},
    {"apiVersion": "v1", "kind": "Pod", "spec": {"containers": _containers("backend:x")}},
], ids=lambda o: o["kind"])
def test_inject_reaches_every_workload_kind(obj: dict) -> None:
    out = inject(obj, {"backend": BUILT})
    assert BUILT in repr(out) and "backend:x" not in repr(out)


def test_objects_without_pods_and_unknown_kinds_are_untouched() -> None:
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "data": {"image": "backend"}}
    crd = {"apiVersion": "example.com/v1", "kind": "Widget", "spec": {"image": "backend"}}
    assert inject(cm, {"backend": BUILT}) == cm
    assert inject(crd, {"backend": BUILT}) == crd


def test_custom_kinds_through_image_paths() -> None:
    crd = {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"},
           "spec": {"image": "backend:v0", "sidecars": [{"name": "s", "image": "backend"},
                                                         {"name": "t", "image": "redis"}]}}
    paths = {"Widget": ["spec.image", "spec.sidecars[*].image"]}
    out = inject(crd, {"backend": BUILT}, paths)
    assert out["spec"]["image"] == BUILT
    assert [s["image"] for s in out["spec"]["sidecars"]] == [BUILT, "redis"]
    found = users([crd], "backend", paths)
    assert [(u.container, u.path) for u in found] == [
        (None, "spec.image"), ("s", "spec.sidecars[*].image")]


def test_users_lists_every_workload_and_container_running_a_repository() -> None:
    dep = _deployment()
    job = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "seed", "namespace": "n"},
           "spec": {"template": {"spec": {"containers": _containers("docker.io/library/backend")}}}}
    other = {"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "db"},
             "spec": {"template": {"spec": {"containers": _containers("postgres:16")}}}}
    found = users([dep, job, other], "backend")
    assert [(u.workload, u.container, u.init) for u in found] == [
        ("deployment/api", "migrate", True), ("deployment/api", "api", False),
        ("job/seed", "c0", False)]
    assert found[2].namespace == "n"
    assert users([dep, job, other], "postgres")[0].workload == "statefulset/db"
    assert users([dep, job, other], "nothing") == []


def _box(namespace: str | None = None) -> dict:
    meta = {"name": "box", **({"namespace": namespace} if namespace else {})}
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": meta,
            "spec": {"template": {"spec": {"containers": [
                {"name": "box", "image": "placeholder:none"},
                {"name": "proxy", "image": "nginx:1.27"}]}}}}


def test_an_image_no_manifest_names_runs_where_devloop_yaml_says_and_the_apply_carries_it(
) -> None:
    """A chart with a placeholder image, devloop.yaml `deployment: box`: the apply must carry
    the image devloop deployed there, or every apply takes the workload back to the placeholder."""
    box = _box("shop")
    before = copy.deepcopy(box)
    out = name_fed([box], [Feed("box-image", "Deployment", "box", "box")], "shop")
    containers = out[0]["spec"]["template"]["spec"]["containers"]
    assert [c["image"] for c in containers] == ["box-image", "nginx:1.27"]
    assert box == before  # the input is never changed
    injected = inject(out[0], {"box-image": BUILT})
    assert injected["spec"]["template"]["spec"]["containers"][0]["image"] == BUILT


def test_a_feed_the_manifests_name_elsewhere_another_namespace_or_kind_changes_nothing() -> None:
    named = _box()
    named["spec"]["template"]["spec"]["containers"][1]["image"] = "box-image:v1"
    feed = Feed("box-image", "Deployment", "box", "box")
    assert name_fed([named], [feed], "shop") == [named]  # the manifests name it: matched there
    elsewhere = _box("other")
    assert name_fed([elsewhere], [feed], "shop") == [elsewhere]
    assert name_fed([_box()], [Feed("box-image", "StatefulSet", "box", "box")], "shop") == [_box()]
    # positive control: the same feed on the namespace's Deployment does change it
    assert name_fed([_box()], [feed], "shop") != [_box()]

"""The stand-in's REST API through the real `kubernetes` client (no pods are run here)."""

from __future__ import annotations

import json
import threading
import time

import pytest
import requests
import yaml
from kubernetes import client, config, watch

from tests.kube_standin.fixtures import wait_for

pytestmark = pytest.mark.docker


@pytest.fixture
def api_only(standin_factory):
    return standin_factory(run_pods=False)


def deployment(name: str, image: str = "img:1", **spec_extra) -> dict:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {
                    "containers": [
                        {"name": name, "image": image, "ports": [{"containerPort": 8000}]},
                        {"name": "sidecar", "image": "side:1"},
                    ],
                    "volumes": [{"name": "data", "emptyDir": {}}],
                },
            },
            **spec_extra,
        },
    }


def test_crud_and_the_error_statuses_clients_rely_on(api_only):
    core = api_only.core()
    ns = api_only.create_namespace()
    body = client.V1ConfigMap(metadata=client.V1ObjectMeta(name="cfg"), data={"A": "1"})
    created = core.create_namespaced_config_map(ns, body)
    assert created.metadata.uid and created.metadata.creation_timestamp
    assert int(created.metadata.resource_version) > 0

    with pytest.raises(client.ApiException) as exists:
        core.create_namespaced_config_map(ns, body)
    assert exists.value.status == 409
    assert json.loads(exists.value.body)["reason"] == "AlreadyExists"

    with pytest.raises(client.ApiException) as missing:
        core.read_namespaced_config_map("nope", ns)
    assert missing.value.status == 404
    assert json.loads(missing.value.body)["message"] == 'configmaps "nope" not found'

    # A stale resourceVersion on PUT is a 409 Conflict; the current one succeeds.
    stale = core.read_namespaced_config_map("cfg", ns)
    stale.data = {"A": "2"}
    fresh = core.replace_namespaced_config_map("cfg", ns, stale)
    assert fresh.data == {"A": "2"}
    assert int(fresh.metadata.resource_version) > int(created.metadata.resource_version)
    stale.data = {"A": "3"}
    with pytest.raises(client.ApiException) as conflict:
        core.replace_namespaced_config_map("cfg", ns, stale)
    assert conflict.value.status == 409
    assert json.loads(conflict.value.body)["reason"] == "Conflict"

    core.delete_namespaced_config_map("cfg", ns)
    assert core.list_namespaced_config_map(ns).items == []

    with pytest.raises(client.ApiException) as no_ns:
        core.create_namespaced_config_map("does-not-exist", body)
    assert no_ns.value.status == 404


def test_requests_on_one_connection_are_answered_without_nagle_delay(api_only):
    """kube-apiserver (Go) sets TCP_NODELAY: a client's keep-alive requests are answered in
    about a millisecond. Written as headers then body with Nagle's algorithm on, each waited for
    the client's delayed ACK (at least 40 ms on Linux), which made every API call of devloop
    (and its live-sync timings) look 40 ms slower than on a cluster."""
    core = api_only.core()
    ns = api_only.create_namespace()
    core.create_namespaced_config_map(ns, {"metadata": {"name": "cfg"}, "data": {"A": "1"}})
    core.read_namespaced_config_map("cfg", ns)  # the connection is open and TLS is done
    took = []
    for i in range(20):
        started = time.monotonic()
        core.patch_namespaced_config_map("cfg", ns, {"data": {"A": str(i)}})
        took.append(time.monotonic() - started)
    assert core.read_namespaced_config_map("cfg", ns).data == {"A": "19"}
    # the delayed ACK is a timer: with Nagle on, every one of them takes 40 ms or more; a
    # loaded machine slows some of them, not the fastest of 20 (their sum was 0.7 s once)
    assert min(took) < 0.03, f"the fastest of 20 patches on one connection took {min(took):.3f} s"


def test_schema_validation_rejects_unknown_fields_and_wrong_types(api_only):
    apps = api_only.apps()
    ns = api_only.create_namespace()
    bad = deployment("web")
    bad["spec"]["template"]["spec"]["containers"][0]["imagePullPolicyy"] = "Never"
    with pytest.raises(client.ApiException) as unknown:
        apps.create_namespaced_deployment(ns, bad)
    status = json.loads(unknown.value.body)
    assert unknown.value.status == 422 and status["reason"] == "Invalid"
    assert "imagePullPolicyy" in status["message"]

    wrong_type = deployment("web")
    wrong_type["spec"]["replicas"] = "two"
    with pytest.raises(client.ApiException) as typed:
        apps.create_namespaced_deployment(ns, wrong_type)
    assert typed.value.status == 422
    assert "spec.replicas" in json.loads(typed.value.body)["message"]

    mismatch = deployment("web")
    mismatch["spec"]["selector"]["matchLabels"] = {"app": "other"}
    with pytest.raises(client.ApiException) as selector:
        apps.create_namespaced_deployment(ns, mismatch)
    assert "does not match template" in json.loads(selector.value.body)["message"]


def test_requests_without_the_token_get_401(api_only, tmp_path):
    response = requests.get(f"{api_only.http_url}/api/v1/namespaces", timeout=5)
    assert response.status_code == 401
    assert response.json()["reason"] == "Unauthorized"
    kubeconfig = yaml.safe_load(api_only.kubeconfig.read_text())
    kubeconfig["users"][0]["user"]["token"] = "wrong"
    bad = tmp_path / "kubeconfig"
    bad.write_text(yaml.safe_dump(kubeconfig))
    api = config.new_client_from_config(str(bad), context=api_only.context,
                                        persist_config=False)
    with pytest.raises(client.ApiException) as denied:
        client.CoreV1Api(api).list_namespace()
    assert denied.value.status == 401
    api.close()


def test_strategic_merge_patch_of_one_image_keeps_other_containers_and_volumes(api_only):
    apps = api_only.apps()
    ns = api_only.create_namespace()
    apps.create_namespaced_deployment(ns, deployment("web"))
    patch = {"spec": {"template": {"spec": {"containers": [{"name": "web", "image": "img:2"}]}}}}
    patched = apps.patch_namespaced_deployment("web", ns, patch)
    containers = {c.name: c for c in patched.spec.template.spec.containers}
    assert containers["web"].image == "img:2"
    assert containers["web"].ports[0].container_port == 8000
    assert containers["sidecar"].image == "side:1"
    assert [v.name for v in patched.spec.template.spec.volumes] == ["data"]
    # A container name that does not exist is *added* by a strategic merge patch (real API).
    added = apps.patch_namespaced_deployment(
        "web", ns, {"spec": {"template": {"spec": {"containers": [
            {"name": "typo", "image": "img:3"}]}}}})
    assert [c.name for c in added.spec.template.spec.containers] == ["web", "sidecar", "typo"]

    # JSON merge patch replaces lists; JSON patch edits by path.
    url = f"{api_only.http_url}/apis/apps/v1/namespaces/{ns}/deployments/web"
    headers = {"Authorization": f"Bearer {api_only.token}",
               "Content-Type": "application/merge-patch+json"}
    merged = requests.patch(url, headers=headers, timeout=5, json={
        "spec": {"template": {"spec": {"containers": [{"name": "only", "image": "img:5"}]}}}})
    assert merged.status_code == 200
    assert [c["name"] for c in merged.json()["spec"]["template"]["spec"]["containers"]] == [
        "only"]
    # A list body is sent as a JSON patch by the client.
    jp = apps.patch_namespaced_deployment(
        "web", ns, [{"op": "replace", "path": "/spec/template/spec/containers/0/image",
                     "value": "img:4"}])
    assert jp.spec.template.spec.containers[0].image == "img:4"


def test_generation_and_observed_generation(api_only):
    apps = api_only.apps()
    ns = api_only.create_namespace()
    created = apps.create_namespaced_deployment(ns, deployment("web"))
    assert created.metadata.generation == 1
    wait_for(lambda: apps.read_namespaced_deployment_status("web", ns).status.observed_generation
             == 1, what="observedGeneration 1")
    labelled = apps.patch_namespaced_deployment("web", ns, {"metadata": {"labels": {"x": "y"}}})
    assert labelled.metadata.generation == 1  # metadata changes leave generation alone
    bumped = apps.patch_namespaced_deployment("web", ns, {"spec": {"replicas": 2}})
    assert bumped.metadata.generation == 2
    done = wait_for(lambda: apps.read_namespaced_deployment("web", ns), what="deployment")
    wait_for(lambda: apps.read_namespaced_deployment("web", ns).status.observed_generation == 2,
             what="observedGeneration 2")
    assert done.metadata.generation == 2
    # Writes to the main resource cannot change status.
    current = apps.read_namespaced_deployment("web", ns)
    current.status.observed_generation = 99
    replaced = apps.replace_namespaced_deployment("web", ns, current)
    assert replaced.status.observed_generation != 99


def test_watch_streams_changes_and_expired_versions_get_410(api_only):
    core = api_only.core()
    ns = api_only.create_namespace()
    listing = core.list_namespaced_config_map(ns)
    seen: list[tuple[str, str]] = []

    def consume() -> None:
        w = watch.Watch()
        for event in w.stream(core.list_namespaced_config_map, ns,
                              resource_version=listing.metadata.resource_version,
                              label_selector="keep=yes", timeout_seconds=5,
                              _request_timeout=10):
            seen.append((event["type"], event["object"].metadata.name))
            if len(seen) == 3:
                w.stop()

    thread = threading.Thread(target=consume)
    thread.start()
    meta = client.V1ObjectMeta(name="a", labels={"keep": "yes"})
    core.create_namespaced_config_map(ns, client.V1ConfigMap(metadata=meta, data={"k": "1"}))
    core.create_namespaced_config_map(ns, client.V1ConfigMap(
        metadata=client.V1ObjectMeta(name="other", labels={"keep": "no"})))
    core.patch_namespaced_config_map("a", ns, {"data": {"k": "2"}})
    core.delete_namespaced_config_map("a", ns)
    thread.join(10)
    assert seen == [("ADDED", "a"), ("MODIFIED", "a"), ("DELETED", "a")]

    old = listing.metadata.resource_version
    api_only.compact()
    with pytest.raises(client.ApiException) as gone:
        for _ in watch.Watch().stream(core.list_namespaced_config_map, ns,
                                      resource_version=old, timeout_seconds=2):
            pass
    assert gone.value.status == 410


def test_watch_ends_after_timeout_seconds(api_only):
    core = api_only.core()
    ns = api_only.create_namespace()
    events = list(watch.Watch().stream(core.list_namespaced_pod, ns, timeout_seconds=1,
                                       _request_timeout=5))
    assert events == []


def test_label_and_field_selectors(api_only):
    core = api_only.core()
    ns = api_only.create_namespace()
    for name, tier in (("a", "web"), ("b", "db"), ("c", "cache")):
        core.create_namespaced_config_map(ns, client.V1ConfigMap(
            metadata=client.V1ObjectMeta(name=name, labels={"tier": tier})))

    def names(**kw: str) -> list[str]:
        return [i.metadata.name for i in core.list_namespaced_config_map(ns, **kw).items]

    assert names(label_selector="tier=web") == ["a"]
    assert names(label_selector="tier!=web") == ["b", "c"]
    assert names(label_selector="tier in (db,cache)") == ["b", "c"]
    assert names(field_selector="metadata.name=b") == ["b"]


def test_discovery_documents(api_only):
    api = api_only.api_client()
    groups = client.ApisApi(api).get_api_versions()
    assert "apps" in [g.name for g in groups.groups]
    resources = client.AppsV1Api(api).get_api_resources()
    assert {"deployments", "deployments/status", "replicasets"} <= {
        r.name for r in resources.resources}
    assert client.VersionApi(api).get_code().git_version.startswith("v1.")


def test_progress_deadline_exceeded_when_pods_never_become_available(api_only):
    apps = api_only.apps()
    ns = api_only.create_namespace()
    apps.create_namespaced_deployment(ns, deployment("stuck", progressDeadlineSeconds=1))

    def progressing_reason():
        d = apps.read_namespaced_deployment("stuck", ns)
        cond = next((c for c in d.status.conditions or [] if c.type == "Progressing"), None)
        return cond.reason if cond and cond.reason == "ProgressDeadlineExceeded" else None

    wait_for(progressing_reason, timeout=10, what="ProgressDeadlineExceeded")
    d = apps.read_namespaced_deployment("stuck", ns)
    available = next(c for c in d.status.conditions if c.type == "Available")
    assert available.status == "False"
    assert d.status.unavailable_replicas == 1


def test_deleting_a_deployment_garbage_collects_its_replicasets_and_pods(api_only):
    apps, core = api_only.apps(), api_only.core()
    ns = api_only.create_namespace()
    apps.create_namespaced_deployment(ns, deployment("web"))
    wait_for(lambda: core.list_namespaced_pod(ns).items, what="a pod")
    apps.delete_namespaced_deployment("web", ns)
    wait_for(lambda: not apps.list_namespaced_replica_set(ns).items
             and not core.list_namespaced_pod(ns).items, what="garbage collection")


def test_namespace_deletion_removes_its_contents(api_only):
    core = api_only.core()
    ns = api_only.create_namespace()
    # A finalizer holds the ConfigMap (and so the namespace) until it is removed.
    core.create_namespaced_config_map(ns, client.V1ConfigMap(
        metadata=client.V1ObjectMeta(name="c", finalizers=["example.com/hold"])))
    core.delete_namespace(ns)
    assert core.read_namespace(ns).status.phase == "Terminating"
    with pytest.raises(client.ApiException) as forbidden:
        core.create_namespaced_config_map(ns, client.V1ConfigMap(
            metadata=client.V1ObjectMeta(name="d")))
    assert forbidden.value.status == 403
    held = wait_for(lambda: core.read_namespaced_config_map("c", ns).metadata.deletion_timestamp,
                    what="the ConfigMap marked for deletion")
    assert held
    core.patch_namespaced_config_map("c", ns, {"metadata": {"finalizers": None}})
    wait_for(lambda: ns not in [n.metadata.name for n in core.list_namespace().items],
             what="namespace removal")


def test_scale_subresource_and_replicaset_count(api_only):
    apps = api_only.apps()
    ns = api_only.create_namespace()
    apps.create_namespaced_deployment(ns, deployment("web"))
    # A ReplicaSet is readable by the typed client from the moment it exists (status.replicas).
    wait_for(lambda: apps.list_namespaced_replica_set(ns).items, what="a ReplicaSet")
    apps.patch_namespaced_deployment_scale("web", ns, {"spec": {"replicas": 3}})
    assert apps.read_namespaced_deployment("web", ns).spec.replicas == 3
    wait_for(lambda: [rs.spec.replicas for rs in apps.list_namespaced_replica_set(ns).items]
             == [3], what="the ReplicaSet scaled to 3")


def test_pod_log_accept_is_negotiated_like_the_real_api_server(api_only):
    """kube-apiserver negotiates GET pods/log against its serializers although the body is
    text: `Accept: text/plain` alone gets 406 (devloop showed no log line on real clusters)."""
    core = api_only.core()
    ns = api_only.create_namespace()
    core.create_namespaced_pod(ns, {"metadata": {"name": "p"}, "spec": {
        "containers": [{"name": "c", "image": "img:1"}]}})
    url = f"{api_only.http_url}/api/v1/namespaces/{ns}/pods/p/log"

    def status_for(accept: str | None) -> tuple[int, dict]:
        response = requests.get(url, headers={"Authorization": f"Bearer {api_only.token}",
                                              "Accept": accept}, timeout=5)
        return response.status_code, response.json()

    # Codes and messages as measured on a kube-apiserver 1.36 (two layers refuse: the route
    # match, then the serializer negotiation; see tests/kube_standin/negotiation.py).
    for refused in ("text/plain", "text/plain, application/xml",
                    "application/json;as=Table;g=meta.k8s.io;v=v1",
                    "application/yaml;stream=watch"):
        code, body = status_for(refused)
        assert (code, body["reason"], body["message"]) == (
            406, "NotAcceptable", "only the following media types are accepted: "
            "application/json, application/yaml, application/vnd.kubernetes.protobuf"), refused
    for refused in ("text/*", "*", "application/*", "application/cbor", "application/JSON"):
        code, body = status_for(refused)
        assert (code, body["reason"], body["message"]) == (
            406, "NotAcceptable", "406: Not Acceptable\n\nAvailable representations: "
            "text/plain, application/json, application/yaml, application/vnd.kubernetes.protobuf"
        ), refused
    # Accepted: the request reaches the log itself (400: the container never started here).
    for accepted in (None, "*/*", "application/json", "application/yaml",
                     "application/json; charset=utf-8", "application/json;stream=watch",
                     "text/plain, application/json", "application/json, */*",
                     "text/plain;q=0.9, */*;q=0.1",
                     "text/plain;q=1, application/vnd.kubernetes.protobuf;q=0.5"):
        code, body = status_for(accepted)
        assert (code, body["reason"]) == (400, "BadRequest"), accepted
        assert "is waiting to start" in body["message"]


def test_status_writes_bump_the_resource_version_and_unchanged_ones_do_not(api_only):
    """Controllers write a new Deployment's status several times, each write a new
    resourceVersion (a racing patch with a precondition gets 409); writing the same status
    again is skipped as by the real API server, so an idle Deployment keeps its version."""
    apps = api_only.apps()
    ns = api_only.create_namespace()
    created = apps.create_namespaced_deployment(ns, deployment("web"))
    versions: list[int] = []

    def watch_status() -> None:
        w = watch.Watch()
        for event in w.stream(apps.list_namespaced_deployment, ns,
                              resource_version=created.metadata.resource_version,
                              timeout_seconds=4, _request_timeout=10):
            versions.append(int(event["object"].metadata.resource_version))

    thread = threading.Thread(target=watch_status)
    thread.start()
    thread.join(15)
    assert len(versions) >= 2, versions  # status written more than once after create
    assert versions == sorted(set(versions)), versions  # every write a new version
    # Written back as read (the Python client would re-spell timestamps as +00:00).
    url = f"{api_only.http_url}/apis/apps/v1/namespaces/{ns}/deployments/web/status"
    auth = {"Authorization": f"Bearer {api_only.token}"}
    settled = requests.get(url, headers=auth, timeout=5).json()
    same = requests.put(url, json=settled, headers=auth, timeout=5).json()
    version = settled["metadata"]["resourceVersion"]
    assert same["metadata"]["resourceVersion"] == version
    # The controller reconciles at least every second: idle, it writes nothing new.
    time.sleep(2.5)
    idle = apps.read_namespaced_deployment("web", ns).metadata.resource_version
    assert idle == version
    # Positive control: the controller is alive and a real change is a new version.
    apps.patch_namespaced_deployment_scale("web", ns, {"spec": {"replicas": 2}})
    wait_for(lambda: apps.read_namespaced_deployment("web", ns).status.observed_generation == 2,
             what="observedGeneration 2")
    assert int(apps.read_namespaced_deployment("web", ns).metadata.resource_version) > int(idle)

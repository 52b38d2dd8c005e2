"""ConfigMaps and Secrets consumed by pods as the kubelet does it: env (valueFrom, envFrom),
optional references, files in volumes that follow the object when it changes, and the kubelet's
CreateContainerConfigError for a missing key."""

from __future__ import annotations

import pytest
from kubernetes import client

from tests.kube_standin.fixtures import wait_for

pytestmark = pytest.mark.docker


def container_status(core: client.CoreV1Api, name: str, ns: str) -> client.V1ContainerStatus:
    statuses = core.read_namespaced_pod(name, ns).status.container_statuses
    return statuses[0] if statuses else None


def test_volume_files_follow_the_object_and_optional_refs_may_be_missing(standin,
                                                                         busybox_image):
    core = standin.core()
    ns = standin.create_namespace()
    core.create_namespaced_config_map(ns, {"metadata": {"name": "app"},
                                           "data": {"mode": "one", "LEVEL": "info"}})
    core.create_namespaced_secret(ns, {"metadata": {"name": "creds"},
                                       "stringData": {"token": "t0"}})
    core.create_namespaced_pod(ns, {"metadata": {"name": "reader"}, "spec": {
        "terminationGracePeriodSeconds": 1,
        "containers": [{
            "name": "main", "image": busybox_image, "imagePullPolicy": "Never",
            "command": ["sh", "-c", "echo level=$LEVEL extra=${EXTRA:-none}; exec sleep 3600"],
            "envFrom": [{"configMapRef": {"name": "app"}},
                        {"secretRef": {"name": "absent", "optional": True}}],
            "env": [{"name": "EXTRA", "valueFrom": {"configMapKeyRef": {
                "name": "app", "key": "nope", "optional": True}}}],
            "volumeMounts": [{"name": "conf", "mountPath": "/etc/app"},
                             {"name": "creds", "mountPath": "/etc/creds"},
                             {"name": "maybe", "mountPath": "/etc/maybe"}]}],
        "volumes": [{"name": "conf", "configMap": {"name": "app"}},
                    {"name": "creds", "secret": {"secretName": "creds"}},
                    {"name": "maybe", "configMap": {"name": "absent", "optional": True}}]}})
    wait_for(lambda: (s := container_status(core, "reader", ns)) and s.state.running, 60,
             what="the pod running despite the missing optional references")
    assert core.read_namespaced_pod_log("reader", ns).strip() == "level=info extra=none"
    (container,) = standin.containers(ns)

    def cat(path: str) -> str:
        return container.exec_run(["cat", path]).output.decode()

    assert cat("/etc/app/mode") == "one" and cat("/etc/creds/token") == "t0"
    core.patch_namespaced_config_map("app", ns, {"data": {"mode": "two"}})
    core.patch_namespaced_secret("creds", ns, {"stringData": {"token": "t1"}})
    wait_for(lambda: cat("/etc/app/mode") == "two" and cat("/etc/creds/token") == "t1", 60,
             what="the mounted files updated in the running container")
    assert container_status(core, "reader", ns).restart_count == 0  # files change, no restart


def test_a_missing_key_is_create_container_config_error_until_it_exists(standin, busybox_image):
    core = standin.core()
    ns = standin.create_namespace()
    core.create_namespaced_config_map(ns, {"metadata": {"name": "app"}, "data": {"a": "1"}})
    core.create_namespaced_pod(ns, {"metadata": {"name": "strict"}, "spec": {
        "terminationGracePeriodSeconds": 1,
        "containers": [{"name": "main", "image": busybox_image, "imagePullPolicy": "Never",
                        "command": ["sh", "-c", "echo b=$B; exec sleep 3600"],
                        "env": [{"name": "B", "valueFrom": {"configMapKeyRef": {
                            "name": "app", "key": "b"}}}]}]}})

    def waiting():
        s = container_status(core, "strict", ns)
        return s and s.state.waiting and s.state.waiting.reason == "CreateContainerConfigError" \
            and s.state.waiting

    state = wait_for(waiting, 60, what="CreateContainerConfigError")
    assert state.message == f"couldn't find key b in ConfigMap {ns}/app"
    assert core.read_namespaced_pod("strict", ns).status.phase == "Pending"
    core.patch_namespaced_config_map("app", ns, {"data": {"b": "2"}})
    wait_for(lambda: (s := container_status(core, "strict", ns)) and s.state.running, 60,
             what="the container started once the key exists")
    wait_for(lambda: core.read_namespaced_pod_log("strict", ns).strip() == "b=2", 30,
             what="the key's value in the environment")

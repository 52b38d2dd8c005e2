"""The stand-in's node on its own Docker Engine: it runs what it pulls from a real registry,
and a failed pull reads as a kubelet's ErrImagePull / ImagePullBackOff."""

from __future__ import annotations

import base64
import json
import uuid

import docker
import pytest

from devloop.deploy.delivery import RegistryDelivery
from tests.conftest import busybox_context
from tests.kube_standin.fixtures import build_image, wait_for
from tests.registry.conftest import PASSWORD, USER, docker_config

# one private node engine for this and test_lumina_registry.py: one worker (see there)
pytestmark = [pytest.mark.docker, pytest.mark.xdist_group("node")]


def deployment(name: str, image: str) -> dict:
    labels = {"app": name}
    return {"metadata": {"name": name, "labels": labels},
            "spec": {"replicas": 1, "selector": {"matchLabels": labels},
                     "template": {"metadata": {"labels": labels},
                                  "spec": {"containers": [{"name": "main", "image": image,
                                                           "command": ["sleep", "3600"]}]}}}}


def waiting(core, namespace: str) -> tuple[str, str] | None:
    for pod in core.list_namespaced_pod(namespace).items:
        for status in pod.status.container_statuses or []:
            if status.state.waiting:
                return status.state.waiting.reason, status.state.waiting.message or ""
    return None


def test_node_runs_the_pushed_digest_it_pulled(busybox_image, registry, node_standin,
                                               private_engine, docker_client):
    local = f"dltest-{uuid.uuid4().hex[:6]}/node:dl-1"
    docker_client.images.get(busybox_image).tag(local)
    try:
        ref = RegistryDelivery(registry.host).deliver(local)
    finally:
        docker_client.images.remove(local)
    node = docker.DockerClient(base_url=private_engine.url)
    assert not [t for i in node.images.list() for t in i.tags if "node" in t]  # nothing yet
    ns = node_standin.create_namespace()
    node_standin.apps().create_namespaced_deployment(ns, deployment("app", ref))
    core = node_standin.core()

    def running():
        pods = core.list_namespaced_pod(ns).items
        return [s for p in pods for s in p.status.container_statuses or [] if s.ready]

    status = wait_for(running, 90, what="the pod to run on the node engine")[0]
    cid = status.container_id.removeprefix("docker://")
    assert node.containers.get(cid).status == "running"
    assert status.image_id.endswith(ref.split("@")[1]) or ref.split("@")[1] in str(
        node.images.get(ref).attrs.get("RepoDigests"))
    try:
        docker_client.containers.get(cid)
        raise AssertionError("the pod's container is on devloop's engine")
    except docker.errors.NotFound:
        pass
    node.close()


def test_failed_pull_is_err_image_pull_then_back_off_with_the_registry_message(
        registry, node_standin):
    ns = node_standin.create_namespace()
    missing = f"{registry.host}/nothing/here:dl-0"
    node_standin.apps().create_namespaced_deployment(ns, deployment("gone", missing))
    core = node_standin.core()

    def pull_error() -> tuple[str, str] | None:
        now = waiting(core, ns)
        return now if now and now[0] == "ErrImagePull" else None

    _, message = wait_for(pull_error, 60, what="ErrImagePull")
    assert missing in message and ("manifest unknown" in message or "not found" in message)
    wait_for(lambda: (waiting(core, ns) or ("",))[0] == "ImagePullBackOff", 60,
             what="ImagePullBackOff")


def test_node_pulls_from_the_tls_auth_registry_with_the_pods_pull_secret(
        tls_registry, node_standin, docker_client, tmp_path, monkeypatch):
    """TLS (a CA made here) and htpasswd: devloop pushes with the user's Docker credentials,
    the node pulls with the pod's imagePullSecrets, as a kubelet does; without them the pull
    is refused with the registry's words."""
    monkeypatch.setenv("DOCKER_CONFIG", str(docker_config(tmp_path / "dockercfg",
                                                          tls_registry.host, USER, PASSWORD)))
    # an image no engine has seen: the node's engine finds a present image by its digest
    # under any name, and IfNotPresent would then run it without asking the registry
    local = f"dltest-{uuid.uuid4().hex[:6]}/private:dl-1"
    ctx = busybox_context(tmp_path / "private", {"src/id.txt": uuid.uuid4().hex},
                          cmd='["sleep","3600"]')
    build_image(docker_client, path=str(ctx), tag=local, rm=True, network_mode="none")
    try:
        ref = RegistryDelivery(tls_registry.host).deliver(local)
    finally:
        docker_client.images.remove(local)
    ns = node_standin.create_namespace()
    core, apps = node_standin.core(), node_standin.apps()

    def state(app: str):
        pods = core.list_namespaced_pod(ns, label_selector=f"app={app}").items
        return [s for p in pods for s in p.status.container_statuses or []]

    apps.create_namespaced_deployment(ns, deployment("anon", ref))
    refused = wait_for(lambda: [s.state.waiting for s in state("anon") if s.state.waiting
                                and s.state.waiting.reason == "ErrImagePull"], 60,
                       what="ErrImagePull without credentials")[0]
    assert "auth" in refused.message.lower() or "unauthorized" in refused.message.lower()

    token = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    config = json.dumps({"auths": {tls_registry.host: {"auth": token}}})
    core.create_namespaced_secret(ns, {
        "metadata": {"name": "pull"}, "type": "kubernetes.io/dockerconfigjson",
        "data": {".dockerconfigjson": base64.b64encode(config.encode()).decode()}})
    with_secret = deployment("authed", ref)
    with_secret["spec"]["template"]["spec"]["imagePullSecrets"] = [{"name": "pull"}]
    apps.create_namespaced_deployment(ns, with_secret)
    wait_for(lambda: any(s.ready for s in state("authed")), 90, what="the authed pod ready")

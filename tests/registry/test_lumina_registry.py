"""The Lumina stack (this repo's chart and backend) through a real registry onto a node that
shares nothing with devloop's Docker Engine (issue 20).

Real `devloop sync` / `devloop watch` processes on a copy of the repo, Debian's docker-registry
on a loopback port, and the stand-in whose pods run on a private dockerd that gets images only
by pulling them. Only the backend runs (the chart's chatbot and frontend at 0 replicas): the
registry path is the same for every image, and CI time is not. Nothing is mocked.
"""

from __future__ import annotations

import json
import secrets
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import docker
import docker.errors
import jsonschema
import pytest

from tests.conftest import remove_tags_naming
from tests.e2e.lumina import (
    REPO,
    DevloopProcess,
    LuminaCluster,
    SyncResult,
    copy_stack,
    prepare_images,
    replace_text,
    run_sync,
    set_live_update,
    settled,
    stack_env,
)
from tests.kube_standin.fixtures import wait_for
from tests.kube_standin.kubeconfig import CONTEXT
from tests.kube_standin.standin import StandIn
from tests.registry.conftest import USER, docker_config
from tests.registry.servers import PrivateEngine, Registry

# one worker runs every test of the private node engine (a second dockerd, pulled into from
# empty) and this module's stack: each worker would start its own and push and pull it all
pytestmark = [pytest.mark.docker, pytest.mark.timeout(900), pytest.mark.xdist_group("node")]
SCHEMA = jsonschema.Draft202012Validator(json.loads(
    resources.files("devloop").joinpath("schemas/event-v1.json").read_text()))
HEALTH = "services/backend/app/routes/health.py"
REQUIREMENTS = "services/backend/requirements.txt"
# The backend's image under a name of this run's own: other stacks on the shared engine build
# the same `lumina-backend:dl-` tags and prune theirs (whose pods there use them; ours run on
# the node) at any time. The build cache is shared all the same.
IMAGE = f"dltest-backend-node{secrets.token_hex(3)}"


@dataclass
class NodeStack:
    lumina: LuminaCluster
    registry: Registry
    node: docker.DockerClient  # the node's engine (the private dockerd)
    local: docker.DockerClient  # devloop's engine
    first: SyncResult  # the first `devloop sync -s backend`: every layer pushed, then pulled


def backend_only(repo: Path, default_repo: str) -> None:
    """The copied devloop.yaml delivers through `default_repo`; the chart runs the backend (as
    IMAGE), and nothing is forwarded to a host port."""
    (repo / "backend-only.yaml").write_text(
        f"chatbot: {{replicas: 0}}\nfrontend: {{replicas: 0}}\n"
        f"backend: {{image: {{repository: {IMAGE}}}}}\n")
    config = repo / "devloop.yaml"
    text = config.read_text().replace("values_files: [k8s/secrets.yaml]",
                                      "values_files: [k8s/secrets.yaml, backend-only.yaml]", 1)
    text = text.replace("    image: lumina-backend\n", f"    image: {IMAGE}\n", 1)
    # no host port: other stacks on this machine may forward 8000 (the test asks from inside)
    text = text.replace("    port_forwards: [8000]", "    # port_forwards: [8000]", 1)
    config.write_text(text + f"\ndelivery: registry\ndefault_repo: {default_repo}\n")


@pytest.fixture(scope="module")
def stack(private_engine: PrivateEngine, docker_client: docker.DockerClient
          ) -> Iterator[NodeStack]:
    prepare_images(docker_client)
    work = Path(tempfile.mkdtemp(prefix="devloop-reg-lumina-"))
    registry = Registry(work / "registry").start()
    repo = copy_stack(work / "repo")
    backend_only(repo, registry.host)
    node = docker.DockerClient(base_url=private_engine.url, max_pool_size=64)
    # probes at half the chart's timings: at 0.1x a backend starting on a loaded 2-core machine
    # (cpu limit 500m) misses its liveness probe and is killed (137) before it ever serves
    server = StandIn(work / "standin", docker_client=node, node_docker=private_engine.url,
                     probe_time_scale=0.5, ephemeral_volumes=True,
                     volume_prefix=f"reglum-{secrets.token_hex(3)}-pvc")
    kubeconfig = server.start()
    lumina = LuminaCluster(repo, kubeconfig, CONTEXT,
                           stack_env(kubeconfig, work / "cache", offline=True), node,
                           standin=True)
    try:
        first = run_sync(lumina, "-s", "backend", timeout=600)
        yield NodeStack(lumina, registry, node, docker_client, first)
    finally:
        lumina.stop()
        server.stop(keep_pods=False, remove_volumes=True)
        node.close()
        registry.stop()
        remove_tags_naming(docker_client, IMAGE)  # this run's tags, pushed ones too
        shutil.rmtree(work, ignore_errors=True)


def watch_backend(lumina: LuminaCluster) -> DevloopProcess:
    """`devloop watch -s backend`, waited for until the backend is deployed and ready."""
    watch = DevloopProcess(lumina.devloop("watch", "-s", "backend", "--no-ui"))
    lumina.watch = watch
    lumina.outputs.append(watch)
    watch.wait(lambda e: settled(e, "backend"), timeout=600, what="backend settled")
    lumina.wait_ready(("backend",))
    return watch


def of(events: list[dict[str, Any]], type: str) -> list[dict[str, Any]]:
    return [e for e in events if e.get("type") == type and e.get("service") == "backend"]


def running(stack: NodeStack) -> tuple[str, str, str]:
    """(pod UID, its container ID on the node, the Deployment's image) of the ready pod."""
    stack.lumina.wait_ready(("backend",))
    (pod,) = [p for p in stack.lumina.pods("backend")
              if all(c.ready for c in p.status.container_statuses or [])]
    cid = pod.status.container_statuses[0].container_id.removeprefix("docker://")
    return pod.metadata.uid, cid, stack.lumina.image("backend")


def pulled_by_digest(stack: NodeStack, ref: str) -> None:
    """The node runs `ref` (`repo:tag@sha256:...`) as pulled from the registry: the registry
    serves that digest for the tag, the pod's container runs an image the node pulled under it,
    and no such container exists on devloop's engine (nothing there to take a shortcut to)."""
    name_tag, digest = ref.split("@")
    repository = name_tag.rsplit(":", 1)[0]
    assert stack.registry.manifest_digest(IMAGE, name_tag.rsplit(":", 1)[1]) == digest
    _, cid, image = running(stack)
    assert image == ref
    container = stack.node.containers.get(cid)
    assert container.status == "running"
    assert f"{repository}@{digest}" in stack.node.images.get(container.image.id).attrs[
        "RepoDigests"]
    with pytest.raises(docker.errors.NotFound):
        stack.local.containers.get(cid)


def health(stack: NodeStack) -> dict[str, Any]:
    return stack.lumina.backend_call("GET", "/api/health") or {}


def layers(client: docker.DockerClient, tag: str) -> set[str]:
    return set(client.images.get(tag).attrs["RootFS"]["Layers"])


def built_tag(events: list[dict[str, Any]]) -> str:
    return [e["image"] for e in events if e.get("type") in ("build.finished", "build.skipped")
            and e.get("service") == "backend"][-1]


def dependency_change(stack: NodeStack, pin: str) -> None:
    """requirements.txt as in the repo plus one pinned package (its wheel is in wheels/): the
    dependency layers are rebuilt, the base image's and the sources' are not."""
    text = (REPO / REQUIREMENTS).read_text()
    path = stack.lumina.repo / REQUIREMENTS
    replace_text(path, path.read_text(), text + f"{pin}  # pinned: a dependency of fastapi\n")


def test_sync_runs_the_backend_on_a_node_that_pulled_it_from_the_registry_by_digest(stack):
    first = stack.first
    assert first.code == 0, first.text[-3000:]
    (delivered,) = of(first.events, "deliver.finished")
    SCHEMA.validate(delivered)
    assert delivered["method"] == "registry" and delivered["registry"] == stack.registry.host
    assert delivered["layers_present"] == 0 and delivered["layers_pushed"] >= 5  # a new registry
    ref = delivered["image"]
    assert ref.startswith(f"{stack.registry.host}/{IMAGE}:dl-")
    assert ref.endswith("@" + delivered["digest"])
    assert [e["image"] for e in of(first.events, "deploy.patched")] == [ref]
    assert of(first.events, "rollout.ready")
    if stack.lumina.image("backend") == ref:  # a later test may have deployed a newer one
        pulled_by_digest(stack, ref)
    assert health(stack).get("status") == "ok"  # the API answers from the node
    status = run_sync(stack.lumina, "-s", "backend", command="status")
    (row,) = json.loads(status.text)["services"]
    assert row["registry"] == stack.registry.host
    assert row["image_digest"] == stack.lumina.image("backend").split("@")[1]


def test_a_dependency_change_pushes_only_the_layers_that_changed(stack):
    _, _, before = running(stack)
    old = layers(stack.local, before.split("@")[0])
    dependency_change(stack, "anyio==4.16.0")
    done = run_sync(stack.lumina, "-s", "backend", timeout=600)
    assert done.code == 0, done.text[-3000:]
    (delivered,) = of(done.events, "deliver.finished")
    SCHEMA.validate(delivered)
    new = layers(stack.local, built_tag(done.events))
    changed, kept = new - old, new & old
    assert changed and kept  # the venv was rebuilt; the base image and the sources were not
    assert (delivered["layers_pushed"], delivered["layers_present"]) == (len(changed), len(kept))
    assert delivered["bytes_pushed"] < stack.first.of("deliver.finished")[0]["bytes_pushed"]
    pulled_by_digest(stack, delivered["image"])
    assert health(stack).get("status") == "ok"


def test_the_registry_dying_mid_push_is_said_once_and_retried_until_it_is_back(stack):
    set_live_update(stack.lumina.repo, enabled=False)  # a dependency change rebuilds
    done = threading.Event()
    killed = threading.Event()

    def kill_mid_push() -> None:  # the first blob upload has begun: the registry dies
        while not done.wait(0.005):
            if stack.registry.uploading(IMAGE):
                stack.registry.kill()
                killed.set()
                return

    try:
        watch = watch_backend(stack.lumina)
        uid, _, before = running(stack)
        threading.Thread(target=kill_mid_push, daemon=True).start()
        mark = watch.mark()
        dependency_change(stack, "starlette==1.10.0")

        def failed_attempts() -> int:
            finished = watch.since(mark, "reload.finished")
            if other := [e for e in finished if e["outcome"] != "registry_unreachable"]:
                raise AssertionError(f"not a registry outage: {other[0]}")  # nor its retry
            return len(finished)

        wait_for(lambda: failed_attempts() >= 2, 600, 0.1,  # no save between the two
                 "the failed push, and a second attempt on its own")
        assert killed.is_set()
        errors = [e["message"] for e in watch.since(mark, "error")]
        assert len(errors) == 1, errors  # one line for the outage, not one per attempt
        assert stack.registry.host in errors[0] and "\n" not in errors[0]
        assert "unreachable" in errors[0] and "retries by itself" in errors[0]
        assert running(stack)[0] == uid and stack.lumina.image("backend") == before

        stack.registry.start()  # back on the same port, with what it stored
        patched = watch.wait(lambda e: e.get("type") == "deploy.patched", timeout=120,
                             what="the push after the registry came back", after=mark)
        watch.wait(lambda e: e.get("type") == "rollout.ready", timeout=300, what="rollout",
                   after=mark)
        pulled_by_digest(stack, patched["image"])
        assert len(watch.since(mark, "error")) == 1
        assert health(stack).get("status") == "ok"
    finally:
        done.set()
        stack.lumina.stop()
        set_live_update(stack.lumina.repo, enabled=True)
        if stack.registry.proc is None:
            stack.registry.start()


def test_a_refused_login_is_one_line_naming_the_registry_and_the_running_image_stays(
        stack, tls_registry, tmp_path):
    uid, cid, before = running(stack)
    config = stack.lumina.repo / "devloop.yaml"
    original, env = config.read_text(), dict(stack.lumina.env)
    config.write_text(original.replace(f"default_repo: {stack.registry.host}",
                                       f"default_repo: {tls_registry.host}"))
    wrong = docker_config(tmp_path / "dockercfg", tls_registry.host, USER, "not-the-password")
    stack.lumina.env["DOCKER_CONFIG"] = str(wrong)
    health_py = stack.lumina.repo / HEALTH
    source = health_py.read_text()
    replace_text(health_py, '"status": "ok"', f'"status": "ok", "v": "{secrets.token_hex(3)}"')
    try:
        done = run_sync(stack.lumina, "-s", "backend", timeout=600)
    finally:
        config.write_text(original)
        stack.lumina.env.clear()
        stack.lumina.env.update(env)
        replace_text(health_py, health_py.read_text(), source)
    assert done.code == 5, done.text[-3000:]
    errors = [e["message"] for e in done.events if e.get("type") == "error"]
    assert len(errors) == 1 and "\n" not in errors[0], errors
    assert tls_registry.host in errors[0] and f"docker login {tls_registry.host}" in errors[0]
    assert "not-the-password" not in done.text
    assert of(done.events, "deploy.patched") == []
    assert running(stack) == (uid, cid, before)  # the same pod runs the same image


def test_watch_live_updates_a_backend_file_over_the_kubernetes_exec_api(stack):
    watch = watch_backend(stack.lumina)
    try:
        uid, cid, image = running(stack)
        mark = watch.mark()
        marker = f"node-{secrets.token_hex(4)}"
        replace_text(stack.lumina.repo / HEALTH, '"status": "ok"',
                     f'"status": "ok", "live": "{marker}"')
        synced = watch.wait(lambda e: e.get("type") == "live.sync.finished", timeout=120,
                            what="backend live sync", after=mark)
        assert synced["method"] == "exec" and synced["files"] == 1  # no Docker API shortcut
        deadline = time.monotonic() + 60
        while health(stack).get("live") != marker:
            assert time.monotonic() < deadline, "the synced code is not served"
            time.sleep(0.2)
        assert running(stack) == (uid, cid, image)  # the same container, no new image
        assert watch.since(mark, "deliver.finished") == []
    finally:
        stack.lumina.stop()

"""devloop through a real registry onto a node that shares nothing with devloop's engine: the
stand-in's pods run on a private dockerd that pulls (real `devloop watch` / `devloop sync`
processes, Debian's docker-registry on a loopback port)."""

from __future__ import annotations

import json
from importlib import resources

import docker
import jsonschema
import pytest

from tests.kube_standin.fixtures import wait_for
from tests.live.test_live_watch import container_id, make_box, status_row, the_pod
from tests.registry.conftest import USER, docker_config
from tests.watchproc import Watch
from tests.workloads.test_workload_kinds_e2e import devloop

pytestmark = pytest.mark.docker
SCHEMA = jsonschema.Draft202012Validator(json.loads(
    resources.files("devloop").joinpath("schemas/event-v1.json").read_text()))


def registry_box(handle, tmp_path, image_prefix, host: str):
    root = make_box(handle, tmp_path, image_prefix)
    with open(root / "devloop.yaml", "a") as f:
        f.write(f"delivery: registry\ndefault_repo: {host}\n")
    return root


def test_watch_pushes_pulls_syncs_over_exec_and_survives_the_registry_going_away(
        node_standin, registry, docker_client, tmp_path, image_prefix):
    root = registry_box(node_standin, tmp_path, image_prefix, registry.host)
    watch = Watch(root, node_standin.kubeconfig)
    try:
        first = watch.wait("deliver.finished", timeout=240)
        assert first["method"] == "registry" and first["registry"] == registry.host
        patched = watch.wait("deploy.patched", timeout=60)
        assert patched["image"] == first["image"]
        assert patched["image"].startswith(f"{registry.host}/{image_prefix}-box:dl-")
        assert patched["image"].endswith(first["digest"])
        watch.wait("rollout.ready", timeout=180)
        watch.wait("log", timeout=60, line="v1 0")
        pod = the_pod(node_standin)
        cid = container_id(pod).removeprefix("docker://")
        assert node_standin.standin.docker().containers.get(cid).status == "running"
        try:  # not on devloop's engine: nothing there to take a shortcut to
            docker_client.containers.get(cid)
            raise AssertionError("the pod's container is on devloop's engine")
        except docker.errors.NotFound:
            pass

        # a source change: live update through the Kubernetes exec API, no push, same pod
        mark = watch.mark()
        (root / "services/box/src/message.txt").write_text("v2\n")
        synced = watch.wait("live.sync.finished", after=mark, timeout=90)
        assert synced["method"] == "exec" and synced["files"] == 1
        wait_for(lambda: any(str(e.get("line", "")).startswith("v2 ")
                             for e in watch.since(mark, "log")), 30, what="v2 served")
        assert the_pod(node_standin).metadata.uid == pod.metadata.uid
        assert watch.since(mark, "deliver.finished") == []

        # a dependency change rebuilds: only the changed layers travel
        mark = watch.mark()
        (root / "services/box/requirements.txt").write_text("nothing==2\n")
        second = watch.wait("deliver.finished", after=mark, timeout=240)
        assert second["layers_present"] >= 2 and 1 <= second["layers_pushed"] <= 2
        assert second["bytes_pushed"] * 20 < first["bytes_pushed"]
        for event in (first, second):
            SCHEMA.validate(event)
        watch.wait("rollout.ready", after=mark, timeout=180)
        running = the_pod(node_standin)
        assert running.spec.containers[0].image == second["image"]

        # the registry goes away: one line naming it, and the running pod stays
        registry.stop()
        mark = watch.mark()
        (root / "services/box/requirements.txt").write_text("nothing==3\n")
        error = watch.wait("error", after=mark, timeout=240)
        assert registry.host in error["message"] and "\n" not in error["message"]
        assert watch.since(mark, "deploy.patched") == []
        assert the_pod(node_standin).metadata.uid == running.metadata.uid
        # ... and comes back: the next save gets through
        registry.start()
        mark = watch.mark()
        (root / "services/box/requirements.txt").write_text("nothing==4\n")
        back = watch.wait("deploy.patched", after=mark, timeout=240)
        watch.wait("rollout.ready", after=mark, timeout=180)
        assert the_pod(node_standin).spec.containers[0].image == back["image"]
        assert registry.manifest_digest(f"{image_prefix}-box", back["image"].split(":")[2]
                                        .split("@")[0]) == back["image"].split("@")[1]
        row = status_row(root, node_standin)  # what runs, and from where
        assert row["registry"] == registry.host
        assert row["image_digest"] == back["image"].split("@")[1]
        assert row["deployed_digest"] and row["stale"] is False
    finally:
        watch.stop()


def test_sync_with_refused_credentials_fails_in_one_line_and_patches_nothing(
        standin, tls_registry, tmp_path, image_prefix, monkeypatch):
    root = registry_box(standin, tmp_path, image_prefix, tls_registry.host)
    config = docker_config(tmp_path / "dockercfg", tls_registry.host, USER, "not-the-password")
    monkeypatch.setenv("DOCKER_CONFIG", str(config))  # devloop_env passes DOCKER_* on
    code, events = devloop(root, standin, "sync")
    errors = [e["message"] for e in events if e["type"] == "error"]
    assert code == 5, events[-5:]
    assert errors and all("\n" not in m for m in errors)
    assert any(tls_registry.host in m and f"docker login {tls_registry.host}" in m
               for m in errors), errors
    assert "not-the-password" not in str(events)
    assert not [e for e in events if e["type"] == "deploy.patched"]
    image = standin.apps().read_namespaced_deployment("box", "lumina").spec.template.spec
    assert image.containers[0].image == "box:none"  # the running image stays

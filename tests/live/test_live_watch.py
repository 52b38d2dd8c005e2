"""Live update (issue 12) with real `devloop watch` processes on the stand-in cluster.

The service is a busybox image whose process prints the content of /app/message.txt every
0.2 s, so new content shows up in its output without any restart: what a synced file changes
is visible in the pod's log, and the pod's UID and container ID tell whether the pod was
replaced. Pods are real Docker containers; the copy goes through the Kubernetes exec API.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import docker
import pytest
from kubernetes import client as k8s
from kubernetes import config as k8s_config

from tests.conftest import busybox_context, devloop_env
from tests.kube_standin.fixtures import wait_for
from tests.kube_standin.kubeconfig import CONTEXT
from tests.watchproc import Watch

NS = "lumina"
LOOP = ('["/bin/sh","-c","i=0; while true; do echo \\"$(cat /app/message.txt) $i\\"; '
        'i=$((i+1)); sleep 0.2; done"]')


def make_box(standin, tmp_path: Path, image_prefix: str, data_mount: bool = False) -> Path:
    root = tmp_path / "repo"
    busybox_context(root / "services/box",
                    {"src/message.txt": "v1\n", "requirements.txt": "nothing==1\n"},
                    extra="COPY requirements.txt /opt/requirements.txt\n", cmd=LOOP)
    (root / "devloop.yaml").write_text(
        f"version: 1\nnamespace: {NS}\nrollout_timeout_s: 90\nquiet_period_ms: 50\n"
        f"services:\n  box:\n    context: services/box\n    image: {image_prefix}-box\n")
    api = k8s_config.new_client_from_config(str(standin.kubeconfig), context=CONTEXT,
                                            persist_config=False)
    k8s.CoreV1Api(api).create_namespace({"metadata": {"name": NS}})
    spec: dict = {"containers": [{"name": "box", "image": "box:none"}]}
    if data_mount:
        spec["containers"][0]["volumeMounts"] = [{"name": "data", "mountPath": "/app/data"}]
        spec["volumes"] = [{"name": "data", "emptyDir": {}}]
    k8s.AppsV1Api(api).create_namespaced_deployment(NS, {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "box"},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "box"}},
                 "strategy": {"type": "Recreate"},
                 "template": {"metadata": {"labels": {"app": "box"}}, "spec": spec}}})
    return root


def the_pod(standin) -> k8s.V1Pod:
    pods = [p for p in standin.core().list_namespaced_pod(NS, label_selector="app=box").items
            if p.metadata.deletion_timestamp is None]
    assert len(pods) == 1, [p.metadata.name for p in pods]
    return pods[0]


def container_id(pod: k8s.V1Pod) -> str:
    return pod.status.container_statuses[0].container_id


def exec_in(standin, pod: str, command: list[str]) -> str:
    from kubernetes.stream import stream

    return stream(standin.core().connect_get_namespaced_pod_exec, pod, NS, command=command,
                  stderr=True, stdin=False, stdout=True, tty=False)


@pytest.fixture
def box(standin, tmp_path, image_prefix):
    return make_box(standin, tmp_path, image_prefix)


@contextmanager
def watching(root: Path, standin) -> Iterator[Watch]:
    """A `devloop watch` on `root`, once its first rollout serves v1; stopped afterwards."""
    watch = Watch(root, standin.kubeconfig)
    try:
        watch.wait("rollout.ready", timeout=180)
        watch.wait("log", timeout=60, line="v1 0")
        yield watch
    finally:
        watch.stop()


def test_a_change_is_synced_into_the_running_container_without_a_new_pod(standin, box):
    with watching(box, standin) as watch:
        before = the_pod(standin)
        mark = watch.mark()
        (box / "services/box/src/message.txt").write_text("v2\n")
        done = watch.wait("live.sync.finished", after=mark, timeout=60)
        assert done["files"] == 1 and done["deletes"] == 0 and done["ahead"] == 1
        assert done["pods"] == [before.metadata.name]
        finished = watch.wait("reload.finished", after=mark, outcome="synced")
        assert finished["ok"] is True
        wait_for(lambda: any(str(e.get("line", "")).startswith("v2 ")
                             for e in watch.since(mark, "log")), 30, what="new content served")
        after = the_pod(standin)
        assert after.metadata.uid == before.metadata.uid
        assert container_id(after) == container_id(before)
        assert watch.since(mark, "build.started") == []
        assert watch.since(mark, "deploy.patched") == []
        # the truth is recorded on the pod for `devloop status`
        note = json.loads(after.metadata.annotations["devloop.dev/live"])
        assert note["files"] == 1 and note["containers"]["box"] == container_id(after)


def test_a_deleted_file_disappears_in_the_container(standin, box):
    with watching(box, standin) as watch:
        mark = watch.mark()
        (box / "services/box/src/extra.txt").write_text("extra\n")
        watch.wait("live.sync.finished", after=mark, timeout=60, files=1)
        pod = the_pod(standin).metadata.name
        assert "extra.txt" in exec_in(standin, pod, ["ls", "/app"])
        mark = watch.mark()
        (box / "services/box/src/extra.txt").unlink()
        done = watch.wait("live.sync.finished", after=mark, timeout=60)
        assert done["deletes"] == 1 and done["ahead"] == 0
        listing = exec_in(standin, pod, ["ls", "/app"])
        assert "extra.txt" not in listing and "message.txt" in listing


def test_a_dependency_manifest_change_falls_back_to_a_rebuild(standin, box):
    with watching(box, standin) as watch:
        before = the_pod(standin)
        mark = watch.mark()
        (box / "services/box/requirements.txt").write_text("nothing==2\n")
        rebuild = watch.wait("live.rebuild", after=mark, timeout=60)
        assert "requirements.txt" in rebuild["reason"]
        watch.wait("build.started", after=mark, timeout=60)
        watch.wait("rollout.ready", after=mark, timeout=120)
        assert the_pod(standin).metadata.uid != before.metadata.uid
        assert watch.since(mark, "live.sync.finished") == []
        # positive control on the same watch: a source change is synced again, in place
        mark = watch.mark()
        (box / "services/box/src/message.txt").write_text("v3\n")
        watch.wait("live.sync.finished", after=mark, timeout=60)


def test_a_sync_into_a_volume_mount_is_refused_and_rebuilt(standin, tmp_path, image_prefix):
    root = make_box(standin, tmp_path, image_prefix, data_mount=True)
    with watching(root, standin) as watch:
        mark = watch.mark()
        (root / "services/box/src/data").mkdir()
        (root / "services/box/src/data/seed.txt").write_text("seed\n")
        rebuild = watch.wait("live.rebuild", after=mark, timeout=60)
        assert "/app/data" in rebuild["reason"] and "\n" not in rebuild["reason"]
        watch.wait("build.started", after=mark, timeout=60)
        watch.wait("rollout.ready", after=mark, timeout=120)
        assert watch.since(mark, "live.sync.started") == []


def test_a_restarted_container_gets_the_synced_files_again(standin, box):
    with watching(box, standin) as watch:
        mark = watch.mark()
        (box / "services/box/src/message.txt").write_text("v2\n")
        watch.wait("live.sync.finished", after=mark, timeout=60)
        before = the_pod(standin)
        # the container dies (OOM, crash ...): the kubelet starts a new one from the image
        dockerd = docker.from_env()
        victim = container_id(before).split("://", 1)[1]
        mark = watch.mark()
        dockerd.containers.get(victim).kill()
        again = watch.wait("live.sync.finished", after=mark, timeout=60)
        now = the_pod(standin)
        assert now.metadata.uid == before.metadata.uid
        assert container_id(now) != container_id(before)
        assert again["files"] == 1
        wait_for(lambda: any(str(e.get("line", "")).startswith("v2 ")
                             for e in watch.since(mark, "log")), 30,
                 what="the new container serving the synced content")
        note = json.loads(the_pod(standin).metadata.annotations["devloop.dev/live"])
        assert note["containers"]["box"] == container_id(now) and "syncing" not in note
        assert exec_in(standin, now.metadata.name, ["cat", "/app/message.txt"]) == "v2\n"
        row = status_row(box, standin)
        assert row["stale"] is False and row["live"]["files_ahead"] == 1, row
        # positive control: the next save is synced into the new container, in place
        mark = watch.mark()
        (box / "services/box/src/message.txt").write_text("v3\n")
        watch.wait("live.sync.finished", after=mark, timeout=60)
        assert exec_in(standin, now.metadata.name, ["cat", "/app/message.txt"]) == "v3\n"
        assert the_pod(standin).metadata.uid == now.metadata.uid


def status_row(root: Path, standin) -> dict:
    """`devloop status -o json`'s row for box."""
    env = devloop_env(KUBECONFIG=str(standin.kubeconfig),
                      XDG_CACHE_HOME=str(root.parent / "cache"), HOME=str(root.parent))
    done = subprocess.run([sys.executable, "-m", "devloop.cli", "status", "-o", "json"],
                          cwd=root, env=env, capture_output=True, text=True, timeout=60)
    return json.loads(done.stdout)["services"][0]


def test_sync_after_live_updates_deploys_an_image_of_the_synced_sources(standin, box):
    with watching(box, standin) as watch:
        mark = watch.mark()
        (box / "services/box/src/message.txt").write_text("v2\n")
        watch.wait("live.sync.finished", after=mark, timeout=60)
    before = the_pod(standin)
    row = status_row(box, standin)
    assert row["live"]["files_ahead"] == 1, row
    assert row["stale"] is False and "1 file ahead of the image" in row["state"], row
    env = devloop_env(KUBECONFIG=str(standin.kubeconfig), XDG_CACHE_HOME=str(box.parent / "cache"),
                      HOME=str(box.parent))
    done = subprocess.run([sys.executable, "-m", "devloop.cli", "sync", "-o", "json"], cwd=box,
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:]
    types = [json.loads(line)["type"] for line in done.stdout.splitlines() if line.startswith("{")]
    assert "live.sync.started" not in types and "deploy.patched" in types
    after = the_pod(standin)
    assert after.metadata.uid != before.metadata.uid
    image = after.spec.containers[0].image
    out = docker.from_env().containers.run(image, ["cat", "/app/message.txt"], remove=True,
                                           network_mode="none")
    assert out == b"v2\n"


def test_a_destination_the_container_user_cannot_write_says_which_line_and_rebuilds(
        standin, box):
    # the container runs as uid 1000 while COPY left /app owned by root
    standin.apps().patch_namespaced_deployment("box", NS, {"spec": {"template": {"spec": {
        "securityContext": {"runAsUser": 1000, "runAsGroup": 1000}}}}})
    with watching(box, standin) as watch:
        before = the_pod(standin)
        mark = watch.mark()
        (box / "services/box/src/message.txt").write_text("v2\n")
        failed = watch.wait("live.sync.failed", after=mark, timeout=60)
        assert failed["fallback"] == "rebuild" and "\n" not in failed["reason"]
        assert "services/box/Dockerfile:" in failed["reason"], failed
        assert "--chown=1000" in failed["reason"], failed
        # the same cycle rebuilds: the new content runs, in a new pod
        watch.wait("rollout.ready", after=mark, timeout=120)
        watch.wait("log", after=mark, timeout=60, line="v2 0")
        assert the_pod(standin).metadata.uid != before.metadata.uid
        assert len(watch.since(mark, "reload.started")) == 1


def test_sync_replaces_a_pod_whose_synced_files_were_reverted_locally(standin, box):
    with watching(box, standin) as watch:
        mark = watch.mark()
        (box / "services/box/src/message.txt").write_text("v2\n")
        watch.wait("live.sync.finished", after=mark, timeout=60)
    before = the_pod(standin)
    # the edit is reverted while no watch runs: the image is current again, the pod is not
    (box / "services/box/src/message.txt").write_text("v1\n")
    env = devloop_env(KUBECONFIG=str(standin.kubeconfig), XDG_CACHE_HOME=str(box.parent / "cache"),
                      HOME=str(box.parent))
    done = subprocess.run([sys.executable, "-m", "devloop.cli", "sync", "-o", "json"], cwd=box,
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:]
    events = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    reset = [e for e in events if e["type"] == "live.reset"]
    assert reset and reset[0]["pods"] == [before.metadata.name], events[-10:]
    assert not any(e["type"] == "build.started" for e in events)  # the image was right
    after = wait_for(lambda: (p := [q for q in standin.core().list_namespaced_pod(
        NS, label_selector="app=box").items if q.metadata.deletion_timestamp is None
        and q.metadata.uid != before.metadata.uid]) and p[0], 60, what="a pod of the image")
    assert "devloop.dev/live" not in (after.metadata.annotations or {})
    assert exec_in(standin, after.metadata.name, ["cat", "/app/message.txt"]) == "v1\n"

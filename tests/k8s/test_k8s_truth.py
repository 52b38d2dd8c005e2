"""`sync` and `status` report what the cluster really runs (issue 11, items 1, 2 and 5).

In-process Pipeline + ClusterDeployer + real Docker builds against the Kubernetes API stand-in
(pods are real Docker containers). The cluster is changed behind devloop's back the way
`kubectl set env`, `kubectl set image` and `kubectl rollout undo` do it (same API calls).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker
import pytest

from devloop import events as ev
from devloop import vocab
from devloop.commands.status import collect_status, render_status
from devloop.config.loader import Config, load_config
from devloop.deploy.deployer import ClusterDeployer
from devloop.deploy.patch import DIGEST_ANNOTATION
from devloop.deploy.rollout import wait_rollout
from devloop.image.build import Builder
from devloop.inputs.digest import ServiceDigest, image_tag
from devloop.k8s.cluster import Cluster
from devloop.loop import pipeline as pl
from devloop.redact import Redactor
from tests.conftest import busybox_context
from tests.kube_standin import StandIn

CMD = ('["/bin/sh","-c","[ -n \\"$CRASH\\" ] && echo fatal: bad config && exit 3; '
       'cat /app/message.txt; while true; do sleep 1; done"]')


@dataclass
class Project:
    root: Path
    config: Config
    cluster: Cluster
    bus: ev.EventBus
    events: ev.Recorder
    deployer: ClusterDeployer
    pipeline: pl.Pipeline
    digest: ServiceDigest

    def sync(self) -> vocab.PipelineResult:
        """What `devloop sync --service box` does: full scan, ask the cluster."""
        return self.pipeline.run(self.digest, None, None, threading.Event(), ask_cluster=True)

    def write(self, text: str) -> None:
        (self.root / "services/box/src/message.txt").write_text(text)

    def template(self) -> Any:
        return self.cluster.apps.read_namespaced_deployment("box", self.cluster.namespace
                                                            ).spec.template

    def since(self, mark: int, type: str) -> list[ev.Event]:
        return [e for e in self.events.events[mark:] if e.type == type]


@pytest.fixture
def project(standin: StandIn, cluster: Cluster, tmp_path: Path, image_prefix: str,
            docker_client: docker.DockerClient) -> Iterator[Project]:
    """One busybox service `box` whose Deployment exists; it exits 3 when $CRASH is set.
    keep_images: 1, so pruning is as eager as it gets."""
    root = tmp_path / "repo"
    busybox_context(root / "services/box", {"src/message.txt": "v1\n"}, cmd=CMD)
    (root / "devloop.yaml").write_text(
        f"version: 1\nnamespace: {cluster.namespace}\ncontext: {StandIn.context}\n"
        f"kubeconfig: {standin.kubeconfig}\nkeep_images: 1\nrollout_timeout_s: 60\n"
        f"services:\n  box:\n    context: services/box\n    image: {image_prefix}-box\n")
    cluster.apps.create_namespaced_deployment(cluster.namespace, {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "box"},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "box"}},
                 "template": {"metadata": {"labels": {"app": "box"}}, "spec": {
                     "terminationGracePeriodSeconds": 1,
                     "containers": [{"name": "box", "image": "box:none",
                                     "imagePullPolicy": "IfNotPresent"}]}}}})
    config = load_config(root / "devloop.yaml")
    bus = ev.EventBus()
    events = ev.Recorder(limit=100_000)
    bus.subscribe(events)
    deployer = ClusterDeployer.create(config, bus, Redactor())
    pipeline = pl.Pipeline(bus, Builder(docker_client, keep_images=1), deployer, root=root)
    yield Project(root, config, cluster, bus, events, deployer, pipeline,
                  ServiceDigest(config.services["box"]))
    deployer.close()


def _status(project: Project) -> dict:
    rows, code = collect_status(project.config, services=["box"])
    assert code == 0, rows
    return rows[0]


def test_unchanged_but_crash_looping_is_a_failed_rollout_with_the_last_lines(
        project: Project) -> None:
    assert project.sync().outcome == vocab.OK
    assert project.sync().outcome == vocab.UNCHANGED  # healthy and current: nothing to do
    assert _status(project)["healthy"] is True
    # `kubectl set env deployment/box CRASH=1`: same image, the new pod crash-loops
    project.cluster.apps.patch_namespaced_deployment("box", project.cluster.namespace, {
        "spec": {"template": {"spec": {"containers": [
            {"name": "box", "env": [{"name": "CRASH", "value": "1"}]}]}}}})
    mark = len(project.events.events)
    result = project.sync()
    assert result.outcome == vocab.ROLLOUT_FAILED, result  # sync exits 3, not "image is current"
    assert "deployment/box runs the current image but is not healthy" in result.reason
    [failed] = project.since(mark, ev.ROLLOUT_FAILED)
    assert "fatal: bad config" in failed.data["log_tail"], failed
    assert not project.since(mark, ev.BUILD_STARTED)  # nothing was rebuilt
    row = _status(project)
    assert row["healthy"] is False and row["stale"] is False, row
    assert "fatal: bad config" in row["log_tail"]
    assert "not healthy:" in render_status([row])


def test_an_image_changed_behind_devlops_back_is_stale_and_sync_puts_the_local_one_back(
        project: Project) -> None:
    assert project.sync().outcome == vocab.OK
    old = project.template().spec.containers[0].image
    project.write("v2\n")
    second = project.sync()
    assert second.outcome == vocab.OK
    current = image_tag(project.config.services["box"].image, second.digest)
    assert project.template().spec.containers[0].image == current
    assert _status(project)["state"] == "up to date"

    # `kubectl set image deployment/box box=<the older tag>`: the annotations still say v2
    ns = project.cluster.namespace
    project.cluster.apps.patch_namespaced_deployment("box", ns, {"spec": {"template": {"spec": {
        "containers": [{"name": "box", "image": old}]}}}})
    row = _status(project)
    assert row["stale"] is True and row["deployed_digest"] == old.rsplit("-", 1)[-1], row
    assert "changed outside devloop" in row["state"]
    result = project.sync()
    assert result.outcome == vocab.OK, result  # not "deployed image is current"
    assert project.template().spec.containers[0].image == current
    assert _status(project)["state"] == "up to date"

    # `kubectl rollout undo`: the previous ReplicaSet's template, annotations included, comes back
    sets = project.cluster.apps.list_namespaced_replica_set(ns, label_selector="app=box").items
    previous = next(rs for rs in sets if rs.spec.template.spec.containers[0].image == old
                    and rs.spec.template.metadata.annotations[DIGEST_ANNOTATION][:12]
                    == old.rsplit("-", 1)[-1])  # revision 1 (set image made one more)
    template = project.cluster.apps.api_client.sanitize_for_serialization(previous.spec.template)
    template["metadata"]["labels"].pop("pod-template-hash", None)
    project.cluster.apps.patch_namespaced_deployment("box", ns, {"spec": {"template": template}})
    assert _status(project)["state"] == "local changes not deployed"
    assert project.sync().outcome == vocab.OK
    assert project.template().spec.containers[0].image == current


def test_pruning_keeps_every_image_a_replicaset_still_names(
        project: Project, docker_client: docker.DockerClient, image_prefix: str) -> None:
    images = []
    for text in ("v1", "v2", "v3"):
        # images of this test's own: the same content built by a test beside it (another
        # worker) is the same image, which its pod uses, so devloop rightly keeps it
        project.write(f"{text} {image_prefix}\n")
        assert project.sync().outcome == vocab.OK
        images.append(project.template().spec.containers[0].image)
        if len(images) == 2:  # positive control: an image nothing names is pruned as usual
            repo, _ = images[0].rsplit(":", 1)
            first = docker_client.images.get(images[0])
            first.tag(repo, "dl-000000000000")
    repo = images[0].rsplit(":", 1)[0]

    def local_tags() -> set[str]:
        return {t for img in docker_client.images.list(name=repo) for t in img.tags}

    # Pruning is best effort: an attempt that finds a container still using the image (the v1
    # pod terminating on a loaded machine) or the API too slow to say what ReplicaSets name
    # keeps everything, and devloop prunes again after its next build. Here: ask again, as
    # that build would, and check what is named is kept after every attempt.
    deadline = time.monotonic() + 90
    while f"{repo}:dl-000000000000" in local_tags() and time.monotonic() < deadline:
        assert set(images) <= local_tags(), "keep_images: 1 removed what a ReplicaSet names"
        time.sleep(1)
        project.pipeline.builder.prune("box", keep={images[-1]}, image=repo,
                                       referenced=project.deployer.referenced_images)
    local = local_tags()
    assert set(images) <= local, f"keep_images: 1 must not remove what ReplicaSets name: {local}"
    assert f"{repo}:dl-000000000000" not in local, "an image nothing names was never pruned"
    # `kubectl rollout undo --to-revision=1` then runs, instead of ErrImageNeverPull
    ns = project.cluster.namespace
    patched = project.cluster.apps.patch_namespaced_deployment("box", ns, {"spec": {"template": {
        "spec": {"containers": [{"name": "box", "image": images[0],
                                 "imagePullPolicy": "Never"}]}}}})
    result = wait_rollout(project.cluster.apps, project.cluster.core, ns, "box",
                          patched.metadata.generation, 60, threading.Event(), lambda _: None)
    assert result.ok, result


def test_status_lists_only_the_pods_its_selector_expressions_select(
        standin: StandIn, cluster: Cluster, tmp_path: Path, test_images: dict[str, str]) -> None:
    """Two Deployments share `app: shared` and differ by a matchExpressions term: status must
    not mix their pods (it used to send matchLabels only)."""
    ns = cluster.namespace
    for tier in ("one", "two"):
        labels = {"app": "shared", "tier": tier}
        cluster.apps.create_namespaced_deployment(ns, {
            "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": tier},
            "spec": {"replicas": 1, "selector": {
                "matchLabels": {"app": "shared"},
                "matchExpressions": [{"key": "tier", "operator": "In", "values": [tier]}]},
                "template": {"metadata": {"labels": labels}, "spec": {
                    "terminationGracePeriodSeconds": 1,
                    "containers": [{"name": tier, "image": test_images["sleeper"],
                                    "imagePullPolicy": "IfNotPresent"}]}}}})
        result = wait_rollout(cluster.apps, cluster.core, ns, tier, 1, 60, threading.Event(),
                              lambda _: None)
        assert result.ok, result
    (tmp_path / "one").mkdir()
    (tmp_path / "one/Dockerfile").write_text("FROM scratch\n")
    (tmp_path / "devloop.yaml").write_text(
        f"version: 1\nnamespace: {ns}\ncontext: {StandIn.context}\n"
        f"kubeconfig: {standin.kubeconfig}\nservices:\n  one:\n    context: one\n"
        "    image: dl-one\n")
    rows, code = collect_status(load_config(tmp_path / "devloop.yaml"))
    assert code == 0
    [row] = rows
    assert [p["name"].startswith("one-") for p in row["pods"]] == [True], row["pods"]
    assert row["state"] == "not deployed by devloop" and row["healthy"] is True

"""Manifests whose workload runs a placeholder image (they never name the built one), and a
devloop.yaml that says which workload and container the image feeds: every apply carries the
image devloop deployed there, in this run and in the next one.

Seen in CI: the second `devloop sync` of such a chart applied the placeholder back over the built
image (the apply took back the field devloop's own patch owned), so the workload ran
`placeholder:none` and failed to pull it. In-process ClusterDeployer on the shared stand-in (its
own namespace); a second ClusterDeployer is the next run.
"""

from __future__ import annotations

import threading
from pathlib import Path

import docker

from devloop import events as ev
from devloop.config.loader import load_config
from devloop.deploy.deployer import ClusterDeployer
from devloop.redact import Redactor
from tests.kube_standin import CONTEXT
from tests.kube_standin.fixtures import StandInHandle, busybox_base
from tests.manifests.objects import web_deployment


def test_every_apply_keeps_the_built_image_where_the_manifests_have_a_placeholder(
        shared_standin: StandInHandle, docker_client: docker.DockerClient, image_prefix: str,
        tmp_path: Path) -> None:
    ns = shared_standin.create_namespace()
    repo = f"{image_prefix}-web"
    digest = "4" * 64
    built = f"{repo}:dl-{digest[:12]}"
    docker_client.images.get(busybox_base(docker_client)).tag(*built.split(":"))
    root = tmp_path / "repo"
    (root / "k8s").mkdir(parents=True)
    manifest = root / "k8s/app.yaml"
    manifest.write_text(web_deployment("placeholder:none"))
    (root / "devloop.yaml").write_text(
        f"version: 1\nnamespace: {ns}\ncontext: {CONTEXT}\n"
        f"kubeconfig: {shared_standin.kubeconfig}\nrollout_timeout_s: 60\nmanifests: [k8s]\n"
        f"services:\n  web:\n    context: services/web\n    image: {repo}\n"
        "    deployment: web\n    container: web\n")
    (root / "services/web").mkdir(parents=True)
    (root / "services/web/Dockerfile").write_text("FROM scratch\n")  # never built here
    apps, stop = shared_standin.apps(), threading.Event()

    def running() -> tuple[str, list[str]]:
        container = apps.read_namespaced_deployment("web", ns).spec.template.spec.containers[0]
        return container.image, [e.value for e in container.env or []]

    def run() -> tuple[ClusterDeployer, ev.Recorder]:
        config = load_config(root / "devloop.yaml")
        bus, events = ev.EventBus(), ev.Recorder(limit=10_000)
        bus.subscribe(events)
        return ClusterDeployer.create(config, bus, Redactor()), events

    first, events = run()
    try:
        first.deploy(first.config.services["web"], built, digest, stop)  # installs, then runs it
        assert running() == (built, [])
        manifest.write_text(web_deployment("placeholder:none",
                                           container={"env": [{"name": "A", "value": "1"}]}))
        first.apply_manifests(stop)  # a manifest edit in this run
        assert running() == (built, ["1"])  # the edit went out, with the built image
        assert [e.data["message"] for e in events.events if e.type == ev.MANIFESTS_FAILED] == []
    finally:
        first.close()

    second, events = run()  # the next run, which has deployed nothing yet
    try:
        manifest.write_text(web_deployment("placeholder:none",
                                           container={"env": [{"name": "A", "value": "2"}]}))
        second.apply_manifests(stop)
        assert running() == (built, ["2"])
        assert [e.data["message"] for e in events.events if e.type == ev.MANIFESTS_FAILED] == []
    finally:
        second.close()

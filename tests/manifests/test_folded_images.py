"""An image left to a manifest apply (built while a manifest edit waited) never replaces an image
devloop deployed after it.

Seen in CI: a source edit's image went out (patched) while the apply that carried the previous
image was still waiting for its rollout; when that wait ended, the apply patched its older image
back over the new one, and the edit never ran. In-process ClusterDeployer on the shared stand-in
(its own namespace); the engine's timing is replaced by calling the deployer in the order the
race produced.
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


def test_an_image_left_to_an_apply_never_replaces_a_newer_one(
        shared_standin: StandInHandle, docker_client: docker.DockerClient, image_prefix: str,
        tmp_path: Path) -> None:
    ns = shared_standin.create_namespace()
    repo = f"{image_prefix}-web"
    base = docker_client.images.get(busybox_base(docker_client))
    digests = {n: hex_digit * 64 for n, hex_digit in (("one", "1"), ("two", "2"), ("three", "3"))}
    one, two, three = (f"{repo}:dl-{digests[n][:12]}" for n in ("one", "two", "three"))
    for ref in (one, two, three):  # one image, three names: each name is a new template
        base.tag(*ref.split(":"))
    root = tmp_path / "repo"
    (root / "k8s").mkdir(parents=True)
    (root / "k8s/app.yaml").write_text(web_deployment(repo))
    (root / "devloop.yaml").write_text(
        f"version: 1\nnamespace: {ns}\ncontext: {CONTEXT}\n"
        f"kubeconfig: {shared_standin.kubeconfig}\nrollout_timeout_s: 60\nmanifests: [k8s]\n"
        f"services:\n  web:\n    context: services/web\n    image: {repo}\n")
    (root / "services/web").mkdir(parents=True)
    (root / "services/web/Dockerfile").write_text("FROM scratch\n")  # never built here
    config = load_config(root / "devloop.yaml")
    bus = ev.EventBus()
    events = ev.Recorder(limit=10_000)
    bus.subscribe(events)
    deployer = ClusterDeployer.create(config, bus, Redactor())
    web, stop = config.services["web"], threading.Event()
    apps = shared_standin.apps()

    def running() -> str:
        return apps.read_namespaced_deployment("web", ns).spec.template.spec.containers[0].image

    try:
        deployer.deploy(web, one, digests["one"], stop)  # the first deploy installs the manifests
        assert running() == one
        deployer.images_wait_for_apply.set()  # a manifest edit waits: `two` goes with it
        deployer.deploy(web, two, digests["two"], stop)
        assert running() == one
        deployer.images_wait_for_apply.clear()  # that apply started; then `three` is built
        deployer.deploy(web, three, digests["three"], stop)
        assert running() == three
        mark = len(events.events)
        deployer.apply_manifests(stop)  # ... and the apply ends after it
        assert running() == three
        assert [e.data["image"] for e in events.events[mark:]
                if e.type == ev.DEPLOY_PATCHED] == []

        # positive control: an image left to the apply, and none after it, goes out with it,
        # in the apply itself: the image and digest devloop's own patch of `three` owns
        # (manager devloop, an Update) are taken back, not a conflict
        deployer.images_wait_for_apply.set()
        deployer.deploy(web, two, digests["two"], stop)
        deployer.images_wait_for_apply.clear()
        mark = len(events.events)
        deployer.apply_manifests(stop)
        assert running() == two
        after = events.events[mark:]
        assert [e.data["message"] for e in after if e.type == ev.MANIFESTS_FAILED] == []
        assert [e.type for e in after if e.type in (ev.MANIFESTS_APPLIED, ev.DEPLOY_PATCHED)
                ] == [ev.MANIFESTS_APPLIED]
    finally:
        deployer.close()

"""A manifest edit and a source edit saved together (a `git checkout` of a branch that changes
both) roll the workload once: the apply carries the image just built, instead of an image
patch followed by an apply, each rolling it. Counted as the stand-in's ReplicaSets.

A real `devloop watch` on the stand-in.
"""

from __future__ import annotations

from pathlib import Path

from kubernetes import client as k8s

from tests.conftest import busybox_context
from tests.manifests.objects import web_deployment
from tests.watchproc import Watch

ECHO = "echo MODE=$MODE SRC=$(cat /app/main.txt); trap 'exit 0' TERM; while true; do sleep 1; done"


def _app(mode: str, image: str) -> str:
    return (f"apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: web-config}}\n"
            f"data: {{MODE: {mode}}}\n---\n" + web_deployment(
                image, ECHO, container={"envFrom": [{"configMapRef": {"name": "web-config"}}]}))


CONFIG = """\
version: 1
namespace: {namespace}
quiet_period_ms: 300
manifests: [k8s]
services:
  web:
    context: services/web
    image: {image}
    live_update: false
"""


def _replica_sets(apps: k8s.AppsV1Api, ns: str) -> set[str]:
    return {rs.metadata.name for rs in apps.list_namespaced_replica_set(ns).items
            if any(o.name == "web" for o in rs.metadata.owner_references or [])}


def _project(root: Path, image: str, ns: str) -> None:
    busybox_context(root / "services/web", {"src/main.txt": "one\n"})
    (root / "k8s").mkdir(parents=True)
    (root / "k8s/app.yaml").write_text(_app("one", image))
    (root / "devloop.yaml").write_text(CONFIG.format(namespace=ns, image=image))


def test_a_manifest_and_a_source_edit_saved_together_roll_the_workload_once(
        standin, image_prefix, tmp_path):
    ns = standin.create_namespace()
    image = f"{image_prefix}-web"
    root = tmp_path / "repo"
    _project(root, image, ns)
    apps = standin.apps()
    watch = Watch(root, standin.kubeconfig)
    try:
        watch.wait("log", line="MODE=one SRC=one", timeout=180)
        watch.wait("manifests.applied", timeout=60)  # the first apply, after the first deploy
        before = _replica_sets(apps, ns)

        mark = watch.mark()
        (root / "k8s/app.yaml").write_text(_app("two", image))
        (root / "services/web/src/main.txt").write_text("two\n")
        watch.wait("log", after=mark, line="MODE=two SRC=two", timeout=120)
        built = watch.wait("build.finished", after=mark, service="web")["image"]
        applied = watch.wait("manifests.applied", after=mark, timeout=30)
        assert applied["objects"] == ["ConfigMap/web-config", "Deployment/web"]
        watch.wait("rollout.ready", after=mark, service="web", timeout=60)

        web = apps.read_namespaced_deployment("web", ns)
        assert web.spec.template.spec.containers[0].image == built
        new = _replica_sets(apps, ns) - before
        assert len(new) == 1, f"rolled {len(new)} times: {sorted(new)}"
        assert [e for e in watch.events[mark:] if e.get("type") == "log"
                and str(e.get("line", "")).startswith("MODE=")] == [
            e for e in watch.events[mark:] if e.get("type") == "log"
            and e.get("line") == "MODE=two SRC=two"]  # no pod ran one without the other

        # positive control: a source edit alone is still an image patch and one rollout
        mark = watch.mark()
        before = _replica_sets(apps, ns)
        (root / "services/web/src/main.txt").write_text("three\n")
        watch.wait("log", after=mark, line="MODE=two SRC=three", timeout=120)
        assert watch.wait("deploy.patched", after=mark, service="web")
        assert len(_replica_sets(apps, ns) - before) == 1

        # a broken manifest saved with a source edit: the apply fails, the image still goes out
        mark = watch.mark()
        (root / "k8s/app.yaml").write_text(_app("two", image) + "---\nkind: [\n")
        (root / "services/web/src/main.txt").write_text("four\n")
        watch.wait("log", after=mark, line="MODE=two SRC=four", timeout=120)
        assert "invalid YAML" in watch.wait("manifests.failed", after=mark)["message"]
        assert watch.wait("deploy.patched", after=mark, service="web")

        # the same, with the failed apply first (the source saved after the manifest's quiet
        # period): the image goes to the workloads the manifests named when they last rendered
        mark = watch.mark()
        (root / "k8s/app.yaml").write_text(_app("two", image) + "---\nkind: [[\n")
        watch.wait("manifests.failed", after=mark, timeout=60)
        (root / "services/web/src/main.txt").write_text("five\n")
        watch.wait("log", after=mark, line="MODE=two SRC=five", timeout=120)
        assert watch.wait("deploy.patched", after=mark, service="web")
    finally:
        watch.stop()

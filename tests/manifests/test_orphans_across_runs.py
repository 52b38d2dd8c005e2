"""Objects an earlier devloop run applied and the manifests dropped while devloop was stopped:
found by devloop's mark and field manager across every kind the cluster serves (a custom
resource too), reported by `devloop status` and `sync`, deleted only with `prune: true`, and
never a claim, nor an object devloop did not apply (one that merely carries its label).

Each `devloop` here is its own process (a restart in between every step), on the stand-in.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from kubernetes import client as k8s

from tests.conftest import busybox_context, devloop_env
from tests.kube_standin.fixtures import wait_for
from tests.manifests.objects import CLAIM, WIDGET_CRD, gone, web_deployment, widget

EXTRA = """\
apiVersion: v1
kind: ConfigMap
metadata: {name: extra}
data: {A: "1"}
---
""" + CLAIM
CONFIG = """\
version: 1
namespace: {namespace}
manifests: [k8s]
services:
  web:
    context: services/web
    image: {image}
"""


def _devloop(root: Path, kubeconfig: Path, *args: str) -> tuple[int, list[dict]]:
    done = subprocess.run([sys.executable, "-m", "devloop.cli", *args, "-o", "json"], cwd=root,
                          env=devloop_env(KUBECONFIG=str(kubeconfig), HOME=str(root.parent)),
                          capture_output=True, text=True, timeout=300)
    lines = [json.loads(x) for x in done.stdout.splitlines() if x.startswith("{")]
    assert lines, done.stdout[-2000:] + done.stderr[-2000:]
    return done.returncode, lines


def _of(events: list[dict], kind: str) -> list[dict]:
    return [e for e in events if e.get("type") == kind]


def test_what_an_earlier_run_applied_and_the_manifests_dropped_is_orphaned_then_pruned(
        standin, image_prefix, tmp_path):
    ns = standin.create_namespace()
    image = f"{image_prefix}-web"
    root = tmp_path / "repo"
    busybox_context(root / "services/web", {"src/main.txt": "hello\n"})
    (root / "k8s").mkdir()
    (root / "k8s/crd.yaml").write_text(WIDGET_CRD)
    (root / "k8s/app.yaml").write_text(web_deployment(image))
    (root / "k8s/widgets.yaml").write_text(widget("w1") + "---\n" + widget("w2"))
    (root / "k8s/extra.yaml").write_text(EXTRA)
    (root / "devloop.yaml").write_text(CONFIG.format(namespace=ns, image=image))
    custom = k8s.CustomObjectsApi(standin.api_client())
    core = standin.core()

    code, events = _devloop(root, standin.kubeconfig, "sync")
    assert code == 0, events[-5:]
    assert {"w1", "w2"} <= {w["metadata"]["name"] for w in custom.list_namespaced_custom_object(
        "example.com", "v1", ns, "widgets")["items"]}
    claim_uid = core.read_namespaced_persistent_volume_claim("data", ns).metadata.uid
    # carries devloop's label and release, but devloop never applied it
    custom.create_namespaced_custom_object("example.com", "v1", ns, "widgets", {
        "apiVersion": "example.com/v1", "kind": "Widget", "metadata": {
            "name": "handmade", "labels": {"devloop.dev/managed-by": "devloop"},
            "annotations": {"devloop.dev/release": "repo"}}, "spec": {"size": 1}},
        field_manager="kubectl-client-side-apply")

    # devloop is stopped; the manifests drop a Widget, a ConfigMap and the claim
    (root / "k8s/widgets.yaml").write_text(widget("w1"))
    (root / "k8s/extra.yaml").unlink()
    expected = ["ConfigMap/extra", "PersistentVolumeClaim/data", "Widget/w2"]

    code, status = _devloop(root, standin.kubeconfig, "status")
    assert status[-1]["orphaned"] == expected

    code, events = _devloop(root, standin.kubeconfig, "sync")
    assert code == 0, events[-5:]
    orphaned = _of(events, "manifests.orphaned")
    assert orphaned and orphaned[-1]["objects"] == expected and orphaned[-1]["prune"] is False
    assert _of(events, "manifests.pruned") == []
    assert custom.get_namespaced_custom_object("example.com", "v1", ns, "widgets", "w2")
    assert core.read_namespaced_config_map("extra", ns)

    with (root / "devloop.yaml").open("a") as handle:
        handle.write("prune: true\n")
    code, events = _devloop(root, standin.kubeconfig, "sync")
    assert code == 0, events[-5:]
    pruned = _of(events, "manifests.pruned")
    assert [p["objects"] for p in pruned] == [["ConfigMap/extra", "Widget/w2"]]
    wait_for(lambda: gone(lambda: custom.get_namespaced_custom_object(
        "example.com", "v1", ns, "widgets", "w2")), what="Widget/w2 deleted")
    wait_for(lambda: gone(lambda: core.read_namespaced_config_map("extra", ns)),
             what="ConfigMap/extra deleted")
    # the claim (its data), the Widget still rendered and the one devloop never applied stay
    assert core.read_namespaced_persistent_volume_claim("data", ns).metadata.uid == claim_uid
    names = {w["metadata"]["name"] for w in custom.list_namespaced_custom_object(
        "example.com", "v1", ns, "widgets")["items"]}
    assert {"w1", "handmade"} <= names

"""`devloop down` for `kustomize:` and `manifests:` projects, as for charts: what devloop applied
goes (found by its own mark, also what an earlier run applied that the manifests dropped since),
claims (data) stay with the command that deletes them, and so does what devloop did not make
and anything cluster-wide (a CustomResourceDefinition holds everyone's objects).

Real `devloop sync` and `devloop down` processes on the stand-in; kustomize is kubectl's.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from kubernetes import client as k8s

from tests.conftest import busybox_context
from tests.down.test_down import devloop
from tests.kube_standin.fixtures import wait_for
from tests.manifests.objects import CLAIM, WIDGET_CRD, gone, web_deployment, widget

REPO = Path(__file__).resolve().parents[2]
KUBECTL = REPO / ".tools/bin/kubectl"

CLAIM_AND_SERVICE = """\
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  selector: {app: web}
  ports: [{port: 80, targetPort: 8080}]
---
""" + CLAIM


def _workload(image: str) -> str:
    """The Deployment (reading web-config, mounting the claim), its Service and its claim."""
    return web_deployment(
        image, spec={"strategy": {"type": "Recreate"}},
        container={"envFrom": [{"configMapRef": {"name": "web-config"}}],
                   "volumeMounts": [{"name": "data", "mountPath": "/data"}]},
        pod={"volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": "data"}}]},
    ) + "---\n" + CLAIM_AND_SERVICE


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))


def _config(ns: str, image: str, deploy: str) -> str:
    return (f"version: 1\nnamespace: {ns}\n{deploy}\nservices:\n  web:\n"
            f"    context: services/web\n    image: {image}\n    live_update: false\n")


def _events(events: list[dict], kind: str) -> dict[str, dict]:
    return {e["object"]: e for e in events if e["type"] == kind}


@pytest.mark.skipif(not KUBECTL.is_file(), reason="scripts/setup puts kubectl (kustomize) in"
                    " .tools/bin")
def test_down_removes_what_a_kustomization_applied_and_keeps_the_claim(
        standin, image_prefix, tmp_path):
    ns = standin.create_namespace()
    image = f"{image_prefix}-web"
    root = tmp_path / "repo"
    busybox_context(root / "services/web", {"src/main.txt": "hello\n"})
    _write(root / "deploy/base/app.yaml", _workload(image))

    def base(mode: str) -> None:
        _write(root / "deploy/base/kustomization.yaml", f"""\
            resources: [app.yaml]
            configMapGenerator: [{{name: web-config, literals: [MODE={mode}]}}]
            """)

    base("one")
    _write(root / "deploy/dev/kustomization.yaml", "resources: [../base]\nnamePrefix: dev-\n")
    _write(root / "devloop.yaml", _config(ns, image, "kustomize: deploy/dev") +
           "    workload: deployment/dev-web\n")
    core, apps = standin.core(), standin.apps()

    def synced() -> set[str]:
        code, events = devloop(root, standin.kubeconfig, "sync", "--quiet-build")
        assert code == 0, [e for e in events if e["type"] in ("error", "manifests.failed",
                                                              "stderr")]
        return {c.metadata.name for c in core.list_namespaced_config_map(ns).items
                if c.metadata.name.startswith("dev-web-config-")}

    first = synced()
    base("two")  # an earlier run's generated ConfigMap is left behind, orphaned
    both = synced()
    assert len(first) == 1 and len(both) == 2
    core.create_namespaced_config_map(ns, {"metadata": {"name": "mine"}, "data": {"a": "1"}})
    claim_uid = core.read_namespaced_persistent_volume_claim("dev-data", ns).metadata.uid

    code, events = devloop(root, standin.kubeconfig, "down")
    assert code == 0, events[-5:]
    deleted, kept = _events(events, "down.deleted"), _events(events, "down.kept")
    assert set(deleted) == {"Deployment/dev-web", "Service/dev-web",
                            *(f"ConfigMap/{n}" for n in both)}
    assert all(e["reason"] == "installed by devloop from the kustomization"
               f" {root / 'deploy/dev'}" for e in deleted.values()), deleted
    assert "kubectl" in kept["PersistentVolumeClaim/dev-data"]["command"]
    wait_for(lambda: gone(lambda: apps.read_namespaced_deployment("dev-web", ns)),
             what="Deployment/dev-web deleted")
    for name in both:
        wait_for(lambda n=name: gone(lambda: core.read_namespaced_config_map(n, ns)),
                 what=f"ConfigMap/{name} deleted")
    assert core.read_namespaced_persistent_volume_claim("dev-data", ns).metadata.uid == claim_uid
    assert core.read_namespaced_config_map("mine", ns).data == {"a": "1"}


def test_down_removes_what_plain_manifests_applied_custom_resources_too(
        standin, image_prefix, tmp_path):
    ns = standin.create_namespace()
    image = f"{image_prefix}-web"
    root = tmp_path / "repo"
    busybox_context(root / "services/web", {"src/main.txt": "hello\n"})
    _write(root / "k8s/app.yaml", _workload(image) +
           "---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: web-config}\n"
           "data: {MODE: one}\n")
    _write(root / "k8s/crd.yaml", WIDGET_CRD + "---\n" + widget("w1"))
    _write(root / "devloop.yaml", _config(ns, image, "manifests: [k8s]"))
    code, events = devloop(root, standin.kubeconfig, "sync", "--quiet-build")
    assert code == 0, [e for e in events if e["type"] in ("error", "manifests.failed")]
    custom = k8s.CustomObjectsApi(standin.api_client())
    assert custom.get_namespaced_custom_object("example.com", "v1", ns, "widgets", "w1")
    core, apps = standin.core(), standin.apps()
    claim_uid = core.read_namespaced_persistent_volume_claim("data", ns).metadata.uid

    code, events = devloop(root, standin.kubeconfig, "down")
    assert code == 0, events[-5:]
    deleted, kept = _events(events, "down.deleted"), _events(events, "down.kept")
    assert set(deleted) == {"Deployment/web", "Service/web", "ConfigMap/web-config",
                            "Widget/w1"}
    assert {e["reason"] for e in deleted.values()} == {"installed by devloop from the manifests"}
    assert set(kept) == {"PersistentVolumeClaim/data"}
    wait_for(lambda: gone(lambda: custom.get_namespaced_custom_object(
        "example.com", "v1", ns, "widgets", "w1")), what="Widget/w1 deleted")
    wait_for(lambda: gone(lambda: apps.read_namespaced_deployment("web", ns)),
             what="Deployment/web deleted")
    assert core.read_namespaced_persistent_volume_claim("data", ns).metadata.uid == claim_uid
    crd = k8s.ApiextensionsV1Api(standin.api_client()).read_custom_resource_definition(
        "widgets.example.com")
    assert crd.metadata.deletion_timestamp is None  # cluster-wide: everyone's Widgets

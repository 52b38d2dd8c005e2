"""A kustomize project (a base and an overlay) deployed and edited under `devloop watch`."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from tests.conftest import busybox_context
from tests.watchproc import Watch

REPO = Path(__file__).resolve().parents[2]
KUBECTL = REPO / ".tools/bin/kubectl"

DEPLOY = """\
apiVersion: apps/v1
kind: Deployment
metadata: {{name: web}}
spec:
  selector: {{matchLabels: {{app: web}}}}
  template:
    metadata: {{labels: {{app: web}}}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
        - name: web
          image: {image}
          command: [sh, -c, "echo MODE=$MODE; trap 'exit 0' TERM; while true; do sleep 1; done"]
          envFrom: [{{configMapRef: {{name: web-config}}}}]
"""


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))


def _base(root: Path, mode: str) -> None:
    _write(root / "deploy/base/kustomization.yaml", f"""\
        resources: [deployment.yaml]
        configMapGenerator: [{{name: web-config, literals: [MODE={mode}]}}]
        """)


@pytest.mark.skipif(not KUBECTL.is_file(), reason="scripts/setup puts kubectl (kustomize) in"
                    " .tools/bin")
def test_a_kustomize_overlay_deploys_and_a_base_edit_rolls_it(standin, image_prefix, tmp_path):
    ns = standin.create_namespace()
    image = f"{image_prefix}-web"
    root = tmp_path / "repo"
    busybox_context(root / "services/web", {"src/main.txt": "hello\n"})
    _write(root / "deploy/base/deployment.yaml", DEPLOY.format(image=image))
    _base(root, "base-one")
    _write(root / "deploy/overlays/dev/kustomization.yaml", """\
        resources: [../../base]
        namePrefix: dev-
        """)
    _write(root / "devloop.yaml", f"""\
        version: 1
        namespace: {ns}
        kustomize: deploy/overlays/dev
        services:
          web:
            context: services/web
            image: {image}
            workload: deployment/dev-web
            container: web
        """)
    watch = Watch(root, standin.kubeconfig, extra_env={"DEVLOOP_KUBECTL": str(KUBECTL)})
    try:
        watch.wait("rollout.ready", service="web", timeout=180)
        watch.wait("log", line="MODE=base-one", timeout=90)
        apps = standin.apps()
        web = apps.read_namespaced_deployment("dev-web", ns)
        assert web.spec.template.spec.containers[0].image.startswith(f"{image}:dl-")
        old_maps = {c.metadata.name for c in standin.core().list_namespaced_config_map(ns).items
                    if c.metadata.name.startswith("dev-web-config-")}
        assert len(old_maps) == 1

        mark = watch.mark()
        _base(root, "base-two")  # a base edit: a new generated ConfigMap name, so the overlay's
        applied = watch.wait("manifests.applied", after=mark, timeout=60)  # Deployment changes
        assert "Deployment/dev-web" in applied["objects"]
        watch.wait("log", after=mark, line="MODE=base-two", timeout=90)
        orphaned = watch.wait("manifests.orphaned", after=mark, timeout=30)
        assert orphaned["objects"] == [f"ConfigMap/{old_maps.pop()}"]
    finally:
        watch.stop()

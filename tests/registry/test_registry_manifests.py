"""A plain-YAML project delivered through a registry: a later apply (a manifest edit, no new
build) keeps the pushed `repo:dl-...@sha256` image the workload runs; the node on its own engine
could not run the manifest's bare name."""

from __future__ import annotations

import pytest
import yaml

from tests.conftest import busybox_context
from tests.live.test_live_watch import LOOP
from tests.workloads.test_workload_kinds_e2e import devloop

pytestmark = pytest.mark.docker
NS = "regman"


def deployment(image: str, env: str) -> dict:
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "box"},
            "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "box"}},
                     "strategy": {"type": "Recreate"},
                     "template": {"metadata": {"labels": {"app": "box"}},
                                  "spec": {"terminationGracePeriodSeconds": 1,
                                           "containers": [{"name": "box", "image": image,
                                                           "env": [{"name": "MODE",
                                                                    "value": env}]}]}}}}


def test_a_manifest_edit_keeps_the_pushed_image(node_standin, registry, tmp_path,
                                                image_prefix):
    root, image = tmp_path / "repo", f"{image_prefix}-box"
    busybox_context(root / "services/box", {"src/message.txt": "v1\n"}, cmd=LOOP)
    (root / "k8s").mkdir()
    (root / "k8s/box.yaml").write_text(yaml.safe_dump(deployment(image, "one")))
    (root / "devloop.yaml").write_text(
        f"version: 1\nnamespace: {NS}\nrollout_timeout_s: 90\nmanifests: [k8s]\n"
        f"delivery: registry\ndefault_repo: {registry.host}\n"
        f"services:\n  box:\n    context: services/box\n    image: {image}\n")
    code, events = devloop(root, node_standin, "sync")
    assert code == 0, [e for e in events if e["type"] in ("error", "rollout.failed")]
    pushed = next(e["image"] for e in events if e["type"] == "deliver.finished")

    (root / "k8s/box.yaml").write_text(yaml.safe_dump(deployment(image, "two")))
    code, events = devloop(root, node_standin, "sync")
    assert code == 0, [e for e in events if e["type"] in ("error", "rollout.failed")]
    dep = node_standin.apps().read_namespaced_deployment("box", NS)
    container = dep.spec.template.spec.containers[0]
    assert container.env[0].value == "two"  # the edit was applied ...
    assert container.image == pushed  # ... with the image that was pushed, not the bare name

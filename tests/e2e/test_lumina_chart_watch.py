"""The Lumina chart as a watched input: a values.yaml edit during `devloop watch` runs in the
backend, with its claim (UID and data) unchanged and the other Deployments untouched; a template
that adds a ConfigMap creates it. The stand-in at the chart's real probe timings."""

from __future__ import annotations

import time

import pytest

from tests.e2e.conftest import lumina_env  # noqa: F401 - the stand-in (or DEVLOOP_E2E_CONTEXT)
from tests.e2e.lumina import NAMESPACE, LuminaCluster, replace_text

# the module's Lumina stack (images, stand-in, a watch) is built once: its tests share a worker
pytestmark = [pytest.mark.e2e, pytest.mark.timeout(2400), pytest.mark.xdist_group("lumina-chart")]


@pytest.fixture(scope="module")
def lumina(lumina_env: LuminaCluster) -> LuminaCluster:  # noqa: F811
    return lumina_env


def _generation(lumina: LuminaCluster, name: str) -> int:
    return int(lumina.apps.read_namespaced_deployment(name, NAMESPACE).metadata.generation)


def test_a_values_edit_runs_in_the_backend_and_keeps_the_claim_and_the_other_deployments(
        lumina):
    watch = lumina.ensure_watch()
    watch.settle(3)
    token = lumina.backend_register_and_login("ada@example.com", "correct horse 42")
    claim = lumina.core.read_namespaced_persistent_volume_claim("backend-sqlite-pvc", NAMESPACE)
    others = {name: (_generation(lumina, name), lumina.pod_uids(name))
              for name in ("chatbot", "frontend")}
    assert lumina.exec_in("backend", ["printenv", "ENVIRONMENT"]).strip() == "production"

    mark = watch.mark()
    started = time.monotonic()
    replace_text(lumina.repo / "k8s/values.yaml", "    environment: production\n"
                 "    corsOrigins", "    environment: staging\n    corsOrigins", count=1)
    applied = watch.wait(lambda e: e["type"] == "manifests.applied", 60, "manifests.applied",
                         after=mark)
    assert applied["objects"] == ["ConfigMap/backend-config", "Deployment/backend"]
    watch.wait(lambda e: e["type"] == "rollout.ready" and e["service"] == "backend", 90,
               "backend rolled out", after=mark)
    while lumina.exec_in("backend", ["printenv", "ENVIRONMENT"]).strip() != "staging":
        assert time.monotonic() - started < 90, "the new environment is not running in 90 s"
        time.sleep(1)
    assert time.monotonic() - started < 90

    after = lumina.core.read_namespaced_persistent_volume_claim("backend-sqlite-pvc", NAMESPACE)
    assert after.metadata.uid == claim.metadata.uid
    assert after.metadata.resource_version == claim.metadata.resource_version  # not even touched
    assert lumina.backend_login("ada@example.com", "correct horse 42")  # the data is still there
    assert token
    for name, (generation, pods) in others.items():
        assert _generation(lumina, name) == generation, f"{name} was changed"
        assert lumina.pod_uids(name) == pods, f"{name}'s pods were replaced"


def test_a_template_that_adds_a_configmap_creates_it(lumina):
    watch = lumina.ensure_watch()
    mark = watch.mark()
    extra = lumina.repo / "k8s/templates/extra-configmap.yaml"
    tmp = extra.with_name(".extra.tmp")
    tmp.write_text("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: feature-flags\n"
                   "  namespace: {{ .Release.Namespace }}\ndata:\n  DARK_MODE: \"on\"\n")
    tmp.rename(extra)
    applied = watch.wait(lambda e: e["type"] == "manifests.applied", 60, "manifests.applied",
                         after=mark)
    assert applied["objects"] == ["ConfigMap/feature-flags"]
    made = lumina.core.read_namespaced_config_map("feature-flags", NAMESPACE)
    assert made.data == {"DARK_MODE": "on"}
    assert made.metadata.labels["devloop.dev/managed-by"] == "devloop"

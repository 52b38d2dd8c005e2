"""First deploy on the API stand-in: the rendered chart is applied server-side (field manager
devloop); a claim that exists is never touched, a value someone else set is never overwritten."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from devloop.config.loader import ChartConfig, Config
from devloop.deploy.manifest_session import ManifestSession
from devloop.k8s.cluster import Cluster, connect
from tests.k8s.support import CHART, HELM
from tests.kube_standin import StandIn

JWT = "test-only-jwt-value-0123456789"
ENV = {"DEVLOOP_HELM": str(HELM), "DEVLOOP_SET_backend__secrets__jwtSecretKey": JWT}


def _config(chart: Path, namespace: str, release: str = "lumina") -> Config:
    return Config(path=chart.parent / "devloop.yaml", root=chart.parent, namespace=namespace,
                  services={}, chart=ChartConfig(path=chart, release=release))


@pytest.fixture
def lumina(standin: StandIn) -> Iterator[Cluster]:
    """The chart's own namespace on the session stand-in; only this module uses it."""
    conn = connect(StandIn.context, "lumina", str(standin.kubeconfig))
    yield conn
    with contextlib.suppress(Exception):
        conn.core.delete_namespace("lumina")


def test_apply_creates_the_chart_never_touches_the_claim_and_never_forces(lumina: Cluster
                                                                           ) -> None:
    # The user's cluster already has the namespace and the SQLite claim, with their own size
    # and a label of theirs: the claim must come out of the apply exactly as it went in.
    lumina.core.create_namespace({"metadata": {"name": "lumina"}})
    lumina.core.create_namespaced_persistent_volume_claim("lumina", {
        "metadata": {"name": "backend-sqlite-pvc", "labels": {"owner": "me"}},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "2Gi"}}},
    })
    claim = lumina.core.read_namespaced_persistent_volume_claim("backend-sqlite-pvc", "lumina")

    session = ManifestSession(_config(CHART, "lumina"), lumina, ENV)
    outcome = session.apply({})
    assert outcome.error is None and outcome.created == []
    kinds = [name.split("/")[0] for name in outcome.applied]
    assert kinds[0] == "Namespace"
    assert kinds.index("Service") > max(kinds.index("ConfigMap"), kinds.index("Secret"))
    assert min(i for i, k in enumerate(kinds) if k == "Deployment") > kinds.index("Service")

    after = lumina.core.read_namespaced_persistent_volume_claim("backend-sqlite-pvc", "lumina")
    # the cluster itself may update the claim (binding it once a pod uses it), devloop never
    assert after.metadata.uid == claim.metadata.uid
    assert "devloop" not in {m.manager for m in after.metadata.managed_fields or []}, \
        after.metadata.managed_fields
    assert after.metadata.labels == {"owner": "me"}
    assert after.spec.resources.requests == {"storage": "2Gi"}
    backend = lumina.apps.read_namespaced_deployment("backend", "lumina")
    assert [c.name for c in backend.spec.template.spec.containers] == ["backend"]
    assert {(m.manager, m.operation) for m in backend.metadata.managed_fields} == {
        ("devloop", "Apply")}
    assert backend.metadata.labels["devloop.dev/managed-by"] == "devloop"

    # nothing changed: no request at all the second time
    assert session.apply({}).applied == []

    # a value the user changed by hand is not overwritten: one line naming their manager
    lumina.core.patch_namespaced_config_map("backend-config", "lumina",
                                            {"data": {"ENVIRONMENT": "staging"}},
                                            field_manager="kubectl-edit")
    fresh = ManifestSession(_config(CHART, "lumina"), lumina, ENV)  # a new watch: applies all
    outcome = fresh.apply({})
    assert outcome.error is not None and "\n" not in outcome.error
    assert "kubectl-edit" in outcome.error and "ConfigMap/backend-config" in outcome.error
    config = lumina.core.read_namespaced_config_map("backend-config", "lumina")
    assert config.data["ENVIRONMENT"] == "staging"


def small_chart(root: Path, extra: str = "") -> Path:
    chart = root / "chart"
    (chart / "templates").mkdir(parents=True)
    (chart / "Chart.yaml").write_text("apiVersion: v2\nname: small\nversion: 0.1.0\n")
    (chart / "templates" / "cm.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\n"
        "data:\n  greeting: {{ .Values.greeting | default \"hi\" | quote }}\n" + extra)
    return chart


def test_the_namespace_is_created_first_when_the_chart_has_none_and_any_kind_is_applied(
        standin: StandIn, tmp_path: Path) -> None:
    namespace = f"t-{uuid.uuid4().hex[:8]}"
    cluster = connect(StandIn.context, namespace, str(standin.kubeconfig))
    ingress = ("---\napiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata:\n  name: web\n"
               "spec:\n  defaultBackend:\n    service:\n      name: web\n"
               "      port:\n        number: 80\n")
    session = ManifestSession(_config(small_chart(tmp_path, ingress), namespace, "r"), cluster,
                              {"DEVLOOP_HELM": str(HELM), "DEVLOOP_SET_greeting": "hello"})
    try:
        outcome = session.apply({})
        assert outcome.error is None
        assert outcome.applied == [f"Namespace/{namespace}", "ConfigMap/settings", "Ingress/web"]
        config = cluster.core.read_namespaced_config_map("settings", namespace)
        assert config.data == {"greeting": "hello"}
    finally:
        with contextlib.suppress(Exception):
            cluster.core.delete_namespace(namespace)

"""First deploy on the API stand-in: create what is missing, never touch what exists."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from devloop.cluster import Cluster, connect
from devloop.install import InstallError, install_missing, missing_objects, render_chart
from tests.k8s.support import CHART, HELM
from tests.kube_standin import StandIn

JWT = "test-only-jwt-value-0123456789"


@pytest.fixture
def lumina(standin: StandIn) -> Iterator[Cluster]:
    """The chart's own namespace on the session stand-in; only this module uses it."""
    conn = connect(StandIn.context, "lumina", str(standin.kubeconfig))
    yield conn
    with contextlib.suppress(Exception):
        conn.core.delete_namespace("lumina")


def test_install_creates_only_missing_objects_and_never_touches_the_pvc(lumina: Cluster) -> None:
    objects = render_chart(CHART, "lumina", "lumina", [],
                           {"backend.secrets.jwtSecretKey": JWT}, helm=str(HELM))
    # The user's cluster already has the namespace and the SQLite claim, with their own size
    # and a label of theirs: the claim must come out of the install exactly as it went in.
    lumina.core.create_namespace({"metadata": {"name": "lumina"}})
    lumina.core.create_namespaced_persistent_volume_claim("lumina", {
        "metadata": {"name": "backend-sqlite-pvc", "labels": {"owner": "me"}},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "2Gi"}}},
    })
    claim = lumina.core.read_namespaced_persistent_volume_claim("backend-sqlite-pvc", "lumina")

    missing = {f"{o['kind']}/{o['metadata']['name']}" for o in missing_objects(lumina, objects)}
    assert "PersistentVolumeClaim/backend-sqlite-pvc" not in missing
    assert "Namespace/lumina" not in missing
    assert "Deployment/backend" in missing

    created = install_missing(lumina, objects, release="lumina")
    assert set(created) == missing
    kinds = [c.split("/")[0] for c in created]
    assert kinds.index("Service") > max(kinds.index("ConfigMap"), kinds.index("Secret"))
    assert min(i for i, k in enumerate(kinds) if k == "Deployment") > kinds.index("Service")

    after = lumina.core.read_namespaced_persistent_volume_claim("backend-sqlite-pvc", "lumina")
    assert after.metadata.resource_version == claim.metadata.resource_version
    assert after.metadata.labels == {"owner": "me"}
    assert after.spec.resources.requests == {"storage": "2Gi"}
    backend = lumina.apps.read_namespaced_deployment("backend", "lumina")
    assert [c.name for c in backend.spec.template.spec.containers] == ["backend"]
    # A later `helm upgrade --install lumina` can adopt what devloop created.
    assert backend.metadata.annotations["meta.helm.sh/release-name"] == "lumina"
    assert backend.metadata.labels["app.kubernetes.io/managed-by"] == "Helm"

    # Something the user changed by hand stays changed, and a second install creates nothing.
    lumina.core.patch_namespaced_config_map("backend-config", "lumina",
                                            {"data": {"ENVIRONMENT": "staging"}})
    assert install_missing(lumina, objects) == []
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


def test_install_creates_the_namespace_first_when_the_chart_has_none(
        standin: StandIn, tmp_path: Path) -> None:
    namespace = f"t-{uuid.uuid4().hex[:8]}"
    cluster = connect(StandIn.context, namespace, str(standin.kubeconfig))
    objects = render_chart(small_chart(tmp_path), "r", namespace, [], {"greeting": "hello"},
                           helm=str(HELM))
    try:
        assert install_missing(cluster, objects) == ["Namespace/" + namespace,
                                                     "ConfigMap/settings"]
        config = cluster.core.read_namespaced_config_map("settings", namespace)
        assert config.data == {"greeting": "hello"}
    finally:
        with contextlib.suppress(Exception):
            cluster.core.delete_namespace(namespace)


def test_a_kind_devloop_cannot_create_is_refused_before_anything_is_created(
        cluster: Cluster, tmp_path: Path) -> None:
    ingress = ("---\napiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata:\n  name: web\n"
               "spec:\n  defaultBackend:\n    service:\n      name: web\n"
               "      port:\n        number: 80\n")
    objects = render_chart(small_chart(tmp_path, ingress), "r", cluster.namespace, [], {},
                           helm=str(HELM))
    with pytest.raises(InstallError, match="Ingress/web, a kind devloop does not create"):
        install_missing(cluster, objects)
    names = {c.metadata.name for c in cluster.core.list_namespaced_config_map(
        cluster.namespace).items}
    assert "settings" not in names

"""Server-side apply (the first deploy and manifest changes) through an API server shedding
load: a burst is retried inside the call; one that outlasts the retries is ClusterUnreachable,
which the engine retries by itself, not an ApplyError that would wait for the next save."""

from __future__ import annotations

import pytest

from devloop.k8s.cluster import ClusterUnreachable, connect
from devloop.manifests import apply as manifests
from tests.faults.conftest import NS, Box

CONFIGMAP = {"apiVersion": "v1", "kind": "ConfigMap",
             "metadata": {"name": "settings", "namespace": NS}, "data": {"level": "debug"}}


def test_apply_rides_out_a_503_burst_and_a_storm_is_cluster_unreachable(box: Box):
    cluster = connect(box.standin.context, NS, str(box.standin.kubeconfig))
    faults = box.standin.standin.faults
    burst = faults.fail("PATCH", r"/configmaps/settings$", status=503, count=2)
    stored = manifests.apply(cluster.api_client, CONFIGMAP, "k8s/settings.yaml")
    assert stored["data"] == {"level": "debug"} and burst.served == 2
    faults.fail("PATCH", r"/configmaps/settings$", status=503, count=1000)
    with pytest.raises(ClusterUnreachable) as info:
        manifests.apply(cluster.api_client, {**CONFIGMAP, "data": {"level": "info"}})
    assert "HTTP 503" in str(info.value) and "\n" not in str(info.value)
    faults.clear()
    assert box.standin.core().read_namespaced_config_map("settings", NS).data == {
        "level": "debug"}

"""Which containers of a pod count as running (their IDs are what live update targets)."""

from __future__ import annotations

from devloop.k8s.podwatch import container_ids


def test_container_ids_lists_only_running_containers() -> None:
    pod = {"status": {"containerStatuses": [
        {"name": "app", "containerID": "docker://a1", "state": {"running": {}}},
        {"name": "side", "containerID": "docker://b2", "state": {"terminated": {"exitCode": 1}}},
        {"name": "new", "state": {"waiting": {"reason": "ContainerCreating"}}}]}}
    assert container_ids(pod) == {"app": "docker://a1"}
    assert container_ids({"metadata": {}}) == {}

"""The kubelet's probe of the backend (GET /api/health, k8s/templates/backend-deployment.yaml)
stays out of the access log; every other request is still logged."""

from __future__ import annotations

import httpx

from .conftest import BackendProcess, wait_until


def test_probe_requests_are_not_logged_other_requests_are(backend: BackendProcess) -> None:
    headers = {"User-Agent": "kube-probe/1.36"}
    with httpx.Client(base_url=backend.base_url, trust_env=False, timeout=10) as http:
        for _ in range(3):
            assert http.get("/api/health", headers=headers).status_code == 200
        assert http.get("/api/health?probe=readiness").status_code == 200
        assert http.get("/api/no-such-route-probe-log-marker").status_code == 404

    # Positive control: the access log is on, and lines are written in order.
    wait_until(lambda: "/api/no-such-route-probe-log-marker" in backend.logs(), 10,
               "the access log line of an ordinary request")
    access = [line for line in backend.logs().splitlines() if '"GET ' in line]
    assert access, backend.logs()
    assert not [line for line in access if "/api/health" in line], access

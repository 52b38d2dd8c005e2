"""The stand-in's fault switch on its own clock: rules are consumed per matching request and a
drop ends by itself (tests/faults/test_api_switch.py drives it over real HTTP)."""

from __future__ import annotations

import pytest


def test_rules_are_consumed_per_match_and_a_drop_ends_on_its_own_clock():
    from tests.kube_standin.faults import Faults

    now = [100.0]
    faults = Faults(clock=lambda: now[0])
    faults.fail("patch", r"/deployments/api$", status=503, count=2)
    faults.fail("*", r"/pods", status=429, count=1)
    assert faults.take("GET", "/apis/apps/v1/namespaces/x/deployments/api") is None
    assert faults.take("PATCH", "/apis/apps/v1/namespaces/x/deployments/api2") is None
    assert [faults.take("PATCH", "/apis/apps/v1/namespaces/x/deployments/api").status
            for _ in range(2)] == [503, 503]
    assert faults.take("PATCH", "/apis/apps/v1/namespaces/x/deployments/api") is None
    assert faults.take("DELETE", "/api/v1/namespaces/x/pods/p").status == 429
    assert faults.failed(503) == 2 and faults.failed(429) == 1
    faults.drop(30)
    assert faults.dropping()
    now[0] += 29.9
    assert faults.dropping()
    now[0] += 0.2
    assert not faults.dropping()
    with pytest.raises(ValueError):
        faults.fail("GET", "(", 503)
    with pytest.raises(ValueError):
        faults.fail("GET", "/x", 200)

"""The stand-in's own tests share one stand-in per session (each test in namespaces of its own),
except those marked `own_standin`: they stop the API server or list across namespaces."""

from __future__ import annotations

import pytest

from tests.kube_standin.fixtures import StandInHandle


@pytest.fixture
def standin(request: pytest.FixtureRequest) -> StandInHandle:
    if request.node.get_closest_marker("own_standin"):
        return request.getfixturevalue("standin_factory")()
    return request.getfixturevalue("shared_standin")

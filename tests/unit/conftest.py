"""The unit tier runs without Docker: DOCKER_HOST points nowhere for every test here, so a test
that reaches for the engine fails on every machine, not only on one without Docker."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

NOWHERE = "unix:///nonexistent/devloop-unit-tier.sock"


@pytest.fixture(scope="module", autouse=True)
def no_docker_engine() -> Iterator[None]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DOCKER_HOST", NOWHERE)
        yield

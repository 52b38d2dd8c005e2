"""Each service image, built here with no registry, runs as promised.

Built once per session (scripts/build-images, tag :imagetest), started with network none and
probed on its health path from inside with the image's own python or node.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

# one worker builds the session's :imagetest images (a fixed tag) for all of these
pytestmark = [pytest.mark.docker, pytest.mark.xdist_group("images")]

BUILD_TOOLS = ("gcc", "cc", "g++", "make")


@pytest.fixture(scope="module", params=["backend", "chatbot", "frontend"])
def running(request, service_specs, build_service, run_service) -> Iterator:
    """One healthy container per service (the backend with a fresh named volume at /app/data);
    pytest runs all tests of one service before starting the next, then removes it."""
    spec = service_specs[request.param]
    image = build_service(spec.name)
    volume = None
    if spec.name == "backend":
        volume = f"imagetest-backend-data-{uuid.uuid4().hex[:6]}"
    with run_service(spec, image.ref, volume) as service:
        yield service


def test_health_path_answers_with_network_none(running) -> None:
    assert running.container.attrs["HostConfig"]["NetworkMode"] == "none"
    answer = running.probe()
    assert answer is not None and answer.status == 200, running.seen[-1:]
    if running.spec.name == "backend":
        assert answer.json()["database"] == "ok"
    if running.spec.name == "frontend":
        assert "<html" in answer.body.lower()


def test_server_process_runs_as_uid_10001(running) -> None:
    code, status = running.exec(["cat", "/proc/1/status"])
    assert code == 0, status
    ids = {
        line.split(":")[0]: line.split()[1:]
        for line in status.splitlines()
        if line.startswith(("Uid:", "Gid:"))
    }
    assert ids == {"Uid": ["10001"] * 4, "Gid": ["10001"] * 4}
    code, whoami = running.exec(["id", "-u"])  # docker exec defaults to the image's USER
    assert code == 0 and whoami.strip() == "10001"


def test_tar_is_available_to_the_app_user(running) -> None:
    code, out = running.shell("cd /tmp && tar -cf probe.tar /etc/hostname && tar -tf probe.tar")
    assert code == 0, out
    assert "etc/hostname" in out


def test_final_image_carries_no_build_tools_or_caches(running) -> None:
    tools = " ".join(BUILD_TOOLS)
    code, found = running.shell(f"for t in {tools}; do command -v $t || true; done", user="0")
    assert code == 0 and found.strip() == "", f"build tools in the final image: {found.split()}"
    paths = " ".join(running.spec.forbidden)
    code, present = running.shell(f"for p in {paths}; do [ ! -e $p ] || echo $p; done", user="0")
    assert code == 0 and present.strip() == "", f"build inputs/caches in the image: {present}"


@pytest.mark.parametrize("running", ["backend"], indirect=True)
def test_backend_data_volume_is_writable_by_the_app(running) -> None:
    mounts = running.container.attrs["Mounts"]
    assert [(m["Type"], m["Name"], m["Destination"]) for m in mounts] == [
        ("volume", running.volume, "/app/data")
    ]
    code, owner = running.exec(["stat", "-c", "%u", "/app/data/lumina.db"])
    assert code == 0 and owner.strip() == "10001", f"lumina.db not created by the app: {owner}"
    code, out = running.shell("echo ok > /app/data/write-probe && cat /app/data/write-probe")
    assert code == 0 and out.strip() == "ok", out

"""Image pruning is scoped to one checkout (issue 17, part 7): two clones of one project on one
Docker Engine have the same service and image names, and neither ever removes the other's
images, nor an image any container uses. Real `devloop sync --no-deploy` processes, real engine.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import docker
import pytest

from tests.conftest import busybox_context, devloop_env

pytestmark = pytest.mark.docker


def clone(root: Path, image: str) -> Path:
    busybox_context(root / "services/api", {"src/main.txt": "v0\n"})
    (root / "devloop.yaml").write_text(
        f"version: 1\nnamespace: lumina\nkeep_images: 1\nservices:\n"
        f"  api:\n    context: services/api\n    image: {image}\n")
    return root


def sync(root: Path, content: str) -> str:
    """Build `content` in this clone; the tag built."""
    (root / "services/api/src/main.txt").write_text(content)
    done = subprocess.run([sys.executable, "-m", "devloop.cli", "sync", "--no-deploy", "-o",
                           "json"], cwd=root, capture_output=True, text=True, timeout=300,
                          env=devloop_env(HOME=str(root.parent),
                                          XDG_CACHE_HOME=str(root.parent / "cache")))
    assert done.returncode == 0, done.stdout + done.stderr
    events = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    return next(e["image"] for e in events if e["type"] == "build.finished")


def tags(client: docker.DockerClient, image: str) -> set[str]:
    return {t for img in client.images.list(name=image) for t in img.tags}


def test_two_clones_on_one_engine_never_prune_each_others_images(tmp_path, docker_client,
                                                                 image_prefix):
    image = f"{image_prefix}-api"
    a, b = clone(tmp_path / "a" / "repo", image), clone(tmp_path / "b" / "repo", image)
    a1 = sync(a, "a one\n")
    a2 = sync(a, "a two\n")
    assert tags(docker_client, image) == {a2}  # positive control: a prunes its own (keep 1)
    # a container (a pod in the shared daemon, say) runs b's first image under a second name
    b1 = sync(b, "b one\n")
    docker_client.images.get(b1).tag(image, "dl-000000000000")
    container = docker_client.containers.create(b1, command=["true"])
    try:
        b2 = sync(b, "b two\n")
        b3 = sync(b, "b three\n")
        # b pruned its own b2, kept b1 (a container uses it), and never touched a's image
        assert tags(docker_client, image) == {a2, b1, b3, f"{image}:dl-000000000000"}
        a3 = sync(a, "a three\n")
        assert tags(docker_client, image) == {a3, b1, b3, f"{image}:dl-000000000000"}
        assert a1 not in tags(docker_client, image) and b2 not in tags(docker_client, image)
    finally:
        container.remove(force=True)

"""`keep_images` counts images, and the local `<default_repo>/...:dl-` tag registry delivery
pushes from goes with its image: pushing never makes old images pile up on the engine."""

from __future__ import annotations

import time
import uuid

import pytest

from devloop.image.build import LABEL_CHECKOUT, LABEL_SERVICE, Builder
from tests.conftest import busybox_context
from tests.kube_standin.fixtures import build_image

pytestmark = pytest.mark.docker


def test_prune_keeps_the_newest_images_with_both_their_tags(docker_client, image_prefix,
                                                            tmp_path):
    repo, pushed_repo = f"{image_prefix}-api", f"127.0.0.1:5999/{image_prefix}-api"
    checkout = uuid.uuid4().hex[:12]
    hexes = [f"{n:012x}" for n in (1, 2, 3)]
    for n, hex12 in enumerate(hexes):
        ctx = busybox_context(tmp_path / hex12, {"src/v.txt": f"{n}\n"})
        image, _ = build_image(
            docker_client, path=str(ctx), tag=f"{repo}:dl-{hex12}", rm=True, network_mode="none",
            labels={LABEL_SERVICE: "api", LABEL_CHECKOUT: checkout})
        image.tag(pushed_repo, f"dl-{hex12}")  # what RegistryDelivery tags before pushing
        time.sleep(1.1)  # Created has one-second resolution

    removed = Builder(docker_client, keep_images=2, checkout=checkout).prune("api", set(),
                                                                             image=repo)
    assert sorted(removed) == sorted([f"{repo}:dl-{hexes[0]}", f"{pushed_repo}:dl-{hexes[0]}"])
    left = {t for img in docker_client.images.list(name=repo) for t in img.tags}
    left |= {t for img in docker_client.images.list(name=pushed_repo) for t in img.tags}
    assert left == {f"{r}:dl-{h}" for r in (repo, pushed_repo) for h in hexes[1:]}
    for tag in left:  # image_prefix removes the rest
        if tag.startswith(pushed_repo):
            docker_client.images.remove(tag)

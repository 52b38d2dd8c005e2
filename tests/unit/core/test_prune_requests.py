"""What pruning asks the Docker Engine after a reload. The engine is a fake here (the unit tier
runs without Docker); tests/core/test_build_and_cli.py and test_prune_scope.py prune on a real
one. docker-py's images.list() inspected every image the service's labels matched, hundreds on
a busy engine, on every reload: that was a tenth of the suite's CPU."""

from __future__ import annotations

from devloop.image.build import Builder


class FakeApi:
    def __init__(self, images: list[dict]) -> None:
        self._images = images
        self.inspected: list[str] = []
        self.removed: list[str] = []

    def images(self, filters: dict) -> list[dict]:
        return self._images

    def inspect_image(self, image_id: str) -> dict:
        self.inspected.append(image_id)
        return {"Created": next(i["precise"] for i in self._images if i["Id"] == image_id)}

    def containers(self, all: bool) -> list[dict]:
        return []


class FakeClient:
    def __init__(self, images: list[dict]) -> None:
        self.api = FakeApi(images)
        self.images = self

    def remove(self, tag: str, noprune: bool) -> None:
        self.api.removed.append(tag)


def image(n: int, repo: str, second: int, nanos: int) -> dict:
    return {"Id": f"sha256:{n:064x}", "RepoTags": [f"{repo}:dl-{n:012x}"], "Created": second,
            "precise": f"2026-12-04T10:00:{second:02d}.{nanos:09d}Z"}


def test_other_repositories_are_never_inspected_and_few_images_need_no_inspection():
    others = [image(100 + n, f"other-{n}/api", 1, 0) for n in range(200)]
    client = FakeClient([*others, image(1, "app/api", 1, 0), image(2, "app/api", 2, 0)])
    builder = Builder(lambda: client, keep_images=3)
    assert builder.prune("api", keep=set(), image="app/api") == []
    assert client.api.inspected == []  # two of its own images, three kept: nothing to order
    assert client.api.removed == []
    # positive control: two more of its own (one pushed, two tags) and the oldest goes
    pushed = image(4, "app/api", 4, 0)
    pushed["RepoTags"].append("registry.example/app/api:dl-000000000004")
    client.api._images += [image(3, "app/api", 3, 0), pushed]
    assert builder.prune("api", keep=set(), image="app/api") == ["app/api:dl-000000000001"]
    assert sorted(client.api.inspected) == [f"sha256:{n:064x}" for n in (1, 2, 3, 4)]  # once each


def test_the_oldest_beyond_keep_images_go_ordered_to_the_nanosecond():
    # four builds within one second: the list's whole seconds cannot tell them apart
    mine = [image(1, "app/api", 5, 400), image(2, "app/api", 5, 100),
            image(3, "app/api", 5, 300), image(4, "app/api", 5, 200)]
    client = FakeClient([image(99, "other/api", 9, 0), *mine])
    builder = Builder(lambda: client, keep_images=2)
    removed = builder.prune("api", keep=set(), image="app/api")
    assert sorted(removed) == ["app/api:dl-000000000002", "app/api:dl-000000000004"]
    assert sorted(client.api.inspected) == sorted(i["Id"] for i in mine)  # not other/api

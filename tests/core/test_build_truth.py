"""A `dl-` tag names exactly the content it holds (issue 11, item 3).

The context is tarred after the digest was computed; a save in between used to put new content
under the old tag (and a later revert then deployed it because "the image exists"). Real Docker
builds; the "user" saves a file at the last moment before the context is sent.
"""

from __future__ import annotations

import io
import os
import threading
from pathlib import Path

import docker
import pytest

from devloop import events as ev
from devloop.config.loader import load_config
from devloop.image.build import Builder, InputsChanged, _write_context
from devloop.inputs.digest import ServiceDigest, image_tag
from devloop.loop.pipeline import Pipeline
from devloop.vocab import OK


class SaveBeforeSend(Builder):
    """Saves `path` once, right after the pipeline hashed the inputs and asked whether the
    image exists, i.e. just before the build context is tarred and sent."""

    def __init__(self, client: docker.DockerClient, path: Path, text: str) -> None:
        super().__init__(client)
        self.path, self.text, self.saved = path, text, False

    def existing(self, tag: str) -> str | None:
        found = super().existing(tag)
        if not found and not self.saved:
            self.path.write_text(self.text)
            self.saved = True
        return found


def _cat(client: docker.DockerClient, image: str, path: str) -> str:
    out = client.containers.run(image, ["cat", path], remove=True, network_mode="none")
    return out.decode()


def test_a_save_while_the_build_starts_is_built_under_its_own_tag(
        make_project, docker_client: docker.DockerClient) -> None:
    root = make_project({"app": {"files": {"src/main.txt": "before\n"}}})
    svc = load_config(root / "devloop.yaml").services["app"]
    digest = ServiceDigest(svc)
    digest.scan()
    hashed = digest.digest()
    main = root / "services/app/src/main.txt"
    bus = ev.EventBus()
    recorder = ev.Recorder()
    bus.subscribe(recorder)
    builder = SaveBeforeSend(docker_client, main, "saved while the build started\n")
    result = Pipeline(bus, builder, None, root=root).run(digest, None, None, threading.Event())

    assert builder.saved and result.outcome == OK, result
    fresh = ServiceDigest(svc)
    fresh.scan()
    assert result.digest == fresh.digest() != hashed  # the tag names the saved content...
    built = image_tag(svc.image, result.digest)
    assert _cat(docker_client, built, "/app/main.txt") == "saved while the build started\n"
    # ...and no image claims the old digest with the new content
    assert builder.existing(image_tag(svc.image, hashed)) is None
    assert any(e.type == ev.WARNING and "changed while the build context was sent"
               in e.data["message"] for e in recorder.events)


def test_the_context_writer_refuses_content_and_modes_that_differ_from_the_hash(
        make_project) -> None:
    root = make_project({"app": {"files": {"src/main.txt": "a\n", "src/run.sh": "echo\n"}}})
    digest = ServiceDigest(load_config(root / "devloop.yaml").services["app"])
    digest.scan()
    digest.digest()
    _write_context(io.BytesIO(), digest)  # positive control: unchanged inputs are sent
    ctx = root / "services/app"
    (ctx / "src/main.txt").write_text("b\n")  # same size, other content
    os.chmod(ctx / "src/run.sh", 0o755)
    with pytest.raises(InputsChanged) as info:
        _write_context(io.BytesIO(), digest)
    assert sorted(info.value.paths) == [ctx / "src/main.txt", ctx / "src/run.sh"]
    digest.rehash(info.value.paths)
    digest.digest()
    _write_context(io.BytesIO(), digest)  # hashed again: accepted

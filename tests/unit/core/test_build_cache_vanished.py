"""A legacy build whose cached layer (an image named by ID) was removed mid-build by a prune or
another build's cleanup is built again (up to 3 builds); a Dockerfile's own failure is not."""

from __future__ import annotations

import pytest

from devloop.image.build import cache_image_vanished

ID = "d23fb5c3b80a332d25e711c6e9a1078ec93b4e44197ddeab82f2601f763d7f5e"


@pytest.mark.parametrize("reason", [
    f'unable to find image "sha256:{ID}"',  # the engine's words in a CI run (20.10)
    f"No such image: sha256:{ID}",
    f"unknown parent image ID sha256:{ID}",  # the next step committed on a removed layer
    # the image store lost the layer's config between the cache lookup and its use (a full run)
    f"failed to get digest sha256:{ID}: open /var/lib/docker/image/overlay2/imagedb/content/"
    f"sha256/{ID}: no such file or directory",
])
def test_a_cache_image_removed_during_the_build_is_retried(reason: str) -> None:
    assert cache_image_vanished(reason)


@pytest.mark.parametrize("reason", [
    "The command '/bin/sh -c exit 3' returned a non-zero code: 3",
    'COPY failed: file not found in build context or excluded by .dockerignore: stat src: file'
    ' does not exist',
    'pull access denied for nosuchbase, repository does not exist',
    "unable to find image 'nosuchbase:latest' locally",  # a base image by name: not a cache
    f"failed to get digest sha256:{ID}: permission denied",
])
def test_the_dockerfiles_own_failures_are_not(reason: str) -> None:
    assert not cache_image_vanished(reason)


class _Engine:
    """Stands in for the engine's build endpoint only: the race it answers to (a cached image
    removed between lookup and use) cannot be caused on demand with a real engine."""

    def __init__(self, answers: list[list[dict]]) -> None:
        self.answers = answers
        self.contexts: list[bytes] = []

    def build(self, fileobj, **_kw):
        self.contexts.append(fileobj.read())
        return iter(self.answers.pop(0))


class _Client:
    def __init__(self, engine: _Engine) -> None:
        self.api = engine


def _builder(tmp_path, answers):
    from devloop.config.loader import ServiceConfig
    from devloop.image.build import Builder
    from devloop.inputs.digest import ServiceDigest

    ctx = tmp_path / "ctx"
    (ctx / "app").mkdir(parents=True)
    (ctx / "Dockerfile").write_text("FROM scratch\nCOPY app /app\n")
    (ctx / "app/main.py").write_text("print('hi')\n")
    svc = ServiceConfig(name="api", context=ctx, dockerfile=ctx / "Dockerfile", image="img",
                        deployment="api", container="api")
    digest = ServiceDigest(svc)
    digest.scan()
    engine = _Engine(answers)
    return Builder(lambda: _Client(engine)), digest, engine  # a factory: any client object


STEP = {"stream": "Step 2/2 : COPY app /app\n"}
GONE = {"errorDetail": {"message": f'unable to find image "sha256:{ID}"'}}
BUILT = {"aux": {"ID": "sha256:" + "b" * 64}}


def test_the_build_is_sent_again_when_its_cached_layer_vanished(tmp_path) -> None:
    # twice: seen in a loaded parallel test run, the second lookup found another copy of the
    # layer that was removed too
    builder, digest, engine = _builder(tmp_path, [[STEP, GONE], [STEP, GONE], [STEP, BUILT]])
    lines: list[str] = []
    result = builder.build(digest, "img:dl-1", lines.append)
    assert result.image_id == "sha256:" + "b" * 64
    assert len(engine.contexts) == 3 and len(set(engine.contexts)) == 1  # the same tar
    assert sum("a cached layer was removed during the build" in line for line in lines) == 2


def test_it_fails_with_the_step_when_it_keeps_vanishing_or_the_step_fails(tmp_path) -> None:
    from devloop.image.build import VANISHED_ATTEMPTS
    from devloop.image.errors import BuildFailed

    builder, digest, engine = _builder(tmp_path, [[STEP, GONE]] * VANISHED_ATTEMPTS)
    with pytest.raises(BuildFailed, match=r"at step 2 \(COPY app /app\): unable to find image"):
        builder.build(digest, "img:dl-1", lambda _line: None)
    assert len(engine.contexts) == VANISHED_ATTEMPTS
    failing = {"errorDetail": {"message": "COPY failed: stat app: file does not exist"}}
    builder, digest, engine = _builder(tmp_path / "b", [[STEP, failing], [STEP, BUILT]])
    with pytest.raises(BuildFailed, match="COPY failed"):
        builder.build(digest, "img:dl-1", lambda _line: None)
    assert len(engine.contexts) == 1  # the Dockerfile's own failure is not built again

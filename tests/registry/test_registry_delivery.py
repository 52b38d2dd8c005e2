"""Registry delivery against the real CNCF Distribution registry (Debian's docker-registry).

The pushes are real `docker push`es by the machine's Docker Engine; the registry runs on a
loopback port (plain HTTP, or TLS with a CA made here plus htpasswd auth)."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import docker
import pytest

from devloop.deploy.delivery import DeliveryError, RegistryDelivery
from tests.conftest import busybox_context
from tests.kube_standin.fixtures import build_image
from tests.registry.conftest import PASSWORD, USER, docker_config
from tests.registry.servers import Registry

pytestmark = pytest.mark.docker


def build(client: docker.DockerClient, ctx: Path, tag: str, text: str, extra: str = "") -> str:
    busybox_context(ctx, {"src/app.txt": text}, extra=extra)
    build_image(client, path=str(ctx), tag=tag, rm=True, network_mode="none")
    return tag


def test_push_gives_the_registry_digest_and_a_change_pushes_only_its_layer(
        docker_client, image_prefix, registry, tmp_path):
    delivery = RegistryDelivery(registry.host)
    first = build(docker_client, tmp_path / "a", f"{image_prefix}/app:dl-1111", "one\n")
    ref = delivery.deliver(first)
    repo = f"{image_prefix}/app"
    assert ref.startswith(f"{registry.host}/{repo}:dl-1111@sha256:")
    assert registry.manifest_digest(repo, "dl-1111") == ref.split("@", 1)[1]
    pushed = delivery.last_push
    assert pushed is not None and pushed.layers_pushed >= 2 and pushed.layers_present == 0

    second = build(docker_client, tmp_path / "a", f"{image_prefix}/app:dl-2222", "two\n")
    ref2 = delivery.deliver(second)
    again = delivery.last_push
    assert ref2 != ref and registry.manifest_digest(repo, "dl-2222") == again.digest
    # busybox and its symlinks are already there: only the changed file's layer travels
    assert again.layers_pushed == 1 and again.layers_present >= 2
    assert again.bytes_pushed < pushed.bytes_pushed / 10


def test_unreachable_registry_is_one_line_naming_it(docker_client, image_prefix, registry,
                                                    tmp_path):
    tag = build(docker_client, tmp_path / "a", f"{image_prefix}/app:dl-3333", "x\n")
    registry.stop()
    with pytest.raises(DeliveryError) as failed:
        RegistryDelivery(registry.host).deliver(tag)
    message = str(failed.value)
    assert "\n" not in message and registry.host in message and "unreachable" in message
    registry.start()  # positive control: the same delivery works once it is back
    assert "@sha256:" in RegistryDelivery(registry.host).deliver(tag)


def test_registry_going_away_mid_push_and_coming_back(docker_client, image_prefix, registry,
                                                      tmp_path):
    """The engine retries a layer upload; a registry back on the same port and storage gets the
    push finished, with the digest it stores."""
    ctx = tmp_path / "big"
    ctx.mkdir()
    (ctx / "blob.bin").write_bytes(os.urandom(96 * 1024 * 1024))
    tag = build(docker_client, ctx, f"{image_prefix}/big:dl-4444", "big\n",
                extra="COPY blob.bin /blob.bin\n")
    uploads = registry.directory / "storage" / "docker" / "registry" / "v2" / "repositories"
    interrupted = threading.Event()

    def interrupt() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if any(p.name == "_uploads" and any(p.iterdir()) for p in uploads.rglob("_uploads")):
                registry.stop()
                interrupted.set()
                time.sleep(1.0)
                registry.start()
                return
            time.sleep(0.005)

    thread = threading.Thread(target=interrupt)
    thread.start()
    delivery = RegistryDelivery(registry.host)
    try:
        ref = delivery.deliver(tag)
    finally:
        thread.join()
    assert interrupted.is_set()
    assert registry.manifest_digest(f"{image_prefix}/big", "dl-4444") == ref.split("@")[1]


def test_tls_registry_with_auth_uses_the_users_docker_credentials(
        docker_client, image_prefix, tls_registry: Registry, tmp_path, monkeypatch):
    tag = build(docker_client, tmp_path / "a", f"{image_prefix}/app:dl-5555", "tls\n")
    monkeypatch.setenv("DOCKER_CONFIG", str(docker_config(tmp_path / "bad", tls_registry.host,
                                                          USER, "wrong")))
    with pytest.raises(DeliveryError) as refused:
        RegistryDelivery(tls_registry.host).deliver(tag)
    message = str(refused.value)
    assert "\n" not in message and tls_registry.host in message
    assert f"docker login {tls_registry.host}" in message
    assert "wrong" not in message and PASSWORD not in message

    monkeypatch.setenv("DOCKER_CONFIG", str(docker_config(tmp_path / "good", tls_registry.host,
                                                          USER, PASSWORD)))
    ref = RegistryDelivery(tls_registry.host).deliver(tag)
    assert ref.startswith(f"{tls_registry.host}/{image_prefix}/app:dl-5555@sha256:")

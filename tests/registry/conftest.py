"""Fixtures: a real registry (plain HTTP, and TLS + htpasswd), a private Docker Engine, and a
Docker client config for credentials. Everything runs on 127.0.0.1 or a Unix socket and is stopped
by PID."""

from __future__ import annotations

import base64
import json
import secrets
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest

from tests.kube_standin.fixtures import StandInHandle
from tests.kube_standin.standin import StandIn
from tests.registry.servers import PrivateEngine, Registry, htpasswd_file, make_tls, trust_ca

USER, PASSWORD = "dev", "s3cret-pass"


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[Registry]:
    """A plain-HTTP registry on a loopback port (Docker treats 127.0.0.0/8 as insecure)."""
    reg = Registry(tmp_path / "registry").start()
    yield reg
    reg.stop()


@pytest.fixture
def tls_registry(tmp_path: Path) -> Iterator[Registry]:
    """TLS with a CA made here (trusted by the engine through /etc/docker/certs.d/HOST:PORT)
    and htpasswd auth (user `dev`)."""
    certs = tmp_path / "certs"
    ca, crt, key = make_tls(certs)
    reg = Registry(tmp_path / "tls-registry", tls=(crt, key),
                   htpasswd=htpasswd_file(certs / "htpasswd", USER, PASSWORD))
    trusted = trust_ca(reg.host, ca)
    try:
        yield reg.start()
    finally:
        reg.stop()
        shutil.rmtree(trusted, ignore_errors=True)


def docker_config(directory: Path, host: str, user: str, password: str) -> Path:
    """A DOCKER_CONFIG directory whose config.json holds `auths` for host, as `docker login`
    writes it."""
    directory.mkdir(parents=True, exist_ok=True)
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    (directory / "config.json").write_text(json.dumps({"auths": {host: {"auth": token}}}))
    return directory


@pytest.fixture(scope="session")
def private_engine() -> Iterator[PrivateEngine]:
    """A second dockerd (own socket, data and exec roots): a node that shares nothing with
    devloop's engine. Its directory is short: Unix socket paths are limited to 107 bytes."""
    engine = PrivateEngine(Path(tempfile.mkdtemp(prefix="dl-node-"))).start()
    yield engine
    engine.stop()
    shutil.rmtree(engine.directory, ignore_errors=True)


@pytest.fixture
def node_standin(private_engine: PrivateEngine) -> Iterator[StandInHandle]:
    """The stand-in whose node is the private engine: pods there get images only by pulling."""
    state_dir = Path(tempfile.mkdtemp(prefix="kube-standin-node-"))
    client = docker.DockerClient(base_url=private_engine.url, max_pool_size=64)
    server = StandIn(state_dir, docker_client=client, node_docker=private_engine.url,
                     ephemeral_volumes=True, volume_prefix=f"node-{secrets.token_hex(3)}-pvc")
    server.start()
    handle = StandInHandle(server, client)
    try:
        yield handle
    finally:
        handle.close()
        server.stop(keep_pods=False, remove_volumes=True)
        client.close()
        shutil.rmtree(state_dir, ignore_errors=True)

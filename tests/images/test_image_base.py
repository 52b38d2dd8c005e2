"""The base images the Dockerfiles start FROM offer what the Dockerfiles use.

On these machines they come from scripts/base-images; on a machine with Docker Hub they are the
official images. Both must provide `python3 -m venv` with pip, `python`/`python3` under
/usr/local/bin, node 20 at /usr/local/bin/node with npm, `useradd` and `tar`.
"""

from __future__ import annotations

import docker
import pytest

# one worker builds the session's :imagetest images (a fixed tag) for all of these
pytestmark = [pytest.mark.docker, pytest.mark.xdist_group("images")]

PYTHON = "python:3.11-slim-bookworm"
NODE = "node:20-bookworm-slim"


def run_sh(client: docker.DockerClient, image: str, script: str) -> dict[str, str]:
    """Run a shell script in a throwaway container; lines `key=value` become a dict."""
    out = client.containers.run(
        image, entrypoint=["/bin/sh", "-ec"], command=[script], network_mode="none", remove=True
    ).decode()
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


def test_python_base_has_venv_pip_useradd_and_tar(docker_client, base_images) -> None:
    facts = run_sh(
        docker_client,
        PYTHON,
        """
        echo "python=$(/usr/local/bin/python -c 'import sys; print(*sys.version_info[:2])')"
        echo "python3=$(/usr/local/bin/python3 -c 'import sys; print(*sys.version_info[:2])')"
        python3 -m venv /tmp/venv
        echo "pip=$(/tmp/venv/bin/pip --version)"
        echo "useradd=$(command -v useradd)"
        echo "tar=$(tar --version | head -n1)"
        """,
    )
    assert facts["python"] == "3 11"
    assert facts["python3"] == "3 11"
    assert facts["pip"].startswith("pip ") and "/tmp/venv/" in facts["pip"]
    assert facts["useradd"].endswith("/useradd")
    assert "tar" in facts["tar"]


def test_node_base_has_node20_npm_useradd_and_tar(docker_client, base_images) -> None:
    facts = run_sh(
        docker_client,
        NODE,
        """
        echo "node=$(/usr/local/bin/node --version)"
        echo "npm=$(npm --version)"
        echo "useradd=$(command -v useradd)"
        echo "tar=$(tar --version | head -n1)"
        """,
    )
    assert facts["node"].startswith("v20.")
    assert facts["npm"].split(".")[0].isdigit()
    assert facts["useradd"].endswith("/useradd")
    assert "tar" in facts["tar"]


def test_node_base_entrypoint_runs_node_for_options(docker_client, base_images) -> None:
    """Like the official image: `docker run node:20-bookworm-slim -e CODE` runs node."""
    out = docker_client.containers.run(
        NODE, command=["-e", "console.log(6 * 7)"], network_mode="none", remove=True
    )
    assert out.decode().strip() == "42"


def test_base_images_rerun_keeps_existing_images(docker_client, base_images, run_script) -> None:
    result = run_script(["scripts/base-images"])
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("skip") == 2, result.stdout
    assert {ref: docker_client.images.get(ref).id for ref in base_images} == base_images

"""devloop.yaml's deploy keys: one format, each checked with file:line, release from Chart.yaml."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from devloop.config.loader import ConfigError, load_config

SERVICES = """\
services:
  web: {context: svc, image: web}
"""


@pytest.fixture(autouse=True)
def _in_project(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # messages show devloop.yaml relative to the working directory


def _load(root: Path, text: str):
    (root / "svc").mkdir(exist_ok=True)
    (root / "svc/Dockerfile").write_text("FROM scratch\n")
    path = root / "devloop.yaml"
    path.write_text(textwrap.dedent(text) + SERVICES)
    return load_config(path)


def _problems(root: Path, text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        _load(root, text)
    return [str(p) for p in info.value.problems]


def _chart(root: Path, name: str = "my-app") -> None:
    (root / "chart").mkdir(exist_ok=True)
    (root / "chart/Chart.yaml").write_text(f"apiVersion: v2\nname: {name}\nversion: 0.1.0\n")


def test_the_release_defaults_to_the_charts_name_and_set_env_is_read(tmp_path):
    _chart(tmp_path)
    config = _load(tmp_path, """\
        chart:
          path: chart
          set_env: {app.secrets.token: APP_TOKEN}
        """)
    assert config.deploy_format == "chart" and config.chart.release == "my-app"
    assert config.chart.set_env == {"app.secrets.token": "APP_TOKEN"}


def test_manifests_kustomize_allow_contexts_and_prune(tmp_path):
    (tmp_path / "k8s").mkdir()
    (tmp_path / "k8s/a.yaml").write_text("{}\n")
    config = _load(tmp_path, """\
        manifests: [k8s, "k8s/*.yaml"]
        allow_contexts: [team-dev]
        prune: true
        """)
    assert config.deploy_format == "manifests" and len(config.manifests) == 2
    assert config.allow_contexts == ("team-dev",) and config.prune is True
    (tmp_path / "kz").mkdir()
    (tmp_path / "kz/kustomization.yaml").write_text("resources: []\n")
    assert _load(tmp_path, "kustomize: kz\n").kustomize == (tmp_path / "kz").resolve()


def test_two_deploy_formats_are_one_mistake_naming_both(tmp_path):
    _chart(tmp_path)
    (tmp_path / "a.yaml").write_text("{}\n")
    problems = _problems(tmp_path, "chart: {path: chart}\nmanifests: [a.yaml]\n")
    assert problems == ["devloop.yaml:2: manifests: devloop.yaml deploys with one format;"
                        " remove either chart: or manifests:"]


def test_each_deploy_key_mistake_has_file_and_line(tmp_path):
    (tmp_path / "kz").mkdir()
    (tmp_path / "nochart").mkdir()
    problems = _problems(tmp_path, """\
        kustomize: kz
        prune: yes please
        """)
    assert problems == ["devloop.yaml:1: kustomize: kz has no kustomization.yaml",
                        "devloop.yaml:2: prune: must be true or false, got 'yes please'"]
    assert _problems(tmp_path, "manifests: [k8s/*.yaml]\n") == [
        "devloop.yaml:1: manifests: k8s/*.yaml matches no file or directory"]
    assert _problems(tmp_path, "chart: {path: nochart}\n") == [
        "devloop.yaml:1: chart.path: nochart/Chart.yaml does not exist (is nochart a Helm"
        " chart?)"]
    _chart(tmp_path)
    assert _problems(tmp_path, "chart: {path: chart, set_env: {a.b: not-a-name}}\n") == [
        "devloop.yaml:1: chart.set_env.a.b: 'not-a-name' is not an environment variable name"]

"""manifests.render: plain YAML, kustomize (the real `kubectl kustomize`) and their errors."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import pytest

from devloop.config.loader import load_config
from devloop.manifests.render import (
    RenderError,
    find_kubectl,
    input_paths,
    render,
    render_files,
    render_kustomize,
)

REPO = Path(__file__).resolve().parents[3]
KUBECTL = REPO / ".tools/bin/kubectl"
needs_kubectl = pytest.mark.skipif(not KUBECTL.is_file(), reason="scripts/setup puts kubectl in"
                                   " .tools/bin (kustomize is built into it)")

DEPLOY = """\
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers: [{name: web, image: web}]
"""


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


def test_files_directories_and_globs_multi_document_each_object_knows_its_file(tmp_path):
    _write(tmp_path / "k8s/web.yaml", DEPLOY + "---\napiVersion: v1\nkind: Service\n"
           "metadata: {name: web}\nspec: {ports: [{port: 80}]}\n---\n")
    _write(tmp_path / "k8s/db/db.yml", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: db}\n")
    _write(tmp_path / "extra/job.yaml", "apiVersion: batch/v1\nkind: Job\nmetadata: {name: j}\n")
    _write(tmp_path / "extra/notes.txt", "not yaml: [")
    out = render_files([str(tmp_path / "k8s"), str(tmp_path / "extra/*.yaml")], tmp_path)
    assert [(r.obj["kind"], r.source) for r in out] == [
        ("ConfigMap", "k8s/db/db.yml"), ("Deployment", "k8s/web.yaml"),
        ("Service", "k8s/web.yaml"), ("Job", "extra/job.yaml")]


def test_a_yaml_mistake_is_one_line_with_file_and_line(tmp_path):
    _write(tmp_path / "k8s/web.yaml", DEPLOY + "---\napiVersion: v1\nkind: Service\n"
           "metadata: {name: web\nspec: {}\n")
    with pytest.raises(RenderError) as info:
        render_files([str(tmp_path / "k8s")], tmp_path)
    text = str(info.value)
    assert "\n" not in text
    assert text.startswith("k8s/web.yaml:") and "invalid YAML" in text
    line = int(text.split(":")[1])
    assert 12 <= line <= 14  # the unclosed flow mapping of the second document


def test_an_object_without_a_name_names_its_file(tmp_path):
    _write(tmp_path / "a.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata: {}\n")
    with pytest.raises(RenderError, match=r"^a.yaml: ConfigMap without metadata.name$"):
        render_files([str(tmp_path / "a.yaml")], tmp_path)


def _kustomize_project(root: Path) -> Path:
    _write(root / "base/deploy.yaml", DEPLOY)
    _write(root / "base/kustomization.yaml", "resources: [deploy.yaml]\n"
           "configMapGenerator: [{name: web-config, literals: [MODE=base]}]\n")
    _write(root / "overlays/dev/kustomization.yaml", """\
        resources: [../../base]
        namePrefix: dev-
        labels: [{pairs: {env: dev}}]
        """)
    return root / "overlays/dev"


@needs_kubectl
def test_kustomize_renders_an_overlay_over_its_base(tmp_path):
    out = render_kustomize(_kustomize_project(tmp_path), str(KUBECTL))
    names = sorted((r.obj["kind"], r.obj["metadata"]["name"]) for r in out)
    assert ("Deployment", "dev-web") in names
    assert any(k == "ConfigMap" and n.startswith("dev-web-config-") for k, n in names)
    assert all(r.obj["metadata"]["labels"]["env"] == "dev" for r in out)


@needs_kubectl
def test_a_kustomize_error_is_one_line_naming_the_file(tmp_path):
    overlay = _kustomize_project(tmp_path)
    _write(tmp_path / "base/kustomization.yaml", "resources: [deploy.yaml, missing.yaml]\n")
    with pytest.raises(RenderError) as info:
        render_kustomize(overlay, str(KUBECTL))
    text = str(info.value)
    assert "\n" not in text and "missing.yaml" in text and text.startswith("kustomize ")


@needs_kubectl
def test_kustomize_inputs_include_the_base_the_overlay_refers_to(tmp_path):
    overlay = _kustomize_project(tmp_path)
    cfg = _write(tmp_path / "devloop.yaml", f"""\
        version: 1
        kustomize: {overlay.relative_to(tmp_path)}
        services:
          web: {{context: svc, image: web}}
        """)
    _write(tmp_path / "svc/Dockerfile", "FROM scratch\n")
    config = load_config(cfg)
    assert set(input_paths(config)) == {overlay.resolve(), (tmp_path / "base").resolve()}
    env = {**os.environ, "DEVLOOP_KUBECTL": str(KUBECTL)}
    assert {r.obj["kind"] for r in render(config, "dev", env)} == {"Deployment", "ConfigMap"}


def test_kubectl_is_found_beside_helm_or_by_its_variable(tmp_path):
    assert find_kubectl({"DEVLOOP_KUBECTL": "/x/kubectl"}) == "/x/kubectl"
    helm = _write(tmp_path / "bin/helm", "#!/bin/sh\n")
    kubectl = _write(tmp_path / "bin/kubectl", "#!/bin/sh\n")
    helm.chmod(0o755)
    kubectl.chmod(0o755)
    assert find_kubectl({"DEVLOOP_HELM": str(helm), "PATH": "/nonexistent"}) == str(kubectl)


HELM = REPO / ".tools/bin/helm"


@pytest.mark.skipif(not HELM.is_file(), reason="scripts/setup puts helm in .tools/bin")
def test_a_chart_template_or_values_mistake_is_one_line_with_file_and_line(tmp_path):
    from devloop.manifests.render import render_chart_sources

    chart = tmp_path / "chart"
    _write(chart / "Chart.yaml", "apiVersion: v2\nname: demo\nversion: 0.1.0\n")
    _write(chart / "values.yaml", "mode: one\n")
    _write(chart / "templates/cm.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n"
           "  name: cfg\ndata:\n  MODE: {{ .Values.mode | quote }}\n")
    out = render_chart_sources(chart, "demo", "ns", [chart / "values.yaml"], {},
                               helm=str(HELM))
    assert [(r.obj["kind"], r.source) for r in out] == [("ConfigMap", "demo/templates/cm.yaml")]
    _write(chart / "templates/cm.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n"
           "  name: cfg\ndata:\n  MODE: {{ .Values.mode | quote }\n")
    with pytest.raises(RenderError) as info:
        render_chart_sources(chart, "demo", "ns", [], {}, helm=str(HELM))
    text = str(info.value)
    assert "\n" not in text and "templates/cm.yaml:6" in text
    _write(chart / "templates/cm.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\n")
    _write(chart / "values.yaml", "mode: [one\n")
    with pytest.raises(RenderError) as info:
        render_chart_sources(chart, "demo", "ns", [chart / "values.yaml"], {}, helm=str(HELM))
    assert "values.yaml" in str(info.value) and "line" in str(info.value)

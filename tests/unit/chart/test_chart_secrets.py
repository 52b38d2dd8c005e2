"""Secrets stay out of git, out of ConfigMaps and pod specs, and out of the packaged chart."""

from __future__ import annotations

import base64
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest
import yaml

SECRET_VALUES = {
    "backend.secrets.jwtSecretKey": "jwt-7f3a9c",
    "backend.secrets.smtpUser": "someone@example.test",
    "backend.secrets.smtpPass": "smtp-pass-51d2",
    "chatbot.secrets.openrouterApiKey": "sk-or-v1-e8b4",
}


@pytest.fixture(scope="module")
def rendered_with_secrets(helm):
    return helm.render(*[f"--set={path}={value}" for path, value in SECRET_VALUES.items()])


def test_secret_values_appear_only_in_secrets(rendered_with_secrets) -> None:
    encoded = {base64.b64encode(v.encode()).decode() for v in SECRET_VALUES.values()}
    for obj in rendered_with_secrets:
        if obj["kind"] == "Secret":
            continue
        text = yaml.safe_dump(obj)
        for needle in {*SECRET_VALUES.values(), *encoded}:
            assert needle not in text, f"{obj['kind']}/{obj['metadata']['name']} leaks a secret"


def test_configmaps_hold_no_secret_keys(rendered) -> None:
    secret_keys = {key for secret in rendered.of_kind("Secret") for key in secret["data"]}
    for configmap in rendered.of_kind("ConfigMap"):
        assert not secret_keys & set(configmap["data"]), configmap["metadata"]["name"]


def test_secrets_are_base64_in_data_not_plain(rendered_with_secrets) -> None:
    secret = rendered_with_secrets.get("Secret", "backend-secrets")
    assert "stringData" not in secret
    assert SECRET_VALUES["backend.secrets.smtpPass"] not in yaml.safe_dump(secret)


def test_optional_secrets_may_stay_empty(rendered) -> None:
    """SMTP and OpenRouter are optional: the stack renders (and runs) without them."""
    assert rendered.get("Secret", "backend-secrets")["data"]["SMTP_USER"] == ""
    assert rendered.get("Secret", "backend-secrets")["data"]["SMTP_PASS"] == ""
    assert rendered.get("Secret", "chatbot-secrets")["data"]["OPENROUTER_API_KEY"] == ""


def test_committed_values_hold_only_empty_secret_placeholders(helm) -> None:
    values = yaml.safe_load((helm.chart / "values.yaml").read_text())
    assert values["backend"]["secrets"] == {"jwtSecretKey": "", "smtpUser": "", "smtpPass": ""}
    assert values["chatbot"]["secrets"] == {"openrouterApiKey": ""}


def test_secrets_example_holds_placeholders_the_chart_refuses(helm) -> None:
    example = helm.chart / "secrets.example.yaml"
    values = yaml.safe_load(example.read_text())
    assert values == {
        "backend": {"secrets": {"jwtSecretKey": "REPLACE_ME", "smtpUser": "", "smtpPass": ""}},
        "chatbot": {"secrets": {"openrouterApiKey": ""}},
    }
    result = helm.template("-f", str(example))
    assert result.returncode != 0
    assert "REPLACE_ME placeholder" in result.stderr


def test_real_secrets_file_is_git_ignored(helm) -> None:
    def ignored(path: Path) -> bool:
        proc = subprocess.run(
            ["git", "check-ignore", "-q", str(path)], cwd=helm.chart, check=False, timeout=30
        )
        assert proc.returncode in (0, 1), "git check-ignore failed: not a git checkout?"
        return proc.returncode == 0

    assert ignored(helm.chart / "secrets.yaml")
    assert not ignored(helm.chart / "secrets.example.yaml")


def test_packaged_chart_leaves_out_local_secrets_files(helm, tmp_path: Path) -> None:
    """helm stores the chart's files in the release: a secrets.yaml must never be among them."""
    chart = tmp_path / "k8s"
    shutil.copytree(helm.chart, chart, ignore=shutil.ignore_patterns("secrets.yaml"))
    (chart / "secrets.yaml").write_text("backend:\n  secrets:\n    jwtSecretKey: real\n")
    result = helm.run("package", str(chart), "--destination", str(tmp_path))
    assert result.returncode == 0, result.stderr
    (package,) = tmp_path.glob("lumina-todo-*.tgz")
    with tarfile.open(package) as tar:
        names = {Path(name).name for name in tar.getnames()}
    assert "values.yaml" in names
    assert "secrets.yaml" not in names
    assert "secrets.example.yaml" not in names

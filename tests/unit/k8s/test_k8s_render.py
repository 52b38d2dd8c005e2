"""Rendering the real chart with the real helm binary, and where secrets come from."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from devloop.config.loader import ChartConfig
from devloop.manifests.render import RenderError, chart_values, render_chart
from tests.k8s.support import CHART, HELM

JWT = "test-only-jwt-value-0123456789"
# The mapping this repo's devloop.yaml gives (devloop itself knows no chart's values).
SET_ENV = {"backend.secrets.jwtSecretKey": "JWT_SECRET_KEY",
           "backend.secrets.smtpUser": "SMTP_USER", "backend.secrets.smtpPass": "SMTP_PASS",
           "chatbot.secrets.openrouterApiKey": "OPENROUTER_API_KEY"}
LUMINA = ChartConfig(path=CHART, release="lumina", set_env=SET_ENV)


def test_renders_every_object_of_the_chart_with_secrets_from_the_environment() -> None:
    values = chart_values(LUMINA, {"JWT_SECRET_KEY": JWT, "PATH": "/bin"})
    objects = render_chart(CHART, "lumina", "lumina", [], values, helm=str(HELM))
    kinds = {(o["kind"], o["metadata"]["name"]) for o in objects}
    assert {("Deployment", "backend"), ("Deployment", "frontend"), ("Deployment", "chatbot"),
            ("PersistentVolumeClaim", "backend-sqlite-pvc"), ("Secret", "backend-secrets"),
            ("Namespace", "lumina")} <= kinds
    secret = next(o for o in objects if o["metadata"]["name"] == "backend-secrets")
    data = secret.get("stringData") or secret.get("data") or {}
    assert JWT in data.get("JWT_SECRET_KEY", "") or data.get("JWT_SECRET_KEY")


def test_secret_values_are_not_passed_on_the_command_line() -> None:
    seen: list[list[str]] = []

    def spy(args: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        seen.append(list(args))
        return subprocess.run(args, **kwargs)  # the real helm, run as devloop would

    render_chart(CHART, "lumina", "lumina", [], {"backend.secrets.jwtSecretKey": JWT},
                 helm=str(HELM), run=spy)
    assert seen and all(JWT not in arg for arg in seen[0])


def test_missing_secret_is_the_charts_own_message_on_one_line() -> None:
    with pytest.raises(RenderError) as info:
        render_chart(CHART, "lumina", "lumina", [], {}, helm=str(HELM), set_env=SET_ENV)
    text = str(info.value)
    assert "\n" not in text
    assert "backend.secrets.jwtSecretKey is required" in text
    assert "JWT_SECRET_KEY" in text  # and how to give it to devloop


def test_values_files_are_passed_to_helm(tmp_path: Path) -> None:
    values = tmp_path / "secrets.yaml"
    values.write_text(yaml.safe_dump({"backend": {"secrets": {"jwtSecretKey": JWT}},
                                      "frontend": {"image": {"tag": "dl-abc"}}}))
    objects = render_chart(CHART, "lumina", "lumina", [values], {}, helm=str(HELM))
    frontend = next(o for o in objects if o["kind"] == "Deployment"
                    and o["metadata"]["name"] == "frontend")
    assert frontend["spec"]["template"]["spec"]["containers"][0]["image"].endswith(":dl-abc")
    with pytest.raises(RenderError, match=f"values file {tmp_path / 'nope.yaml'} does not exist"):
        render_chart(CHART, "lumina", "lumina", [tmp_path / "nope.yaml"], {}, helm=str(HELM))


def test_missing_helm_says_so_and_how_to_get_it() -> None:
    with pytest.raises(RenderError) as info:
        render_chart(CHART, "lumina", "lumina", [], {}, helm="/nonexistent/helm")
    text = str(info.value)
    assert "helm is not installed" in text and "https://helm.sh" in text


def test_chart_values_from_set_env_names_and_the_prefix() -> None:
    env = {"JWT_SECRET_KEY": "j", "SMTP_USER": "u", "SMTP_PASS": "p", "OPENROUTER_API_KEY": "k",
           "DEVLOOP_SET_backend__secrets__smtpPass": "override", "DEVLOOP_SET_x": "",
           "HOME": "/root"}
    assert chart_values(LUMINA, env) == {
        "backend.secrets.jwtSecretKey": "j", "backend.secrets.smtpUser": "u",
        "backend.secrets.smtpPass": "override", "chatbot.secrets.openrouterApiKey": "k"}

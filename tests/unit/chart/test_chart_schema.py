"""The chart passes `helm lint` and its render is valid against Kubernetes' own schemas."""

from __future__ import annotations

import kubernetes_validate
import pytest

# Strict schemas (unknown fields fail) of current Kubernetes releases shipped by
# kubernetes-validate: 1.33 (oldest still supported upstream), 1.35 (helm 4's client version)
# and the newest the package ships.
KUBERNETES_VERSIONS = sorted({"1.33.0", "1.35.0", kubernetes_validate.latest_version()})


def test_helm_lint_is_clean(helm) -> None:
    result = helm.run(
        "lint",
        str(helm.chart),
        "--strict",
        "--namespace",
        "lumina",
        "--set",
        "backend.secrets.jwtSecretKey=test-only-jwt-key",
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "[WARNING]" not in result.stdout
    assert "[ERROR]" not in result.stdout
    assert "0 chart(s) failed" in result.stdout
    # Lint only logs `fail` calls (lint mode); none of the chart's rules may trip.
    assert "lumina-todo:" not in result.stderr


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_render_is_valid_against_strict_kubernetes_schemas(rendered, version: str) -> None:
    errors = []
    for obj in rendered:
        try:
            kubernetes_validate.validate(obj, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            errors.append(f"{obj['kind']}/{obj['metadata']['name']}: {exc.message}")
    assert errors == []


def test_strict_validation_rejects_an_unknown_field(rendered) -> None:
    """Guards the test above: strict mode really fails on a misspelt field."""
    deployment = {**rendered.get("Deployment", "backend")}
    deployment["spec"] = {**deployment["spec"], "replica": 1}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, "1.35.0", strict=True)

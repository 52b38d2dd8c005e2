"""devloop.yaml names workloads of any kind: `workload:` beside `deployment:`, `resources:` for
workloads devloop does not build, `image_paths:` for custom kinds; mistakes are one line each."""

from __future__ import annotations

from pathlib import Path

import pytest

from devloop.config.loader import ConfigError, load_config

HEAD = """\
version: 1
services:
  api:
    context: api
    image: api
"""


def _load(root: Path, text: str):
    (root / "api").mkdir(exist_ok=True)
    (root / "api/Dockerfile").write_text("FROM scratch\n")
    (root / "devloop.yaml").write_text(text)
    return load_config(root / "devloop.yaml")


def test_deployment_keeps_working_and_workload_names_any_kind(tmp_path: Path) -> None:
    svc = _load(tmp_path, HEAD).services["api"]
    assert (svc.kind, svc.deployment, str(svc.workload)) == ("Deployment", "api", "deployment/api")
    svc = _load(tmp_path, HEAD + "    workload: statefulset/db\n    container: app\n"
                ).services["api"]
    assert (svc.kind, svc.deployment, svc.container) == ("StatefulSet", "db", "app")
    assert str(svc.workload) == "statefulset/db"
    assert _load(tmp_path, HEAD + "    workload: cronjob/nightly\n").services["api"].container \
        == "nightly"


def test_workload_mistakes_are_one_line_each(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        _load(tmp_path, HEAD + "    workload: configmap/x\n")
    assert "\n" not in str(info.value)
    assert str(info.value).startswith(f"{tmp_path}/devloop.yaml:6: services.api.workload:"
                                      " 'configmap' is not a workload kind (write KIND/NAME")
    with pytest.raises(ConfigError, match="keep one"):
        _load(tmp_path, HEAD + "    deployment: a\n    workload: job/b\n")


def test_resources_name_workloads_devloop_does_not_build(tmp_path: Path) -> None:
    config = _load(tmp_path, HEAD + """\
resources:
  postgres:
    workload: statefulset/postgres
    port_forwards: [5432]
    logs: {exclude: ["checkpoint"]}
  cache:
    workload: redis
""")
    pg, cache = config.resources["postgres"], config.resources["cache"]
    assert str(pg.workload) == "statefulset/postgres" and pg.port_forwards[0].local_port == 5432
    assert not pg.logs.keeps("LOG: checkpoint starting") and pg.logs.keeps("ready")
    assert str(cache.workload) == "deployment/redis" and cache.container is None
    with pytest.raises(ConfigError) as info:
        _load(tmp_path, HEAD + "resources:\n  pg:\n    port_forwards: [5432]\n")
    assert "resources.pg.workload: is required" in str(info.value)


def test_image_paths_are_checked_when_read(tmp_path: Path) -> None:
    config = _load(tmp_path, HEAD + "image_paths:\n  Rollout: ['spec.template.spec.containers"
                   "[*].image']\n")
    assert config.image_paths == {"Rollout": ("spec.template.spec.containers[*].image",)}
    with pytest.raises(ConfigError, match=r"image_paths.Rollout: image path 'spec\.\.image'"):
        _load(tmp_path, HEAD + "image_paths:\n  Rollout: [spec..image]\n")

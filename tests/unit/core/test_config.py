"""devloop.yaml: every mistake reported with file, line and key path; never half-used."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from devloop.config.loader import ConfigError, LiveUpdateConfig, RunStep, SyncRule, load_config


def _write(root: Path, text: str) -> Path:
    (root / "services/backend").mkdir(parents=True, exist_ok=True)
    (root / "services/backend/Dockerfile").write_text("FROM scratch\n")
    path = root / "devloop.yaml"
    path.write_text(text)
    return path


GOOD = """\
version: 1
namespace: lumina
quiet_period_ms: 150
services:
  backend:
    context: services/backend
    image: lumina-backend
    build_args:
      MODE: dev
    ignore: ["*.md"]
"""


def test_a_valid_file_loads_with_defaults(tmp_path):
    config = load_config(_write(tmp_path, GOOD))
    svc = config.services["backend"]
    assert config.quiet_period_ms == 150 and config.namespace == "lumina"
    assert svc.deployment == "backend" and svc.container == "backend"
    assert svc.dockerfile == (tmp_path / "services/backend/Dockerfile").resolve()
    assert svc.build_args == {"MODE": "dev"}


def test_a_missing_dockerfile_is_reported_with_line_and_key(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    text = GOOD.replace("    image: lumina-backend\n",
                        "    image: lumina-backend\n    dockerfile: Dockerfil\n")
    with pytest.raises(ConfigError) as info:
        load_config(_write(tmp_path, text))
    assert str(info.value) == ("devloop.yaml:8: services.backend.dockerfile: "
                               "services/backend/Dockerfil does not exist")


def test_every_mistake_is_reported_at_once_with_suggestions(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    text = """\
version: 1
namespace: Lumina_NS
quiet_period: 100
services:
  backend:
    context: services/backend
    image: lumina-backend:latest
    dockerfil: Dockerfile
  chatbot:
    context: services/chatbot
    image: lumina-chatbot
"""
    with pytest.raises(ConfigError) as info:
        load_config(_write(tmp_path, text))
    lines = str(info.value).splitlines()
    assert "devloop.yaml:2: namespace: 'Lumina_NS' is not a valid namespace name" in lines
    assert ("devloop.yaml:3: quiet_period: unknown key (did you mean 'quiet_period_ms'?)"
            in lines)
    assert any(line.startswith("devloop.yaml:7: services.backend.image: 'lumina-backend:latest'")
               for line in lines)
    assert ("devloop.yaml:8: services.backend.dockerfil: unknown key "
            "(did you mean 'dockerfile'?)") in lines
    assert "devloop.yaml:10: services.chatbot.context: services/chatbot does not exist" in lines
    assert len(lines) == 5


def test_wrong_types_and_ranges(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    text = GOOD.replace("quiet_period_ms: 150", "quiet_period_ms: fast\nkeep_images: 0")
    with pytest.raises(ConfigError) as info:
        load_config(_write(tmp_path, text))
    lines = str(info.value).splitlines()
    assert "devloop.yaml:3: quiet_period_ms: must be a whole number, got 'fast'" in lines
    assert "devloop.yaml:4: keep_images: must be between 1 and 1000, got 0" in lines


def test_broken_yaml_names_the_line(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError) as info:
        load_config(_write(tmp_path, GOOD.replace("    image: lumina-backend",
                                                  "    image: [lumina-backend")))
    assert str(info.value).startswith("devloop.yaml:")
    assert "invalid YAML" in str(info.value)


def test_build_args_expand_environment_variables(tmp_path):
    text = GOOD.replace("MODE: dev", "MODE: ${DL_MODE:-dev}\n      OFFLINE: ${DL_OFFLINE}")
    with pytest.raises(ConfigError) as info:
        load_config(_write(tmp_path, text), env={})
    assert "environment variable DL_OFFLINE is not set" in str(info.value)
    config = load_config(_write(tmp_path, text), env={"DL_OFFLINE": "1"})
    assert config.services["backend"].build_args == {"MODE": "dev", "OFFLINE": "1"}


def test_cli_exits_2_on_a_config_error_and_prints_one_line_per_problem(tmp_path):
    path = _write(tmp_path, GOOD.replace("namespace: lumina", "namespac: lumina"))
    proc = subprocess.run([sys.executable, "-m", "devloop.cli", "sync", "--no-deploy", "-f",
                           str(path)], capture_output=True, text=True, cwd=tmp_path, timeout=60)
    assert proc.returncode == 2
    assert "devloop.yaml:2: namespac: unknown key (did you mean 'namespace'?)" in proc.stdout


def test_cli_help_reads_well():
    proc = subprocess.run([sys.executable, "-m", "devloop.cli", "sync", "--help"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0
    assert "exit codes of sync" in proc.stdout and "--service" in proc.stdout


LIVE = GOOD + """\
    live_update:
      sync:
        - {src: ./app/, dest: /app/app/}
        - {src: ., dest: /srv}
      fall_back_on: ["*.cfg"]
      run:
        - cmd: kill -HUP 1
          trigger: ["app/**"]
        - touch /tmp/reload
"""


def test_live_update_is_on_by_default_and_off_with_false(tmp_path):
    svc = load_config(_write(tmp_path, GOOD)).services["backend"]
    assert svc.live_update == LiveUpdateConfig(enabled=True)
    off = load_config(_write(tmp_path, GOOD + "    live_update: false\n"))
    assert off.services["backend"].live_update.enabled is False


def test_live_update_rules_are_normalized(tmp_path):
    live = load_config(_write(tmp_path, LIVE)).services["backend"].live_update
    assert live.enabled
    assert live.sync == (SyncRule("app", "/app/app/"), SyncRule("", "/srv"))
    assert live.fall_back_on == ("*.cfg",)
    assert live.run == (RunStep("kill -HUP 1", ("app/**",)), RunStep("touch /tmp/reload"))


def test_live_update_mistakes_are_reported_with_line_and_key(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    text = GOOD + """\
    live_update:
      sync:
        - {src: ../chatbot, dest: /app}
        - {src: app, dest: app}
        - {src: app, dets: /app}
      fallback_on: ["*.cfg"]
      run:
        - cmd: ""
        - trigger: ["app/**"]
        - {cmd: kill -HUP 1, trigger: "[z-a]"}
"""
    with pytest.raises(ConfigError) as info:
        load_config(_write(tmp_path, text))
    key = "services.backend.live_update"
    assert str(info.value).splitlines() == [
        f"devloop.yaml:16: {key}.fallback_on: unknown key (did you mean 'fall_back_on'?)",
        f"devloop.yaml:13: {key}.sync[0].src: '../chatbot' is outside the build context "
        "services/backend (src is relative to the context)",
        f"devloop.yaml:14: {key}.sync[1].dest: 'app' must be an absolute container path "
        "(starting with /)",
        f"devloop.yaml:15: {key}.sync[2].dets: unknown key (did you mean 'dest'?)",
        f"devloop.yaml:15: {key}.sync[2].dest: is required",
        f"devloop.yaml:18: {key}.run[0].cmd: must not be empty",
        f"devloop.yaml:19: {key}.run[1].cmd: is required (the shell command to run)",
        f"devloop.yaml:20: {key}.run[2].trigger: '[z-a]' is not a valid pattern "
        "(bad character range z-a)",
    ]
    with pytest.raises(ConfigError) as info:
        load_config(_write(tmp_path, GOOD + "    live_update: sometimes\n"))
    assert str(info.value) == ("devloop.yaml:11: services.backend.live_update: must be false, "
                               "true or a mapping, got 'sometimes'")

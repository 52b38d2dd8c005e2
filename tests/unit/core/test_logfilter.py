"""Which pod log lines the user sees: devloop.yaml `logs` filters, probe lines found from the pod
spec, and the one-line build summary; plus their validation in devloop.yaml."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from devloop.config.loader import ConfigError, load_config
from devloop.config.logfilter import (
    BuildTally,
    LogFilter,
    count_probe_lines,
    is_probe_line,
    probe_matcher,
    probe_paths,
)


def _pod(container: str = "web", **probes: dict) -> dict:
    return {"spec": {"containers": [{"name": "sidecar", "livenessProbe": {
        "httpGet": {"path": "/sidecar-health", "port": 9}}},
        {"name": container, **probes}]}}


def test_include_keeps_only_matching_lines_and_exclude_wins() -> None:
    f = LogFilter(include=(re.compile("ERROR|WARN"),), exclude=(re.compile("noisy"),))
    assert f.keeps("ERROR db down")
    assert not f.keeps("INFO started")
    assert not f.keeps("WARN noisy retry")
    assert LogFilter().keeps("anything") and not LogFilter()


def test_probe_paths_come_from_the_containers_own_http_probes() -> None:
    pod = _pod(livenessProbe={"httpGet": {"path": "/api/health", "port": 8000}},
               readinessProbe={"httpGet": {"path": "/api/health", "port": 8000}},
               startupProbe={"httpGet": {"port": 8000}},  # no path: the root
               )
    assert probe_paths(pod, "web") == ("/api/health", "/")
    tcp_only = _pod(livenessProbe={"tcpSocket": {"port": 8000}})
    assert probe_paths(tcp_only, "web") == ()
    assert probe_paths(pod, "absent") == ()


@pytest.mark.parametrize("line", [
    'INFO:     10.0.0.1:50000 - "GET /api/health HTTP/1.1" 200 OK',
    ' GET /api/health?full=1 200 in 3ms',
    '10.0.0.1 - - [27/Nov/2026] "HEAD /api/health HTTP/1.1" 200 0',
    '{"ua": "kube-probe/1.36", "path": "/ready"}',
    ' GET / 200 in 12ms',
])
def test_probe_request_lines_match(line: str) -> None:
    assert is_probe_line(line, probe_matcher(["/api/health", "/"]))


@pytest.mark.parametrize("line", [
    'INFO:     10.0.0.1:50000 - "GET /api/healthcheck HTTP/1.1" 200 OK',
    'INFO:     10.0.0.1:50000 - "POST /api/health HTTP/1.1" 405',
    ' GET /users 200 in 12ms',
    'user opened /api/health in the docs',
])
def test_other_lines_do_not_match(line: str) -> None:
    assert not is_probe_line(line, probe_matcher(["/api/health", "/"]))


def test_counting_probe_lines_and_no_paths_still_knows_the_kubelet() -> None:
    lines = ['"GET /health HTTP/1.1" 200', "ready", '"GET /health HTTP/1.1" 200']
    assert count_probe_lines(lines, probe_matcher(["/health"])) == 2
    assert is_probe_line("agent=kube-probe/1.30", probe_matcher([]))
    assert not is_probe_line('"GET /health HTTP/1.1" 200', probe_matcher([]))
    assert not is_probe_line("anything", None)


def test_build_tally_counts_steps_and_cache_hits() -> None:
    tally = BuildTally()
    for line in ["Step 1/3 : FROM python:3.11", " ---> 1a2b", "Step 2/3 : COPY . /app",
                 " ---> Using cache", " ---> 3c4d", "Step 3/3 : RUN true", " ---> Using cache",
                 "Successfully built 3c4d"]:
        tally.add(line)
    assert tally.summary() == "3 steps, 2 cached"
    assert BuildTally().summary() == ""


def _config(tmp_path: Path, logs: str) -> Path:
    (tmp_path / "svc").mkdir(exist_ok=True)
    (tmp_path / "svc" / "Dockerfile").write_text("FROM scratch\n")
    path = tmp_path / "devloop.yaml"
    path.write_text("version: 1\nnamespace: lumina\nservices:\n  api:\n    context: svc\n"
                    f"    image: api\n    logs:\n{logs}")
    return path


def test_logs_filters_load_from_devloop_yaml(tmp_path: Path) -> None:
    config = load_config(_config(tmp_path, '      exclude: ["GET /metrics", "DEBUG"]\n'
                                           "      include: ERROR|WARN|INFO\n"))
    logs = config.services["api"].logs
    assert logs.keeps("INFO ready") and not logs.keeps("INFO GET /metrics 200")
    assert not logs.keeps("TRACE ready")


def test_bad_logs_filters_name_file_line_and_key(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError) as info:
        load_config(_config(tmp_path, '      exclude: ["ok", "(unclosed"]\n'
                                       "      inclde: [x]\n"))
    problems = [str(p) for p in info.value.problems]
    assert problems == [
        "devloop.yaml:9: services.api.logs.inclde: unknown key (did you mean 'include'?)",
        "devloop.yaml:8: services.api.logs.exclude: '(unclosed' is not a valid regular"
        " expression (missing ), unterminated subpattern)",
    ]

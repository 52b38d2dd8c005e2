"""Dependency changes of the Lumina services are live (issue 21 item 3): with the repo's own
devloop.yaml and Dockerfiles, a requirements.txt or package.json change is copied into the
running container and installed there by a run step, instead of a rebuild; requirements-dev.txt
and the Dockerfile still rebuild. Pure planning: what bench/bench_deps.py measures for real."""

from __future__ import annotations

from pathlib import Path

from devloop.config.loader import load_config
from devloop.live.plan import LivePlan, Rebuild, plan, rules_for

REPO = Path(__file__).resolve().parents[3]


def _plan(service: str, changed: str, extra_files: tuple[str, ...] = ()) -> LivePlan | Rebuild:
    svc = load_config(REPO / "devloop.yaml", env={}).services[service]
    rules = rules_for(svc.dockerfile.read_text(), "Dockerfile", svc.target, svc.live_update,
                      svc.build_args)
    assert not isinstance(rules, str), rules
    image = {rel: "old" for rel in (changed, "app/main.py", "Dockerfile", *extra_files)}
    current = {**image, changed: "new"}
    return plan(rules, image, current, image, ("/app/data",))


def test_a_requirements_change_is_a_pip_install_in_the_running_backend() -> None:
    result = _plan("backend", "requirements.txt")
    assert isinstance(result, LivePlan), result
    assert [c.dest for c in result.copies] == ["/tmp/live/requirements.txt"]
    assert result.run[0].startswith("/opt/venv/bin/pip install") and "--no-index" in result.run[0]
    assert result.run[-1] == "kill -HUP 1"  # the new worker imports what was installed


def test_a_new_wheel_is_copied_with_it() -> None:
    result = _plan("backend", "wheels/h11-0.16.0-py3-none-any.whl")
    assert isinstance(result, LivePlan), result
    assert [c.dest for c in result.copies] == ["/tmp/live/wheels/h11-0.16.0-py3-none-any.whl"]


def test_a_package_json_change_is_an_npm_install_in_the_running_frontend() -> None:
    result = _plan("frontend", "package.json")
    assert isinstance(result, LivePlan), result
    assert [c.dest for c in result.copies] == ["/app/package.json"]
    assert result.run == ("npm install --offline --no-save --no-audit --no-fund"
                          " --cache /tmp/npm-cache",)


def test_dev_requirements_and_the_dockerfile_still_rebuild() -> None:
    for changed in ("requirements-dev.txt", "Dockerfile"):
        result = _plan("backend", changed)
        assert isinstance(result, Rebuild) and changed in result.reason, result
    assert isinstance(_plan("backend", "app/main.py"), LivePlan)  # positive control

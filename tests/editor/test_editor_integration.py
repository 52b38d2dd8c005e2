"""Editor integration (issue 7): the shipped tasks.json's problem matchers against real devloop
output, the JSON stream against its documented schema, each sync exit code from a real
scenario, and `devloop status`.

Cluster: the Kubernetes API stand-in (tests/kube_standin), pods as real Docker containers; the
Deployments are created here with the kubernetes client (no chart) to keep the scenarios small.
"""

from __future__ import annotations

import json
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from importlib import resources
from pathlib import Path

import docker
import jsonschema
import pytest
from kubernetes import client as k8s
from kubernetes import config as k8s_config

from devloop import exitcodes
from tests.conftest import busybox_context, devloop_env
from tests.e2e.lumina import prepare_images
from tests.kube_standin.kubeconfig import CONTEXT
from tests.kube_standin.standin import StandIn

# the module's cluster (a stand-in) is started once: its tests share a worker
pytestmark = pytest.mark.xdist_group("editor")

REPO = Path(__file__).resolve().parents[2]
NS = "lumina"

CRASHING_MAIN = """\
import sys
print("starting pyapp", flush=True)
total = sum(range(10))
ratio = total / 0
"""
GOOD_MAIN = """\
import pathlib
import time
print("pyapp up", flush=True)
pathlib.Path("/tmp/up").touch()
while True:
    time.sleep(1)
"""


def _matchers() -> dict[str, dict]:
    tasks = json.loads((REPO / ".vscode/tasks.json").read_text())["tasks"]
    return {t["label"]: t["problemMatcher"] for t in tasks if t.get("problemMatcher")}


def _problems(matcher: dict, output: str) -> list[tuple[str, int, str, str]]:
    pattern = matcher["pattern"]
    regex = re.compile(pattern["regexp"])
    found = []
    for line in output.splitlines():
        if m := regex.match(line):
            found.append((m.group(pattern["file"]), int(m.group(pattern["line"])),
                          m.group(pattern["severity"]), m.group(pattern["message"])))
    return found


@pytest.fixture(scope="module")
def cluster() -> Iterator[tuple[StandIn, k8s.AppsV1Api]]:
    docker_client = docker.from_env()
    prepare_images(docker_client)  # python:3.11-slim-bookworm for the Python service
    state = Path(tempfile.mkdtemp(prefix="devloop-editor-"))
    standin = StandIn(state / "standin", docker_client=docker_client,
                      volume_prefix=f"editor-{state.name[-6:]}-pvc")
    kubeconfig = standin.start()
    api = k8s_config.new_client_from_config(str(kubeconfig), context=CONTEXT,
                                            persist_config=False)
    k8s.CoreV1Api(api).create_namespace({"metadata": {"name": NS}})
    try:
        yield standin, k8s.AppsV1Api(api)
    finally:
        standin.stop(keep_pods=False, remove_volumes=True)
        shutil.rmtree(state, ignore_errors=True)


def _deployment(name: str, container: str) -> dict:
    labels = {"app": name}
    spec: dict = {"name": container, "image": f"{name}:none", "imagePullPolicy": "IfNotPresent"}
    if container == "pyapp":  # ready once main.py ran this far, so a crash is never "ready":
        # without a probe, a loaded machine started Python slower than devloop's 2 s settle
        # and a crash after it was a successful sync (exit 0)
        spec["readinessProbe"] = {"exec": {"command": ["test", "-f", "/tmp/up"]},
                                  "periodSeconds": 2}
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": name, "namespace": NS},
            "spec": {"replicas": 1, "selector": {"matchLabels": labels},
                     "progressDeadlineSeconds": 60,
                     "template": {"metadata": {"labels": labels}, "spec": {
                         "containers": [spec]}}}}


@pytest.fixture
def project(cluster, tmp_path: Path, image_prefix: str):
    standin, apps = cluster
    root = tmp_path / "repo"
    py = root / "services/pyapp"
    (py / "app").mkdir(parents=True)
    (py / "app/main.py").write_text(GOOD_MAIN)
    (py / "Dockerfile").write_text(
        "FROM python:3.11-slim-bookworm\n"
        "WORKDIR /app\n"
        "COPY app/ /app/app/\n"
        'CMD ["python3", "/app/app/main.py"]\n')
    box = root / "services/box"
    busybox_context(box, {"src/message.txt": "hello\n"},
                    cmd='["/bin/sh","-c","cat /app/message.txt; while true; do sleep 1; done"]')
    suffix = tmp_path.name[-6:].lower().replace("_", "")
    names = {"pyapp": f"pyapp-{suffix}", "box": f"box-{suffix}"}
    config = [
        "version: 1", f"namespace: {NS}", "rollout_timeout_s: 60", "quiet_period_ms: 50",
        "services:",
    ]
    for svc, dep in names.items():
        apps.create_namespaced_deployment(NS, _deployment(dep, svc))
        config += [f"  {svc}:", f"    context: services/{svc}",
                   f"    image: {image_prefix}-{svc}", f"    deployment: {dep}",
                   f"    container: {svc}"]
    (root / "devloop.yaml").write_text("\n".join(config) + "\n")
    yield root, standin.kubeconfig
    for dep in names.values():
        apps.delete_namespaced_deployment(dep, NS)


def devloop(root: Path, kubeconfig: Path, *args: str, timeout: float = 600
            ) -> subprocess.CompletedProcess[str]:
    env = devloop_env(KUBECONFIG=str(kubeconfig), XDG_CACHE_HOME=str(root.parent / "cache"),
                      HOME=str(root.parent))
    return subprocess.run([sys.executable, "-m", "devloop.cli", *args], cwd=root, env=env,
                          capture_output=True, text=True, timeout=timeout)


def test_problem_matchers_point_at_the_dockerfile_line_of_a_failing_build(project):
    root, kubeconfig = project
    dockerfile = root / "services/box/Dockerfile"
    lines = dockerfile.read_text().splitlines()
    lines.insert(3, 'RUN ["/bin/sh","-c","echo generating; exit 7"]')
    dockerfile.write_text("\n".join(lines) + "\n")
    proc = devloop(root, kubeconfig, "sync", "--service", "box")
    assert proc.returncode == exitcodes.BUILD_FAILED, proc.stdout + proc.stderr
    for label in ("devloop: watch", "devloop: sync"):
        problems = _problems(_matchers()[label], proc.stdout)
        assert [p[:3] for p in problems] == [("services/box/Dockerfile", 4, "error")], \
            proc.stdout
        assert "code: 7" in problems[0][3]  # legacy "non-zero code: 7", BuildKit "exit code: 7"
    background = _matchers()["devloop: watch"]["background"]
    begins = [ln for ln in proc.stdout.splitlines() if re.match(background["beginsPattern"], ln)]
    ends = [ln for ln in proc.stdout.splitlines() if re.match(background["endsPattern"], ln)]
    assert begins == ["[devloop] reload started: box"] and len(ends) == 1
    out = proc.stdout.splitlines()
    assert out.index(begins[0]) < out.index(next(ln for ln in out if "problem:" in ln)) \
        < out.index(ends[0]), "the problem must come between the begin and end lines"


def test_a_crashing_python_pod_becomes_a_problem_at_the_repo_file(project):
    root, kubeconfig = project
    (root / "services/pyapp/app/main.py").write_text(CRASHING_MAIN)
    proc = devloop(root, kubeconfig, "sync", "--service", "pyapp")
    assert proc.returncode == exitcodes.ROLLOUT_FAILED, proc.stdout + proc.stderr
    assert "ZeroDivisionError" in proc.stdout  # the pod's last lines are shown
    problems = _problems(_matchers()["devloop: watch"], proc.stdout)
    assert problems == [("services/pyapp/app/main.py", 4, "error",
                         "ZeroDivisionError: division by zero")]


def test_json_stream_matches_the_documented_schema(project):
    root, kubeconfig = project
    schema = json.loads(resources.files("devloop").joinpath("schemas/event-v1.json").read_text())
    validator = jsonschema.Draft202012Validator(schema)
    outputs = [devloop(root, kubeconfig, "sync", "-o", "json")]
    (root / "services/pyapp/app/main.py").write_text(CRASHING_MAIN)
    outputs.append(devloop(root, kubeconfig, "sync", "-o", "json"))
    (root / "services/box/Dockerfile").write_text("FROM scratch\nRUN [\"/nope\"]\n")
    outputs.append(devloop(root, kubeconfig, "sync", "-o", "json", "--service", "box"))
    (root / "devloop.yaml").write_text((root / "devloop.yaml").read_text() + "bogus: 1\n")
    outputs.append(devloop(root, kubeconfig, "sync", "-o", "json"))
    types = set()
    for proc in outputs:
        assert proc.stdout.strip(), proc.stderr
        for line in proc.stdout.splitlines():
            event = json.loads(line)
            errors = sorted(validator.iter_errors(event), key=str)
            assert not errors, f"{event}: {errors[0].message}"
            types.add(event["type"])
    # the runs covered success, pod logs, a crash, a failed build and a config error
    assert {"rollout.ready", "rollout.failed", "build.failed", "problem", "config.invalid",
            "log", "sync.finished"} <= types
    readme = (REPO / "README.md").read_text()
    for event_type in schema["properties"]["type"]["enum"]:
        assert f"`{event_type}`" in readme, f"{event_type} is not documented in the README"


def test_pod_log_lines_are_distinguishable_from_devloop_events(project):
    root, kubeconfig = project
    proc = devloop(root, kubeconfig, "sync", "-o", "json", "--service", "box")
    events = [json.loads(line) for line in proc.stdout.splitlines()]
    logs = [e for e in events if e["type"] == "log"]
    assert any(e["line"] == "hello" and e["source"] == "pod" for e in logs), events[-5:]
    assert all("source" not in e for e in events if e["type"] != "log")


def test_exit_codes_come_from_real_scenarios(project, tmp_path):
    root, kubeconfig = project
    assert devloop(root, kubeconfig, "sync").returncode == exitcodes.OK
    # configuration error
    config = root / "devloop.yaml"
    good = config.read_text()
    config.write_text(good.replace("rollout_timeout_s", "rollout_timeout"))
    assert devloop(root, kubeconfig, "sync").returncode == exitcodes.CONFIG_ERROR
    config.write_text(good)
    # deploy failed: the container name does not exist in the Deployment
    config.write_text(good.replace("    container: box", "    container: boxx"))
    (root / "services/box/src/message.txt").write_text("new content\n")
    proc = devloop(root, kubeconfig, "sync", "--service", "box")
    assert proc.returncode == exitcodes.DEPLOY_FAILED, proc.stdout
    assert "has no container 'boxx' (containers: box)" in proc.stdout
    config.write_text(good)
    # cluster unreachable: a kubeconfig whose server does not answer
    dead = tmp_path / "dead-kubeconfig"
    dead.write_text(Path(kubeconfig).read_text().replace(
        re.search(r"server: (\S+)", Path(kubeconfig).read_text()).group(1),
        "http://127.0.0.1:9"))
    proc = devloop(root, dead, "sync", "--service", "box")
    assert proc.returncode == exitcodes.CLUSTER_UNREACHABLE, proc.stdout
    assert "http://127.0.0.1:9" in proc.stdout
    # interrupted: Ctrl-C during a slow build
    (root / "services/box/Dockerfile").write_text(
        (root / "services/box/Dockerfile").read_text().replace(
            "COPY src/", 'RUN ["/bin/sleep","30"]\nCOPY src/'))
    env_proc = subprocess.Popen(
        [sys.executable, "-m", "devloop.cli", "sync", "--service", "box"], cwd=root,
        env=devloop_env(KUBECONFIG=str(kubeconfig), XDG_CACHE_HOME=str(tmp_path / "cache"),
                        HOME=str(tmp_path)),
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 60
    assert env_proc.stdout is not None
    for line in env_proc.stdout:
        if "build started" in line or time.monotonic() > deadline:
            break  # the build (a 30 s sleep step) is running: its output is held until it ends
    started = time.monotonic()
    env_proc.send_signal(signal.SIGINT)
    assert env_proc.wait(timeout=10) == exitcodes.INTERRUPTED
    assert time.monotonic() - started < 3


def test_status_reports_deployed_digest_and_local_changes(project):
    root, kubeconfig = project
    assert devloop(root, kubeconfig, "sync", "--service", "box").returncode == 0
    status = json.loads(devloop(root, kubeconfig, "status", "-o", "json",
                                "--service", "box").stdout)
    row = status["services"][0]
    assert status["schema"] == "devloop.status/v1"
    assert row["stale"] is False and row["deployed_digest"] == row["local_digest"]
    assert [p["ready"] for p in row["pods"]] == [True]
    (root / "services/box/src/message.txt").write_text("edited, not deployed\n")
    row = json.loads(devloop(root, kubeconfig, "status", "-o", "json",
                             "--service", "box").stdout)["services"][0]
    assert row["stale"] is True and row["deployed_digest"] != row["local_digest"]
    text = devloop(root, kubeconfig, "status", "--service", "box").stdout
    assert "local changes not deployed" in text

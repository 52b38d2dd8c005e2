"""The Lumina stack with the repo's devloop.yaml as it is, under `devloop watch`.

Live update (issue 12: `target: dev`, gunicorn reloaded by `kill -HUP 1` for the Python
services, `next dev` for the frontend): a saved backend file must be served by the same pod
(same UID, same container ID); a syntax error synced in is a problem at the repository path,
and the fix recovers with the data intact; `devloop sync` afterwards deploys a real image holding
exactly the synced sources.

The chart as a watched input (issue 19): a values.yaml edit runs in the backend, with its claim
(UID and data) unchanged and the other Deployments untouched; a template that adds a ConfigMap
creates it. (One module, so one Lumina stack serves both: its first deploy is the costliest
step of the suite.)

Real `devloop watch` / `devloop sync` processes on a copy of the repo, real images, the
stand-in at the chart's real probe timings, whose pods are Docker containers (network none:
the backend is asked from inside its own pod).
"""

from __future__ import annotations

import re
import secrets
import time

import pytest

from tests.e2e.lumina import NAMESPACE, DevloopProcess, LuminaCluster, replace_text, run_sync

# the module's Lumina stack (images, stand-in, a watch) is built once: its tests share a worker
pytestmark = [pytest.mark.e2e, pytest.mark.timeout(2400), pytest.mark.xdist_group("lumina-live")]

HEALTH = "services/backend/app/routes/health.py"


@pytest.fixture(scope="module")
def lumina(lumina_env: LuminaCluster) -> LuminaCluster:
    return lumina_env


@pytest.fixture
def watch(lumina: LuminaCluster) -> DevloopProcess:
    running = lumina.ensure_watch()
    running.settle(3)
    return running


def backend_container(lumina: LuminaCluster) -> tuple[str, str]:
    pods = [p for p in lumina.pods("backend") if p.metadata.deletion_timestamp is None]
    assert len(pods) == 1
    return pods[0].metadata.uid, pods[0].status.container_statuses[0].container_id


def wait_health(lumina: LuminaCluster, key: str, value: str, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    last: dict = {}
    while time.monotonic() < deadline:
        try:
            last = lumina.backend_call("GET", "/api/health") or {}
        except AssertionError:
            last = {}
        if last.get(key) == value:
            return last
        time.sleep(0.2)
    raise AssertionError(f"/api/health never had {key}={value!r} (last: {last})")


def test_a_backend_edit_is_served_by_the_same_container_with_the_data_kept(lumina, watch):
    lumina.needs_traffic()
    email = f"lin-{secrets.token_hex(3)}@example.com"
    token = lumina.backend_register_and_login(email, "correct horse 3")
    lumina.backend_call("POST", "/api/todos", token, {"title": "stay"})
    before = backend_container(lumina)
    others = {s: lumina.pod_uids(s) for s in ("chatbot", "frontend")}
    mark = watch.mark()
    marker = f"live-{secrets.token_hex(4)}"
    replace_text(lumina.repo / HEALTH, '"status": "ok"', f'"status": "ok", "live": "{marker}"')
    synced = watch.wait(lambda e: e["type"] == "live.sync.finished"
                        and e["service"] == "backend", after=mark, timeout=120,
                        what="backend live sync")
    assert synced["files"] == 1
    wait_health(lumina, "live", marker)
    assert backend_container(lumina) == before  # no new pod, no new container
    watch.settle(2)
    assert watch.since(mark, "build.started") == [] and watch.since(mark, "deploy.patched") == []
    for svc, uids in others.items():
        assert lumina.pod_uids(svc) == uids
    token = lumina.backend_login(email, "correct horse 3")
    assert [t["title"] for t in lumina.backend_call("GET", "/api/todos", token)] == ["stay"]


def test_a_synced_syntax_error_is_a_problem_and_the_fix_recovers_with_data_intact(
        lumina, watch):
    lumina.needs_traffic()
    email = f"kay-{secrets.token_hex(3)}@example.com"
    token = lumina.backend_register_and_login(email, "correct horse 4")
    lumina.backend_call("POST", "/api/todos", token, {"title": "survive the typo"})
    path = lumina.repo / HEALTH
    good = path.read_text()
    mark = watch.mark()
    path.write_text(good + "\ndef broken(:\n    pass\n")
    try:
        problem = watch.wait(lambda e: e["type"] == "problem" and e["service"] == "backend",
                             after=mark, timeout=120, what="problem from the synced file")
        assert problem["file"] == HEALTH and problem["kind"] == "crash"
        assert problem["line"] == len((good + "\ndef broken(:\n").splitlines())
        assert "SyntaxError" in problem["message"]
        assert watch.since(mark, "build.started") == []  # reported without a rebuild
    finally:
        mark = watch.mark()
        marker = f"fixed-{secrets.token_hex(4)}"
        path.write_text(good.replace('"status": "ok"', f'"status": "ok", "fix": "{marker}"',
                                     1))
    watch.wait(lambda e: e["type"] == "live.sync.finished" and e["service"] == "backend",
               after=mark, timeout=120, what="the fix synced")
    wait_health(lumina, "fix", marker)
    token = lumina.backend_login(email, "correct horse 4")
    assert [t["title"] for t in lumina.backend_call("GET", "/api/todos", token)] == [
        "survive the typo"]


def test_sync_after_live_updates_deploys_an_image_of_exactly_the_synced_sources(lumina, watch):
    lumina.needs_traffic()  # a live sync needs a running container to copy into
    mark = watch.mark()
    marker = f"img-{secrets.token_hex(4)}"
    replace_text(lumina.repo / HEALTH, '"status": "ok"', f'"status": "ok", "img": "{marker}"')
    watch.wait(lambda e: e["type"] == "live.sync.finished" and e["service"] == "backend",
               after=mark, timeout=120, what="backend live sync")
    watch.settle(2)
    assert lumina.stop() == 130
    result = run_sync(lumina)
    assert result.code == 0, result.text[-3000:]
    assert any(e["type"] == "deploy.patched" and e["service"] == "backend"
               for e in result.events)
    assert not any(e["type"].startswith("live.sync") for e in result.events)
    image = lumina.image("backend")
    inside = lumina.docker.containers.run(image, ["cat", "/app/app/routes/health.py"],
                                          remove=True, network_mode="none", user="10001")
    assert inside.decode() == (lumina.repo / HEALTH).read_text()


# --- the chart as a watched input ------------------------------------------------------------


def _generation(lumina: LuminaCluster, name: str) -> int:
    return int(lumina.apps.read_namespaced_deployment(name, NAMESPACE).metadata.generation)


def test_a_values_edit_runs_in_the_backend_and_keeps_the_claim_and_the_other_deployments(
        lumina):
    lumina.needs_traffic("the backend's environment and its data")
    watch = lumina.ensure_watch()
    watch.settle(3)
    email = f"ada-{secrets.token_hex(3)}@example.com"
    assert lumina.backend_register_and_login(email, "correct horse 42")
    claim = lumina.core.read_namespaced_persistent_volume_claim("backend-sqlite-pvc", NAMESPACE)
    others = {name: (_generation(lumina, name), lumina.pod_uids(name))
              for name in ("chatbot", "frontend")}
    values = lumina.repo / "k8s/values.yaml"
    # the backend's environment (the first in values.yaml), switched to the other one: the
    # test holds whatever ran before it
    was = re.search(r"^    environment: (\w+)\n    corsOrigins", values.read_text(), re.M)
    assert was is not None, "the backend's environment is not in k8s/values.yaml"
    old, new = was.group(1), "staging" if was.group(1) == "production" else "production"
    assert lumina.exec_in("backend", ["printenv", "ENVIRONMENT"]).strip() == old

    mark = watch.mark()
    started = time.monotonic()
    replace_text(values, f"    environment: {old}\n    corsOrigins",
                 f"    environment: {new}\n    corsOrigins", count=1)
    applied = watch.wait(lambda e: e["type"] == "manifests.applied", 60, "manifests.applied",
                         after=mark)
    assert applied["objects"] == ["ConfigMap/backend-config", "Deployment/backend"]
    watch.wait(lambda e: e["type"] == "rollout.ready" and e["service"] == "backend", 90,
               "backend rolled out", after=mark)
    while lumina.exec_in("backend", ["printenv", "ENVIRONMENT"]).strip() != new:
        assert time.monotonic() - started < 90, "the new environment is not running in 90 s"
        time.sleep(1)
    assert time.monotonic() - started < 90

    after = lumina.core.read_namespaced_persistent_volume_claim("backend-sqlite-pvc", NAMESPACE)
    assert after.metadata.uid == claim.metadata.uid
    assert after.metadata.resource_version == claim.metadata.resource_version  # not even touched
    assert lumina.backend_login(email, "correct horse 42")  # the data is still there
    for name, (generation, pods) in others.items():
        assert _generation(lumina, name) == generation, f"{name} was changed"
        assert lumina.pod_uids(name) == pods, f"{name}'s pods were replaced"


def test_a_template_that_adds_a_configmap_creates_it(lumina):
    watch = lumina.ensure_watch()
    mark = watch.mark()
    name = f"feature-flags-{secrets.token_hex(3)}"
    extra = lumina.repo / f"k8s/templates/{name}.yaml"
    tmp = extra.with_name(f".{name}.tmp")
    tmp.write_text(f"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\n"
                   "  namespace: {{ .Release.Namespace }}\ndata:\n  DARK_MODE: \"on\"\n")
    tmp.rename(extra)
    applied = watch.wait(lambda e: e["type"] == "manifests.applied", 60, "manifests.applied",
                         after=mark)
    assert applied["objects"] == [f"ConfigMap/{name}"]
    made = lumina.core.read_namespaced_config_map(name, NAMESPACE)
    assert made.data == {"DARK_MODE": "on"}
    assert made.metadata.labels["devloop.dev/managed-by"] == "devloop"

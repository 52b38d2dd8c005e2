"""Live update's file transfer into running pods on the API stand-in (pods are Docker containers).

Every test runs through both updaters: the Kubernetes exec API (ExecUpdater) and the shared
Docker daemon (DockerUpdater). What lands in the container is checked with `docker exec`.
"""

from __future__ import annotations

import os
import shutil
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import docker
import docker.errors
import pytest
from kubernetes.client.exceptions import ApiException

from devloop.k8s import retry
from devloop.k8s.cluster import Cluster, new_api_client
from devloop.live.updaters import (
    ContainerUpdater,
    DockerUpdater,
    ExecUpdater,
    SourcesChanged,
    Target,
    UpdateFailed,
)
from tests.kube_standin import StandIn
from tests.kube_standin.fixtures import content_image

USER = 1000


@pytest.fixture(scope="module")
def images(test_images: dict[str, str], docker_client: docker.DockerClient) -> dict[str, str]:
    """'app': busybox with a root-owned /app; 'notar': the host's dash as /bin/sh and nothing
    else on PATH (busybox's sh finds its own tar applet even when no tar is on PATH). Built by
    content, kept (see content_image)."""
    app = f"FROM {test_images['sleeper']}\nRUN mkdir -p /app && chmod 755 /app\n"
    files = {"dash": "/usr/bin/dash", "libc.so.6": "/lib/x86_64-linux-gnu/libc.so.6",
             "ld.so": "/lib64/ld-linux-x86-64.so.2", "busybox": shutil.which("busybox")}
    notar = {name: Path(str(source)).read_bytes() for name, source in files.items()}
    notar["Dockerfile"] = (
        b"FROM scratch\nCOPY dash /bin/sh\nCOPY libc.so.6 /lib/x86_64-linux-gnu/libc.so.6\n"
        b"COPY ld.so /lib64/ld-linux-x86-64.so.2\nCOPY busybox /opt/bb/busybox\n"
        b'CMD ["/opt/bb/busybox", "sleep", "100000"]\n')
    return {"app": content_image(docker_client, "devloop-cu-test/app",
                                 {"Dockerfile": app.encode()}),
            "notar": content_image(docker_client, "devloop-cu-test/notar", notar)}


@pytest.fixture(params=["exec", "docker"])
def updater(request: pytest.FixtureRequest, cluster: Cluster,
            docker_client: docker.DockerClient) -> ContainerUpdater:
    if request.param == "exec":
        return ExecUpdater(lambda: new_api_client(cluster))
    return DockerUpdater(docker_client)


@pytest.fixture
def pod(cluster: Cluster) -> Callable[..., Target]:
    """Start a one-container pod (optionally as a non-root user) and wait until it runs."""

    def start(image: str, user: int | None = None) -> Target:
        name = f"p-{uuid.uuid4().hex[:6]}"
        spec: dict = {"terminationGracePeriodSeconds": 1,
                      "containers": [{"name": "app", "image": image,
                                      "imagePullPolicy": "IfNotPresent"}]}
        if user is not None:
            spec["securityContext"] = {"runAsUser": user, "runAsGroup": user}
        cluster.core.create_namespaced_pod(cluster.namespace, {
            "metadata": {"name": name, "labels": {"app": name}}, "spec": spec})
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            status = cluster.core.read_namespaced_pod(name, cluster.namespace).status
            for cs in status.container_statuses or []:
                if cs.state.running and cs.container_id:
                    return Target(cluster.namespace, name, "app", cs.container_id)
            time.sleep(0.2)
        raise AssertionError(f"test setup: pod {name} did not start")

    return start


def sh(docker_client: docker.DockerClient, target: Target, command: str) -> tuple[int, str]:
    container = docker_client.containers.get(target.container_id.split("://", 1)[1])
    code, out = container.exec_run(["sh", "-c", command])
    return code, out.decode().strip()


def local(tmp_path: Path, name: str, text: str, mode: int = 0o644) -> Path:
    path = tmp_path / name
    path.write_text(text)
    path.chmod(mode)
    return path


def test_copied_files_keep_mode_and_content_and_belong_to_the_containers_user(
        updater: ContainerUpdater, pod: Callable[..., Target], test_images: dict[str, str],
        docker_client: docker.DockerClient, tmp_path: Path) -> None:
    target = pod(test_images["sleeper"], user=USER)
    code_py = local(tmp_path, "main.py", "print('v2')\n")
    script = local(tmp_path, "run.sh", "#!/bin/sh\necho hi\n", 0o775)
    result = updater.update(
        target, [(code_py, "/tmp/sync/app/main.py"), (script, "/tmp/sync/bin/run.sh")], [],
        ["cat /tmp/sync/app/main.py > /tmp/sync/ran"])  # runs after the copy: sees new content
    assert (result.files, result.deletes, result.method) == (2, 0, updater.name)
    assert result.bytes > 0
    assert sh(docker_client, target, "cat /tmp/sync/app/main.py") == (0, "print('v2')")
    assert sh(docker_client, target, "stat -c '%a %u' /tmp/sync/app/main.py /tmp/sync/bin/run.sh"
              " /tmp/sync/app") == (0, f"644 {USER}\n775 {USER}\n755 {USER}")
    assert sh(docker_client, target, "cat /tmp/sync/ran") == (0, "print('v2')")
    # the next save of the same file (DockerUpdater: no prepare exec any more) lands alike
    code_py.write_text("print('v3')\n")
    updater.update(target, [(code_py, "/tmp/sync/app/main.py")], [], [])
    assert sh(docker_client, target, "cat /tmp/sync/app/main.py; stat -c '%a %u'"
              " /tmp/sync/app/main.py") == (0, f"print('v3')\n644 {USER}")


def test_deleted_file_disappears_and_changed_file_is_replaced(
        updater: ContainerUpdater, pod: Callable[..., Target], test_images: dict[str, str],
        docker_client: docker.DockerClient, tmp_path: Path) -> None:
    target = pod(test_images["sleeper"])
    sh(docker_client, target, "mkdir -p /srv/app && echo old > /srv/app/gone.py"
       " && echo old > /srv/app/kept.py")
    new = local(tmp_path, "kept.py", "new\n")
    result = updater.update(target, [(new, "/srv/app/kept.py")], ["/srv/app/gone.py"], [])
    assert (result.files, result.deletes) == (1, 1)
    assert sh(docker_client, target, "ls /srv/app") == (0, "kept.py")
    assert sh(docker_client, target, "cat /srv/app/kept.py") == (0, "new")


def test_run_steps_stop_at_the_first_failure_which_is_named(
        updater: ContainerUpdater, pod: Callable[..., Target], test_images: dict[str, str],
        docker_client: docker.DockerClient, tmp_path: Path) -> None:
    target = pod(test_images["sleeper"])
    with pytest.raises(UpdateFailed) as failed:
        updater.update(target, [(local(tmp_path, "a.py", "a\n"), "/srv/a.py")], [],
                       ["echo one > /srv/r1", "echo compiling; echo boom >&2; exit 3",
                        "echo three > /srv/r3"])
    err = failed.value
    assert err.kind == "run_failed"
    assert "exit 3" in str(err) and "boom" in str(err) and target.pod in str(err)
    assert "\n" not in str(err)
    assert sh(docker_client, target, "cat /srv/a.py /srv/r1") == (0, "a\none")
    assert sh(docker_client, target, "test -e /srv/r3")[0] != 0


def test_root_owned_destination_is_not_writable_and_names_the_path(
        updater: ContainerUpdater, pod: Callable[..., Target], images: dict[str, str],
        docker_client: docker.DockerClient, tmp_path: Path) -> None:
    target = pod(images["app"], user=USER)
    with pytest.raises(UpdateFailed) as failed:
        updater.update(target, [(local(tmp_path, "main.py", "x\n"), "/app/main.py")], [], [])
    err = failed.value
    assert err.kind == "not_writable"
    assert err.path == "/app/main.py"
    assert "/app/main.py" in str(err) and target.pod in str(err) and "\n" not in str(err)
    assert sh(docker_client, target, "test -e /app/main.py")[0] != 0
    # positive control: the same pod accepts a writable destination
    updater.update(target, [(local(tmp_path, "ok.py", "ok\n"), "/tmp/ok.py")], [], [])
    assert sh(docker_client, target, "cat /tmp/ok.py") == (0, "ok")


def test_image_without_tar_says_what_is_missing(
        updater: ContainerUpdater, pod: Callable[..., Target], images: dict[str, str],
        docker_client: docker.DockerClient, tmp_path: Path) -> None:
    target = pod(images["notar"])
    copies = [(local(tmp_path, "main.py", "x\n"), "/srv/main.py")]
    with pytest.raises(UpdateFailed) as failed:
        updater.update(target, copies, [], [])
    assert failed.value.kind == "tar_missing"
    assert target.pod in str(failed.value) and "\n" not in str(failed.value)
    # exec names tar; the Docker path needs no tar but stops at the first tool missing
    tool = "tar" if updater.name == "exec" else "mkdir"
    assert f"the image has no {tool}" in str(failed.value)
    assert sh(docker_client, target, "test -e /srv/main.py")[0] != 0


def test_deleted_pod_is_reported_gone(updater: ContainerUpdater, pod: Callable[..., Target],
                                      cluster: Cluster, test_images: dict[str, str],
                                      tmp_path: Path) -> None:
    target = pod(test_images["sleeper"])
    copies = [(local(tmp_path, "main.py", "x\n"), "/srv/main.py")]
    updater.update(target, copies, [], [])  # positive control: the pod took a sync
    cluster.core.delete_namespaced_pod(target.pod, target.namespace, grace_period_seconds=0)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            cluster.core.read_namespaced_pod(target.pod, target.namespace)
        except ApiException as exc:
            if exc.status == 404:
                break
        time.sleep(0.2)
    with pytest.raises(UpdateFailed) as failed:
        updater.update(target, copies, [], [])
    assert failed.value.kind in ("gone", "exec_refused")
    assert target.pod in str(failed.value) or updater.name == "docker"




def test_a_file_name_that_is_not_utf8_is_synced_and_deleted(
        updater: ContainerUpdater, pod: Callable[..., Target], test_images: dict[str, str],
        docker_client: docker.DockerClient, tmp_path: Path) -> None:
    target = pod(test_images["sleeper"])
    name = os.fsdecode(b"caf\xe9 'quoted'.txt")  # Latin-1, as an old editor saves it
    source = tmp_path / name
    source.write_bytes(b"latin\n")
    source.chmod(0o600)
    dest = "/srv/" + name
    updater.update(target, [(source, dest)], [], [])
    container = docker_client.containers.get(target.container_id.split("://", 1)[1])
    code, out = container.exec_run(["sh", "-c", "for f in /srv/*; do printf '%s|' \"$f\";"
                                    " stat -c %a \"$f\"; cat \"$f\"; done"])
    assert code == 0 and out == b"/srv/caf\xe9 'quoted'.txt|600\nlatin\n", out
    updater.update(target, [], [dest], [])
    assert sh(docker_client, target, "ls -A /srv") == (0, "")


def test_a_file_that_vanishes_before_the_copy_asks_for_a_new_plan(
        updater: ContainerUpdater, pod: Callable[..., Target], test_images: dict[str, str],
        docker_client: docker.DockerClient, tmp_path: Path) -> None:
    target = pod(test_images["sleeper"])
    kept = local(tmp_path, "kept.py", "kept\n")
    with pytest.raises(SourcesChanged) as changed:
        updater.update(target, [(kept, "/srv/kept.py"), (tmp_path / "gone.py", "/srv/gone.py")],
                       [], [])
    assert changed.value.paths == [tmp_path / "gone.py"]
    assert "gone.py" in str(changed.value) and "\n" not in str(changed.value)
    assert sh(docker_client, target, "test -e /srv/kept.py")[0] != 0  # nothing was copied
    # positive control: the new plan (without the vanished file) syncs
    updater.update(target, [(kept, "/srv/kept.py")], [], [])
    assert sh(docker_client, target, "cat /srv/kept.py") == (0, "kept")


















def test_an_exec_refused_by_a_503_burst_is_retried_and_the_files_land(
        standin: StandIn, cluster: Cluster, pod: Callable[..., Target],
        test_images: dict[str, str], docker_client: docker.DockerClient, tmp_path: Path) -> None:
    target = pod(test_images["sleeper"])
    rule = standin.faults.fail("GET", rf"/pods/{target.pod}/exec$", status=503, count=2)
    retried: list[retry.Retry] = []
    updater = ExecUpdater(lambda: new_api_client(cluster), on_retry=retried.append,
                          policy=retry.RetryPolicy(base_s=0.05))
    result = updater.update(target, [(local(tmp_path, "a.py", "a\n"), "/srv/a.py")], [], [])
    assert rule.served == 2 and len(retried) == 2, retried
    assert all(f"exec into {target.label}" in str(r) for r in retried)
    assert result.files == 1 and sh(docker_client, target, "cat /srv/a.py") == (0, "a")



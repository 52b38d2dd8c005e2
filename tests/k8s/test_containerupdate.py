"""Live update's file transfer into running pods on the API stand-in (pods are Docker containers).

Every test runs through both updaters: the Kubernetes exec API (ExecUpdater) and the shared
Docker daemon (DockerUpdater). What lands in the container is checked with `docker exec`.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import tarfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import docker
import pytest
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from devloop.k8s import retry
from devloop.k8s.cluster import Cluster, new_api_client
from devloop.live.updaters import (
    CHUNK,
    Archive,
    ContainerUpdater,
    DockerUpdater,
    ExecUpdater,
    SourcesChanged,
    Target,
    UpdateFailed,
    classify,
    exec_hint,
    exec_transient,
)
from tests.kube_standin import StandIn

USER = 1000


@pytest.fixture(scope="module")
def images(test_images: dict[str, str], docker_client: docker.DockerClient,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """'app': busybox with a root-owned /app; 'notar': the host's dash as /bin/sh and nothing
    else on PATH (busybox's sh finds its own tar applet even when no tar is on PATH)."""
    run_id = uuid.uuid4().hex[:8]
    refs = {name: f"devloop-cu-test/{name}:{run_id}" for name in ("app", "notar")}
    dockerfile = f"FROM {test_images['sleeper']}\nRUN mkdir -p /app && chmod 755 /app\n"
    docker_client.images.build(fileobj=io.BytesIO(dockerfile.encode()), tag=refs["app"], rm=True)
    ctx = tmp_path_factory.mktemp("notar")
    files = {"dash": "/usr/bin/dash", "libc.so.6": "/lib/x86_64-linux-gnu/libc.so.6",
             "ld.so": "/lib64/ld-linux-x86-64.so.2", "busybox": shutil.which("busybox")}
    for name, source in files.items():
        shutil.copy(str(source), ctx / name)
    (ctx / "Dockerfile").write_text(
        "FROM scratch\nCOPY dash /bin/sh\nCOPY libc.so.6 /lib/x86_64-linux-gnu/libc.so.6\n"
        "COPY ld.so /lib64/ld-linux-x86-64.so.2\nCOPY busybox /opt/bb/busybox\n"
        'CMD ["/opt/bb/busybox", "sleep", "100000"]\n')
    docker_client.images.build(path=str(ctx), tag=refs["notar"], rm=True)
    yield refs
    for ref in refs.values():
        docker_client.images.remove(ref, force=True)


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


def test_messages_of_gnu_and_busybox_tools_map_to_kinds() -> None:
    """Outputs that cannot be provoked on the stand-in (a full disk, GNU tar's wording; the
    Debian-slim images use GNU tar), as the scripts would print them."""
    target = Target("ns", "backend-7d4f", "backend", "docker://abc")
    mark = "@@devloop-phase copy\n"
    full = classify(target, mark + "tar: app/x.py: Wrote only 512 of 10240 bytes\n"
                    "tar: app/y.py: Cannot write: No space left on device\n", 2, [])
    assert full.kind == "disk_full" and "backend-7d4f" in str(full)
    gnu = classify(target, mark + "tar: app/app/main.py: Cannot open: Permission denied\n"
                   "tar: Exiting with failure status due to previous errors\n", 2, [])
    assert (gnu.kind, gnu.path) == ("not_writable", "/app/app/main.py")
    rm = classify(target, "@@devloop-phase delete\nrm: cannot remove '/app/old.py': Permission"
                  " denied\n", 1, [])
    assert (rm.kind, rm.path) == ("not_writable", "/app/old.py")
    notar = classify(target, mark + "sh: 1: tar: not found\n", 127, [])
    assert notar.kind == "tar_missing" and "no tar" in str(notar)


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


def test_a_file_truncated_while_streamed_keeps_the_archive_valid_and_is_named(
        tmp_path: Path) -> None:
    big = tmp_path / "big.bin"
    big.write_bytes(b"x" * (3 * CHUNK + 100))
    small = local(tmp_path, "small.txt", "small\n")
    archive = Archive([(big, "/app/big.bin"), (small, "/app/small.txt")])
    chunks = archive.chunks()
    first = next(chunks)
    big.write_bytes(b"y" * 10)  # the editor rewrites it while the copy is on its way
    data = first + b"".join(chunks)
    assert len(data) == archive.size
    with tarfile.open(fileobj=io.BytesIO(data)) as members:
        assert [(m.name, m.size) for m in members] == [("app/big.bin", 3 * CHUNK + 100),
                                                        ("app/small.txt", 6)]
        assert members.extractfile("app/small.txt").read() == b"small\n"
    with pytest.raises(SourcesChanged) as changed:
        archive.check()
    assert changed.value.paths == [big]
    # positive control: an archive of unchanged files checks clean
    again = Archive([(small, "/app/small.txt")])
    assert len(b"".join(again.chunks())) == again.size
    again.check()


@pytest.mark.parametrize(("detail", "hint", "wrong"), [
    ("HTTP 403: pods \"api-1\" is forbidden: User \"dev\" cannot create resource \"pods/exec\"",
     "check RBAC allows you to create pods/exec", "kubelet"),
    ("HTTP 500: error dialing backend: dial tcp 10.0.3.7:10250: connect: connection refused",
     "cannot reach the kubelet on the pod's node", "RBAC"),
    ("HTTP 404: pods \"api-1\" not found", "the pod or its container is gone", "RBAC"),
])
def test_an_exec_failure_gets_the_hint_of_its_cause_only(detail: str, hint: str,
                                                         wrong: str) -> None:
    line = exec_hint(detail)
    assert hint in line and wrong not in line and "\n" not in line


def test_an_exec_failure_of_unknown_cause_gets_no_hint() -> None:
    assert exec_hint("HTTP 400: container app is not valid for pod api-1") == ""
    assert exec_hint("the exec ended without a status") == ""


def _handshake(status: int, message: str) -> ApiException:
    """What kubernetes.stream raises when the exec upgrade is answered with `status`."""
    body = json.dumps({"kind": "Status", "message": message, "code": status})
    return ApiException(status=0, reason=f"Handshake status {status} Reason -+-+- {{}} -+-+- "
                                          f"{body.encode()!r}")


def test_exec_opening_is_retried_on_transient_answers_only() -> None:
    assert exec_transient(_handshake(503, "the server is currently unable to handle it"))
    assert exec_transient(_handshake(429, "too many requests"))
    assert exec_transient(ApiException(status=0, reason="[Errno 104] Connection reset by peer"))
    assert not exec_transient(_handshake(
        500, "error dialing backend: dial tcp 10.0.3.7:10250: connect: connection refused"))
    assert not exec_transient(_handshake(403, "forbidden"))
    assert not exec_transient(_handshake(404, "pods \"x\" not found"))


class _ExecRefusingApi(ThreadingHTTPServer):
    """A fake API server on 127.0.0.1 that answers exec upgrades with `answers` in turn and
    reads of the pod with a running pod: the stand-in cannot yet refuse an exec with a 503 or
    fail to dial a kubelet, so this plays those API server answers (the client is real)."""

    def __init__(self, answers: list[tuple[int, str]]) -> None:
        self.answers = answers
        self.execs = 0
        super().__init__(("127.0.0.1", 0), _ExecRefusing)


class _ExecRefusing(BaseHTTPRequestHandler):
    server: _ExecRefusingApi

    def do_GET(self) -> None:
        if "/exec" in self.path:
            status, message = self.server.answers[min(self.server.execs,
                                                       len(self.server.answers) - 1)]
            self.server.execs += 1
            body = {"kind": "Status", "status": "Failure", "message": message, "code": status}
        else:
            status, body = 200, {"kind": "Pod", "apiVersion": "v1",
                                 "metadata": {"name": "api-1", "namespace": "ns"},
                                 "status": {"containerStatuses": [{
                                     "name": "app", "ready": True, "restartCount": 0,
                                     "image": "i", "imageID": "", "containerID": "docker://c1",
                                     "state": {"running": {}}}]}}
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


@pytest.mark.parametrize(("answers", "execs", "hint", "wrong"), [
    ([(503, "the server is currently unable to handle the request"),
      (429, "too many requests, please try again later"),
      (403, 'pods "api-1" is forbidden: User "dev" cannot create resource "pods/exec"')],
     3, "check RBAC allows you to create pods/exec", "kubelet"),
    ([(500, "error dialing backend: dial tcp 10.0.3.7:10250: connect: connection refused")],
     1, "cannot reach the kubelet on the pod's node", "RBAC"),
])
def test_a_refused_exec_is_retried_when_transient_and_says_what_to_check(
        answers: list[tuple[int, str]], execs: int, hint: str, wrong: str,
        tmp_path: Path) -> None:
    api = _ExecRefusingApi(answers)
    threading.Thread(target=api.serve_forever, daemon=True).start()
    try:
        config = k8s.Configuration(host=f"http://127.0.0.1:{api.server_address[1]}")
        retried: list[retry.Retry] = []
        updater = ExecUpdater(lambda: k8s.ApiClient(config), on_retry=retried.append,
                              policy=retry.RetryPolicy(base_s=0.01, deadline_s=20))
        with pytest.raises(UpdateFailed) as failed:
            updater.update(Target("ns", "api-1", "app", "docker://c1"),
                           [(local(tmp_path, "main.py", "x\n"), "/app/main.py")], [], [])
    finally:
        api.shutdown()
        api.server_close()
    message = str(failed.value)
    assert api.execs == execs and len(retried) == execs - 1
    assert failed.value.kind == "exec_refused" and "ns/api-1/app" in message
    assert hint in message and wrong not in message and "\n" not in message


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


def test_a_docker_engine_gone_mid_sync_is_a_refusal_the_exec_api_takes_over(
        tmp_path: Path) -> None:
    """No engine listens on the socket (it was stopped): one line, and the kind on which
    LiveSyncer tries the Kubernetes exec API instead."""
    gone = docker.DockerClient(base_url=f"unix://{tmp_path}/docker.sock", version="1.41")
    target = Target("ns", "api-1", "app", "docker://c1")
    with pytest.raises(UpdateFailed) as failed:
        DockerUpdater(gone).update(target, [(local(tmp_path, "a.py", "a\n"), "/srv/a.py")],
                                   [], [])
    assert failed.value.kind == "exec_refused"
    assert "ns/api-1/app" in str(failed.value) and "Docker Engine went away" in str(failed.value)
    assert "\n" not in str(failed.value)

"""Live update's file transfer without a pod: tool messages mapped to failure kinds, the
streamed archive, exec hints and retries against a fake exec endpoint on loopback, and the
fall-back to the exec API when the Docker Engine goes (the transfers into real pods are in
tests/k8s/test_containerupdate.py)."""

from __future__ import annotations

import io
import json
import tarfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import docker
import pytest
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from devloop.k8s import retry
from devloop.live.updaters import (
    CHUNK,
    Archive,
    DockerUpdater,
    ExecUpdater,
    SourcesChanged,
    Target,
    UpdateFailed,
    classify,
    exec_hint,
    exec_transient,
)
from tests.k8s.test_containerupdate import local


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


class LossyExecApi:
    """Docker's exec endpoints as the engine answers them when it loses a short exec's output
    (moby/moby#27289): the first `lost` prepare runs print nothing, though they ran."""

    def __init__(self, lost: int) -> None:
        self.lost, self.execs, self.archives = lost, 0, []

    def exec_create(self, cid: str, cmd: list[str], **_: object) -> dict:
        return {"Id": f"e{self.execs}"}

    def exec_start(self, exec_id: str) -> bytes:
        self.execs += 1
        return b"" if self.execs <= self.lost else b"@@devloop-phase id 1000 1000\n"

    def exec_inspect(self, exec_id: str) -> dict:
        return {"ExitCode": 0}

    def put_archive(self, cid: str, path: str, chunks) -> bool:
        with tarfile.open(fileobj=io.BytesIO(b"".join(chunks))) as tar:
            self.archives.append([(m.name, m.uid, m.gid) for m in tar.getmembers()])
        return True


@pytest.mark.parametrize("lost", [0, 1, 2])
def test_files_belong_to_the_containers_user_even_when_the_engine_loses_the_exec_output(
        tmp_path: Path, lost: int) -> None:
    """lost=0 is the positive control: one prepare exec, files owned by uid 1000."""
    api = LossyExecApi(lost)
    client = type("Client", (), {"api": api})()
    target = Target("ns", "api-1", "app", "docker://" + "c" * 64)
    result = DockerUpdater(client).update(  # type: ignore[arg-type]
        target, [(local(tmp_path, "a.py", "a\n"), "/srv/a.py")], [], [])
    assert result.files == 1 and api.execs == lost + 1
    assert api.archives == [[("srv/a.py", 1000, 1000)]]


def test_an_engine_that_never_returns_the_exec_output_fails_the_sync_without_root_files(
        tmp_path: Path) -> None:
    api = LossyExecApi(lost=99)
    client = type("Client", (), {"api": api})()
    target = Target("ns", "api-1", "app", "docker://" + "c" * 64)
    with pytest.raises(UpdateFailed) as failed:
        DockerUpdater(client).update(  # type: ignore[arg-type]
            target, [(local(tmp_path, "a.py", "a\n"), "/srv/a.py")], [], [])
    assert api.archives == [] and api.execs == DockerUpdater.PREPARE_TRIES
    assert "ns/api-1/app" in str(failed.value) and "rebuild" in str(failed.value)
    assert "\n" not in str(failed.value)

"""Readiness/liveness/startup probes, executed where the kubelet would run them.

httpGet and tcpSocket connect to 127.0.0.1 *inside the container's network namespace*: a helper
thread enters it with setns(2), opens the socket, and returns to the host namespace; the socket
stays bound to the container's loopback. exec probes use `docker exec`.
"""

from __future__ import annotations

import ctypes
import http.client
import os
import socket
import ssl
import threading
from dataclasses import dataclass
from typing import Any

import docker

CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


@dataclass
class ProbeOutcome:
    ok: bool
    message: str = ""


def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def connect_in_netns(pid: int, port: int, timeout: float) -> socket.socket:
    """A TCP connection to 127.0.0.1:port as seen from inside process `pid`'s network."""
    box: dict[str, Any] = {}

    def run() -> None:
        own = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
        target = os.open(f"/proc/{pid}/ns/net", os.O_RDONLY)
        try:
            _setns(target)
            try:
                box["sock"] = socket.create_connection(("127.0.0.1", port), timeout=timeout)
            except OSError as exc:
                box["error"] = exc
            finally:
                _setns(own)
        except OSError as exc:
            box.setdefault("error", exc)
        finally:
            os.close(own)
            os.close(target)

    thread = threading.Thread(target=run, name="standin-probe", daemon=True)
    thread.start()
    thread.join(timeout + 1)
    if "sock" in box:
        return box["sock"]
    raise box.get("error") or TimeoutError(f"connect to port {port} timed out")


def resolve_port(port: Any, container: dict[str, Any]) -> int:
    if isinstance(port, int):
        return port
    if str(port).isdigit():
        return int(port)
    for entry in container.get("ports") or []:
        if entry.get("name") == port:
            return int(entry["containerPort"])
    raise ValueError(f"port {port!r} is not a named port of container {container.get('name')}")


def run_probe(
    probe: dict[str, Any],
    container: dict[str, Any],
    pid: int,
    docker_client: docker.DockerClient,
    container_id: str,
) -> ProbeOutcome:
    timeout = float(probe.get("timeoutSeconds", 1))
    try:
        if "httpGet" in probe:
            return _http(probe["httpGet"], container, pid, timeout)
        if "tcpSocket" in probe:
            port = resolve_port(probe["tcpSocket"]["port"], container)
            connect_in_netns(pid, port, timeout).close()
            return ProbeOutcome(True)
        if "exec" in probe:
            return _exec(probe["exec"].get("command") or [], docker_client, container_id, timeout)
    except (OSError, ValueError, http.client.HTTPException) as exc:
        return ProbeOutcome(False, str(exc))
    return ProbeOutcome(True, "probe kind not supported by the stand-in; treated as success")


def _http(
    spec: dict[str, Any], container: dict[str, Any], pid: int, timeout: float
) -> ProbeOutcome:
    port = resolve_port(spec.get("port"), container)
    path = spec.get("path") or "/"
    scheme = spec.get("scheme", "HTTP")
    url = f"{scheme.lower()}://127.0.0.1:{port}{path}"
    try:
        sock = connect_in_netns(pid, port, timeout)
    except OSError as exc:
        return ProbeOutcome(False, f'Get "{url}": dial tcp 127.0.0.1:{port}: connect: '
                            f"{exc.strerror or exc}")
    if scheme == "HTTPS":
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        sock = context.wrap_socket(sock)
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    conn.sock = sock
    try:
        headers = {h["name"]: h["value"] for h in spec.get("httpHeaders") or []}
        headers.setdefault("User-Agent", "kube-probe/1.35")
        conn.request("GET", path, headers=headers)
        response = conn.getresponse()
        response.read(10_240)
        if 200 <= response.status < 400:
            return ProbeOutcome(True)
        return ProbeOutcome(False, f"HTTP probe failed with statuscode: {response.status}")
    except (OSError, http.client.HTTPException) as exc:
        return ProbeOutcome(False, f'Get "{url}": {exc}')
    finally:
        conn.close()


def _exec(
    command: list[str], client: docker.DockerClient, container_id: str, timeout: float
) -> ProbeOutcome:
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            exec_id = client.api.exec_create(container_id, command)["Id"]
            box["output"] = client.api.exec_start(exec_id)
            box["exit"] = client.api.exec_inspect(exec_id)["ExitCode"]
        except docker.errors.DockerException as exc:
            box["error"] = exc

    thread = threading.Thread(target=run, name="standin-exec-probe", daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        return ProbeOutcome(False, f"command {command!r} timed out")
    if "error" in box:
        return ProbeOutcome(False, str(box["error"]))
    if box.get("exit") == 0:
        return ProbeOutcome(True)
    output = (box.get("output") or b"").decode("utf-8", "replace").strip()
    return ProbeOutcome(False, f"command {command!r} exited with {box.get('exit')}: {output}")

"""`pods/exec` and `pods/portforward` over WebSockets (the Kubernetes channel protocols).

exec runs `docker exec` in the pod's container; stdin/stdout/stderr/error map to channels
0/1/2/3 and the error channel carries the final `Status` with the exit code. portforward
connects to 127.0.0.1:<port> inside the container's network namespace.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
from collections.abc import Callable
from typing import Any

import docker
from docker.utils.socket import frames_iter

from . import errors
from .pod_worker import PodWorker
from .probes import connect_in_netns
from .store import Store
from .websocket import accept

EXEC_PROTOCOLS = ("v5.channel.k8s.io", "v4.channel.k8s.io", "channel.k8s.io")
FORWARD_PROTOCOLS = ("v4.channel.k8s.io", "channel.k8s.io")


class RemoteCommands:
    def __init__(
        self, store: Store, client: docker.DockerClient,
        worker_for: Callable[[str], PodWorker | None],
    ) -> None:
        self._store = store
        self._docker = client
        self._worker_for = worker_for

    def _running(self, namespace: str, pod_name: str, container: str | None) -> tuple[str, str]:
        pod = self._store.get("pods", namespace, pod_name)
        if pod is None:
            raise errors.not_found("pods", "", pod_name)
        names = [c["name"] for c in pod["spec"].get("containers") or []]
        name = container or names[0]
        if name not in names:
            raise errors.bad_request(f"container {name} is not valid for pod {pod_name}")
        worker = self._worker_for(pod["metadata"]["uid"])
        slot, current, _ = worker.container_ids(name) if worker else (None, None, None)
        if slot is None or current is None or not slot.running:
            raise errors.bad_request(
                f'unable to upgrade connection: container not found ("{name}")')
        return name, current

    def exec(self, handler: Any, namespace: str, pod: str, query: dict[str, list[str]]) -> int:
        def flag(key: str) -> bool:
            return (query.get(key) or ["false"])[0].lower() in ("true", "1")

        command = query.get("command") or []
        if not command:
            raise errors.bad_request("you must specify at least 1 command")
        _, container_id = self._running(namespace, pod, (query.get("container") or [None])[0])
        stdin, tty = flag("stdin"), flag("tty")
        ws, protocol = accept(handler, EXEC_PROTOCOLS)
        api = self._docker.api
        exec_id = api.exec_create(container_id, command, stdin=stdin, tty=tty,
                                  stdout=flag("stdout"), stderr=flag("stderr"))["Id"]
        sock = api.exec_start(exec_id, socket=True, tty=tty)
        raw = getattr(sock, "_sock", sock)

        def pump_stdin() -> None:
            while (message := ws.recv()) is not None:
                if not message:
                    continue
                channel, data = message[0], message[1:]
                if channel == 0 and stdin:
                    try:
                        raw.sendall(data)
                    except OSError:
                        return
                elif channel == 255 and protocol.startswith("v5") and data[:1] == b"\x00":
                    with contextlib.suppress(OSError):
                        raw.shutdown(socket.SHUT_WR)
                elif channel == 4 and tty:
                    with contextlib.suppress(ValueError, docker.errors.APIError):
                        size = json.loads(data)
                        api.exec_resize(exec_id, height=size.get("Height"),
                                        width=size.get("Width"))
            if stdin:
                with contextlib.suppress(OSError):
                    raw.shutdown(socket.SHUT_WR)

        reader = threading.Thread(target=pump_stdin, name="standin-exec-stdin", daemon=True)
        reader.start()
        try:
            for stream, data in frames_iter(sock, tty):
                ws.send(bytes([stream if stream in (1, 2) else 1]) + data)
            code = api.exec_inspect(exec_id).get("ExitCode")
            if code == 0:
                status: dict[str, Any] = {"metadata": {}, "status": "Success"}
            else:
                status = {
                    "metadata": {}, "status": "Failure",
                    "message": f"command terminated with non-zero exit code: error executing "
                               f"command {command}, exit code {code}",
                    "reason": "NonZeroExitCode",
                    "details": {"causes": [{"reason": "ExitCode", "message": str(code)}]},
                }
            ws.send(b"\x03" + json.dumps(status).encode())
        except (OSError, ValueError):  # the client hung up
            pass
        finally:
            ws.close()
            with contextlib.suppress(OSError):
                sock.close()
        return 101

    def portforward(self, handler: Any, namespace: str, pod_name: str,
                    query: dict[str, list[str]]) -> int:
        ports = [int(p) for value in query.get("ports") or [] for p in value.split(",") if p]
        if not ports:
            raise errors.bad_request("at least one port must be given")
        pod = self._store.get("pods", namespace, pod_name)
        if pod is None:
            raise errors.not_found("pods", "", pod_name)
        worker = self._worker_for(pod["metadata"]["uid"])
        running = [s for s in (worker.slots.values() if worker else []) if s.running and s.pid]
        if not running:
            raise errors.bad_request(f"unable to upgrade connection: pod {pod_name} is not "
                                     "running")
        pid = running[0].pid
        ws, _ = accept(handler, FORWARD_PROTOCOLS)
        conns: dict[int, socket.socket] = {}
        for index, port in enumerate(ports):
            for channel in (2 * index, 2 * index + 1):
                ws.send(bytes([channel]) + port.to_bytes(2, "little"))
            try:
                conns[index] = connect_in_netns(pid, port, 5.0)
                conns[index].settimeout(None)
            except OSError as exc:
                ws.send(bytes([2 * index + 1]) + (
                    f"error forwarding port {port} to pod {pod_name}: {exc}").encode())

        def pump(index: int, conn: socket.socket) -> None:
            try:
                while data := conn.recv(65536):
                    ws.send(bytes([2 * index]) + data)
            except (OSError, ValueError):
                pass
            ws.close()

        for index, conn in conns.items():
            threading.Thread(target=pump, args=(index, conn), daemon=True).start()
        try:
            while (message := ws.recv()) is not None:
                if not message:
                    continue
                channel, data = message[0], message[1:]
                conn = conns.get(channel // 2)
                if conn is not None and channel % 2 == 0 and data:
                    conn.sendall(data)
        except (OSError, ValueError):
            pass
        finally:
            for conn in conns.values():
                with contextlib.suppress(OSError):
                    conn.close()
            ws.close()
        return 101

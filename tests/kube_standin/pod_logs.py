"""`GET pods/{name}/log` served from `docker logs` of the pod's current or previous container."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator

import docker
import docker.errors

from . import errors
from .clock import now, parse_time
from .http_server import LogRequest
from .pod_worker import PodWorker
from .store import Store


class PodLogs:
    def __init__(
        self,
        store: Store,
        client: docker.DockerClient,
        worker_for: Callable[[str], PodWorker | None],
    ) -> None:
        self._store = store
        self._docker = client
        self._worker_for = worker_for

    def logs(self, namespace: str, pod_name: str, request: LogRequest) -> bytes | Iterator[bytes]:
        pod = self._store.get("pods", namespace, pod_name)
        if pod is None:
            raise errors.not_found("pods", "", pod_name)
        spec = pod.get("spec") or {}
        names = [c["name"] for c in spec.get("containers") or []]
        init_names = [c["name"] for c in spec.get("initContainers") or []]
        name = request.container
        if name is None:
            if len(names) != 1:
                raise errors.bad_request(
                    f"a container name must be specified for pod {pod_name}, choose one of: "
                    f"[{' '.join(names)}]" + (f" or one of the init containers: "
                                              f"[{' '.join(init_names)}]" if init_names else ""))
            name = names[0]
        elif name not in names and name not in init_names:
            raise errors.bad_request(f"container {name} is not valid for pod {pod_name}")
        worker = self._worker_for(pod["metadata"]["uid"])
        slot, current, previous = worker.container_ids(name) if worker else (None, None, None)
        if request.previous:
            target = previous
            if target is None:
                raise errors.bad_request(
                    f'previous terminated container "{name}" in pod "{pod_name}" not found')
        else:
            target = current
            if target is None:
                reason = slot.waiting[0] if slot and slot.waiting else "ContainerCreating"
                raise errors.bad_request(
                    f'container "{name}" in pod "{pod_name}" is waiting to start: {reason}')
        kwargs: dict[str, object] = {
            "stdout": True,
            "stderr": True,
            "timestamps": request.timestamps,
            "tail": request.tail_lines if request.tail_lines is not None else "all",
        }
        since: dt.datetime | None = None
        if request.since_time:
            try:
                since = parse_time(request.since_time)
            except ValueError as exc:
                raise errors.bad_request(f"invalid sinceTime {request.since_time!r}") from exc
        elif request.since_seconds is not None:
            since = now() - dt.timedelta(seconds=request.since_seconds)
        if since is not None:
            kwargs["since"] = max(int(since.timestamp()), 1)
        try:
            if not request.follow or request.previous:
                data = self._docker.api.logs(target, stream=False, follow=False, **kwargs)
                if request.limit_bytes is not None:
                    data = data[: request.limit_bytes]
                return data
            stream = self._docker.api.logs(target, stream=True, follow=True, **kwargs)
        except docker.errors.NotFound as exc:
            raise errors.bad_request(
                f'container "{name}" in pod "{pod_name}" is not available: {exc.explanation}'
            ) from exc
        return _limited(stream, request.limit_bytes)


class _limited:
    """Wraps a docker log stream: stops after `limit` bytes; close() releases the connection."""

    def __init__(self, stream: Iterator[bytes], limit: int | None) -> None:
        self._stream = stream
        self._left = limit

    def __iter__(self) -> Iterator[bytes]:
        for chunk in self._stream:
            if self._left is not None:
                chunk = chunk[: self._left]
                self._left -= len(chunk)
            yield chunk
            if self._left is not None and self._left <= 0:
                return

    def close(self) -> None:
        close = getattr(self._stream, "close", None)
        if close:
            close()

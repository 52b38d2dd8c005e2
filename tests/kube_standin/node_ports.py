"""NodePort services in host networking: 127.0.0.1:<nodePort> relays to 127.0.0.1:<targetPort>,
where the host-network pod listens, as a node's kube-proxy would make it reachable."""

from __future__ import annotations

import contextlib
import logging
import socket
import threading

from .store import Store

log = logging.getLogger("kube_standin.nodeports")


def _pump(src: socket.socket, dst: socket.socket) -> None:
    try:
        while data := src.recv(65536):
            dst.sendall(data)
    except OSError:
        pass
    finally:
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)


class _Relay:
    def __init__(self, node_port: int, target: int) -> None:
        self.node_port = node_port
        self.target = target
        self._server = socket.create_server(("127.0.0.1", node_port), reuse_port=False)
        self._server.settimeout(0.5)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name=f"standin-nodeport-{node_port}",
                                        daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=self._relay, args=(conn,), daemon=True).start()

    def _relay(self, conn: socket.socket) -> None:
        try:
            upstream = socket.create_connection(("127.0.0.1", self.target), timeout=5)
        except OSError:
            conn.close()
            return
        upstream.settimeout(None)
        # kube-proxy forwards packets as they come: no Nagle delay on either side of the relay
        for sock in (conn, upstream):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        back = threading.Thread(target=_pump, args=(upstream, conn), daemon=True)
        back.start()
        _pump(conn, upstream)
        back.join()
        conn.close()
        upstream.close()

    def close(self) -> None:
        self._stop.set()
        self._server.close()
        self._thread.join(2)


class NodePorts:
    """Keeps one relay per NodePort service port (numeric targetPort only)."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._relays: dict[int, _Relay] = {}
        self._failed: set[tuple[int, int]] = set()

    def reconcile(self) -> None:
        wanted: dict[int, int] = {}
        services, _ = self._store.list_raw("services")
        for svc in services:
            spec = svc.get("spec") or {}
            if spec.get("type") not in ("NodePort", "LoadBalancer"):
                continue
            for port in spec.get("ports") or []:
                target = port.get("targetPort", port.get("port"))
                if port.get("nodePort") and isinstance(target, int):
                    wanted[port["nodePort"]] = target
        for node_port in list(self._relays):
            relay = self._relays[node_port]
            if wanted.get(node_port) != relay.target:
                relay.close()
                del self._relays[node_port]
        for node_port, target in wanted.items():
            if node_port in self._relays or (node_port, target) in self._failed:
                continue
            try:
                self._relays[node_port] = _Relay(node_port, target)
                log.info("NodePort 127.0.0.1:%d -> 127.0.0.1:%d", node_port, target)
            except OSError as exc:
                self._failed.add((node_port, target))
                log.warning("cannot listen on NodePort %d: %s", node_port, exc)

    def close(self) -> None:
        for relay in self._relays.values():
            relay.close()
        self._relays.clear()

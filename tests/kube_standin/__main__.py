"""`python -m tests.kube_standin`: run the stand-in by hand and print the kubeconfig to use.

Prints exactly one line (the kubeconfig path) on stdout, logs to <state-dir>/standin.log, and
runs until SIGINT/SIGTERM. Then it removes its containers (unless --keep-pods) but never the
Docker volumes that back PVCs.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import signal
import sys
import tempfile
import threading
from pathlib import Path

import docker.errors

from .standin import StandIn


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.kube_standin",
        description="Kubernetes API stand-in on 127.0.0.1 (pods run as local Docker containers).",
    )
    parser.add_argument("--state-dir", type=Path, default=None,
                        help="where the kubeconfig, log and saved objects live "
                             "(default: a temporary directory, removed on exit)")
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (default: any)")
    parser.add_argument("--pod-network", choices=("none", "host"), default="none",
                        help="Docker network of pod containers; 'host' lets pods reach each "
                             "other and you reach them on localhost (default: none)")
    parser.add_argument("--real-time", action="store_true",
                        help="run probes at their real delays/periods (default: 10x faster)")
    parser.add_argument("--no-pods", action="store_true",
                        help="API and controllers only: pods are never started (no Docker)")
    parser.add_argument("--keep-pods", action="store_true",
                        help="on exit keep containers and objects for the next start")
    parser.add_argument("--node-docker-host", default=None, metavar="URL",
                        help="run pods on this Docker Engine (e.g. unix:///tmp/node.sock), "
                             "which gets images only by pulling them (imagePullPolicy)")
    parser.add_argument("-v", "--verbose", action="store_true", help="log every request")
    args = parser.parse_args(argv)

    state_dir = args.state_dir or Path(tempfile.mkdtemp(prefix="kube-standin-"))
    state_dir.mkdir(parents=True, exist_ok=True)
    logging.basicConfig(
        filename=state_dir / "standin.log",
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    standin = StandIn(
        state_dir,
        pod_network=args.pod_network,
        port=args.port,
        probe_time_scale=1.0 if args.real_time else 0.1,
        backoff_cap=300.0 if args.real_time else 10.0,
        backoff_base=10.0 if args.real_time else 1.0,
        run_pods=not args.no_pods,
        node_docker=args.node_docker_host,
    )
    done = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        done.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        kubeconfig = standin.start()
    except docker.errors.DockerException as exc:
        print(f"kube-standin: cannot reach the Docker Engine ({exc}); start it "
              "(scripts/start-dockerd) or pass --no-pods", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"kube-standin: cannot start on 127.0.0.1:{args.port}: {exc}", file=sys.stderr)
        return 1
    print(kubeconfig, flush=True)
    while not done.wait(1.0):
        pass
    standin.stop(keep_pods=args.keep_pods)
    if args.state_dir is None and not args.keep_pods:
        logging.shutdown()
        shutil.rmtree(state_dir, ignore_errors=True)  # we made it; nothing in it is needed now
    return 0


if __name__ == "__main__":
    sys.exit(main())

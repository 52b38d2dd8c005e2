"""Command line: `devloop watch`, `devloop sync`, `devloop status`, `devloop down`.

Wires the pieces together explicitly (config -> bus + renderers -> builder -> deployer ->
engine); nothing here is global except the process's signal handlers and stdlib logging set-up,
which belong to the entry point.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import ipaddress
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

from devloop import events as ev
from devloop import exitcodes
from devloop.config.loader import CONFIG_NAME, ConfigError, load_config
from devloop.inputs.digest import DigestCache, default_cache_path
from devloop.redact import Redactor
from devloop.ui.console import ConsoleRenderer, JsonRenderer, route_stdlib_logging, route_warnings

_EPILOG = """\
exit codes of sync:
""" + "\n".join(f"  {code:<4} {text}" for code, text in exitcodes.DESCRIPTIONS.items()) + """

examples:
  devloop watch                      rebuild and redeploy on every save, stream logs
  devloop watch --service backend    only the backend
  devloop sync && echo deployed      one shot for scripts and editor tasks
  devloop watch --output json        JSON lines (schema devloop.event/v1) for other tools
"""


def _port(text: str) -> int:
    """--ui-port: 0 (any free port) to 65535, or argparse's one-line usage error."""
    if not text.isascii() or not text.isdigit() or int(text) > 65535:
        raise argparse.ArgumentTypeError(f"'{text}' is not a port (0-65535; 0 picks a free one)")
    return int(text)


def _address(text: str) -> str:
    """--ui-address: an IP address to bind; `localhost` is 127.0.0.1 (the Host check and the
    printed URL need one address, not a name that may resolve to several)."""
    if text.lower() == "localhost":
        return "127.0.0.1"
    try:
        return str(ipaddress.ip_address(text.strip("[]")))
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not an IP address (e.g. 127.0.0.1, ::1, "
                                         "or 0.0.0.0 for every interface)") from None


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-f", "--config", type=Path, default=None, metavar="PATH",
                        help=f"config file (default: ./{CONFIG_NAME}, searched upwards)")
    common.add_argument("-s", "--service", action="append", default=[], metavar="NAME",
                        help="limit to this service (repeatable)")
    common.add_argument("-o", "--output", choices=("console", "json"), default="console",
                        help="human lines (coloured on a terminal) or JSON lines")
    common.add_argument("--context", default=None,
                        help="kube context (default: devloop.yaml's context, else the current)")
    common.add_argument("--no-deploy", action="store_true",
                        help="build images only; do not touch the cluster")
    build_output = common.add_mutually_exclusive_group()
    build_output.add_argument("--quiet-build", action="store_true",
                              help="hide docker build output (errors are still shown)")
    build_output.add_argument("--verbose-build", action="store_true",
                              help="print docker build output as it comes (default: one summary"
                                   " line on success, all of it on failure)")

    parser = argparse.ArgumentParser(
        prog="devloop",
        description="Hot-reload dev loop for Kubernetes: on save, rebuild only the service "
                    "whose inputs changed, patch its Deployment, wait for the rollout and "
                    "stream its logs.",
        epilog=_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    watch = sub.add_parser(
        "watch", parents=[common], help="watch sources and reload continuously",
        description="Build and deploy what is out of date, then watch the sources: each save "
                    "rebuilds only its service, patches its Deployment, waits for the rollout "
                    "and streams logs; a dashboard is served in the browser. Ctrl-C stops "
                    "devloop and leaves the workloads running.")
    watch.add_argument("--ui-port", type=_port, default=10350, metavar="PORT",
                       help="serve the browser dashboard on this port (default 10350; 0: any)")
    watch.add_argument("--ui-address", type=_address, default="127.0.0.1", metavar="ADDR",
                       help="address the dashboard binds (default 127.0.0.1; any other is "
                            "reachable from other machines and prints a warning)")
    watch.add_argument("--no-ui", action="store_true", help="do not serve the dashboard")
    sub.add_parser("sync", parents=[common], help="build and deploy what is out of date, once",
                   description="One shot: build and deploy whatever is out of date, wait for "
                               "the rollouts, exit with a code that says what happened.",
                   epilog=_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub.add_parser("status", parents=[common], help="deployed digests, staleness and pods",
                   description="For each service: the deployed digest, whether local sources "
                               "differ, and the pods' state.")
    down = sub.add_parser(
        "down", parents=[common], help="remove what devloop installed (never a claim's data)",
        description="Delete the Deployments, Services, ConfigMaps and Secrets devloop installed "
                    "or patched for the selected services. PersistentVolumeClaims are never "
                    "deleted: devloop names the claims it kept and the command that deletes "
                    "them.", epilog=_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    down.add_argument("--namespace", action="store_true",
                      help="also delete the namespace, when nothing devloop did not create is "
                           "left in it (a kept claim keeps it)")
    return parser


def find_config(start: Path) -> Path:
    """./devloop.yaml or the nearest one in a parent directory (like git finds .git)."""
    for directory in (start, *start.parents):
        candidate = directory / CONFIG_NAME
        if candidate.is_file():
            return candidate
    return start / CONFIG_NAME


def main(argv: Sequence[str] | None = None, stdout: TextIO | None = None) -> int:
    """The entry point: `_run`, with Ctrl-C before the signal handlers exist and a closed pipe
    (`devloop status | head -1`) ending quietly instead of in a traceback."""
    try:
        return _run(argv, stdout)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        with contextlib.suppress(OSError):  # nothing more can be written: silence the flush
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141


def _run(argv: Sequence[str] | None, stdout: TextIO | None) -> int:
    args = _parser().parse_args(argv)
    for stream in (sys.stdout, sys.stderr):  # a file name that is not UTF-8 is shown escaped
        if isinstance(stream, io.TextIOWrapper):  # (\udcXX; in JSON a valid escape of it)
            stream.reconfigure(errors="backslashreplace")
    out = stdout or sys.stdout
    redactor = Redactor.from_env(os.environ)
    json_output = args.output == "json"
    route_stdlib_logging(sys.stderr, redactor, json_output)
    bus = ev.EventBus()
    renderer = (JsonRenderer(out, redactor) if json_output else
                ConsoleRenderer(out, redactor, show_build_output=not args.quiet_build,
                                verbose_build=args.verbose_build))
    bus.subscribe(renderer)
    try:
        return _command(args, out, bus, redactor)
    finally:
        renderer.close()  # what still publishes (daemon threads) writes nothing from here on


def _command(args: argparse.Namespace, out: TextIO, bus: ev.EventBus, redactor: Redactor
             ) -> int:
    """Load the configuration, check the context, and run the command; its exit code."""
    json_output = args.output == "json"
    # status's stdout is its report: its warnings go to stderr with the library logs.
    route_warnings(None if args.command == "status" else
                   lambda text: bus.publish(ev.WARNING, None, message=text))

    config_path = args.config or find_config(Path.cwd())
    try:
        config = load_config(config_path)
    except ConfigError as exc:
        bus.publish(ev.CONFIG_INVALID, None, path=str(config_path),
                    problems=[str(p) for p in exc.problems])
        return exitcodes.CONFIG_ERROR
    unknown = [s for s in args.service if s not in config.services]
    if unknown:
        bus.publish(ev.ERROR, None, message=f"{config_path}: unknown service "
                    f"{', '.join(unknown)} (known: {', '.join(sorted(config.services))})")
        return exitcodes.CONFIG_ERROR
    if args.command != "status":  # status prints only its own report
        bus.publish(ev.CONFIG_LOADED, None, path=str(config.path),
                    services=sorted(config.services), resources=sorted(config.resources))
    if config.chart is not None:
        redactor.add_from_values(config.chart.set_values)
    if args.command != "status" and not args.no_deploy:
        from devloop.deploy.contextguard import check_config

        refused = check_config(config, args.context)  # before any request to that cluster
        if refused is not None:
            bus.publish(ev.ERROR, None, message=f"{config.path}: {refused}")
            return exitcodes.CONFIG_ERROR

    from devloop.app import App  # wiring of Docker and the cluster; imported late for --help

    ui = None
    if args.command == "watch" and not args.no_ui:
        from devloop.ui.dashboard import UiOptions

        ui = UiOptions(port=args.ui_port, address=args.ui_address)
    app = App(config, bus, redactor, context=args.context, deploy=not args.no_deploy,
              services=args.service or None, cache=DigestCache(default_cache_path(config.path)),
              ui=ui)
    if args.command == "status":
        return app.status(out, json_output)
    _install_signal_handlers(app)
    if args.command == "sync":
        return app.sync()
    if args.command == "down":
        return app.down(namespace=args.namespace)
    return app.watch()


def _install_signal_handlers(app: object) -> None:
    def handler(signum: int, _frame: object) -> None:
        app.interrupt()  # type: ignore[attr-defined]

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)


if __name__ == "__main__":
    raise SystemExit(main())

"""Wiring for one devloop run: Docker client, cluster deployer, pipeline, engine, log followers.

Kept apart from the CLI so tests can run a whole `watch` in-process with their own streams, and
apart from the engine so the engine stays free of Docker and Kubernetes construction details.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from typing import Any, TextIO

import docker
import docker.errors

from devloop import events as ev
from devloop import exitcodes, vocab
from devloop.config.loader import Config
from devloop.image import buildkit
from devloop.image.build import Builder, DockerUnreachable, checkout_id, docker_address
from devloop.image.buildslots import BuildSlots, limit_for
from devloop.inputs.digest import DigestCache, default_cache_path
from devloop.k8s.ownership import owned_secrets
from devloop.loop import pipeline as pl
from devloop.loop.engine import Engine
from devloop.redact import Redactor

_OUTCOME_EXIT = [  # worst first
    (vocab.CANCELLED, exitcodes.INTERRUPTED),
    (vocab.CLUSTER_UNREACHABLE, exitcodes.CLUSTER_UNREACHABLE),
    (vocab.BUILD_FAILED, exitcodes.BUILD_FAILED),
    (vocab.DOCKER_UNREACHABLE, exitcodes.BUILD_FAILED),
    (vocab.DISK_FULL, exitcodes.BUILD_FAILED),
    (vocab.DEPLOY_FAILED, exitcodes.DEPLOY_FAILED),
    (vocab.REGISTRY_UNREACHABLE, exitcodes.DEPLOY_FAILED),
    (vocab.ROLLOUT_FAILED, exitcodes.ROLLOUT_FAILED),
]


def exit_code(outcomes: Iterable[str], interrupted: bool = False) -> int:
    """The most severe outcome's exit code (see devloop.exitcodes)."""
    seen = set(outcomes)
    if interrupted:
        return exitcodes.INTERRUPTED
    for outcome, code in _OUTCOME_EXIT:
        if outcome in seen:
            return code
    return exitcodes.OK


class App:
    """Builds the object graph for a command and runs it."""

    def __init__(self, config: Config, bus: ev.EventBus, redactor: Redactor,
                 context: str | None = None, deploy: bool = True,
                 services: list[str] | None = None, cache: DigestCache | None = None,
                 ui: Any = None) -> None:
        self.config = config
        self.bus = bus
        self.redactor = redactor
        self.context = context
        self.deploy = deploy
        self.services = services
        self.cache = cache
        self.ui = ui  # devloop.ui.dashboard.UiOptions for `watch`; None: no dashboard
        # the chart's values are secrets for every command (status too); the environment is
        # read by the CLI, rendered Secret objects where the chart is rendered
        redactor.add_chart(config.chart)
        redactor.add(buildkit.secret_values(config.services, os.environ))  # build_secrets
        self.engine: Engine | None = None
        self.deployer: Any = None
        self._interrupted = False  # set by a signal handler: a plain flag, never a lock

    # --- construction ----------------------------------------------------------------------------

    def _builder(self, environment: dict[str, str] | None, wait: bool) -> Builder | None:
        """A Builder on the Docker Engine `environment` names. A Docker Engine that does not
        answer is reported in one line; with `wait` (watch) the builder is returned anyway and
        connects on first use, so reloads fail as docker_unreachable and are retried by the
        loop's engine."""
        choice = buildkit.choose(self.config.builder, os.environ)
        self.bus.publish(ev.BUILDER_SELECTED, None, builder=choice.name, reason=choice.reason)
        builder = Builder(lambda: docker.from_env(environment=environment),
                          keep_images=self.config.keep_images,
                          docker_host=docker_address(environment),
                          checkout=checkout_id(self.config.path),
                          kit=(buildkit.KitBuilder(choice.cli, environment,
                                                   redact=self.redactor.add)
                               if choice.cli is not None else None))
        try:
            builder.ping()
        except DockerUnreachable as exc:
            more = "; watching anyway: builds start once it answers" if wait else ""
            self.bus.publish(ev.ERROR, None, message=f"{exc}{more}")
            return builder if wait else None
        return builder

    def _live_syncer(self) -> Any:
        """The cluster half of live update, with the image records kept beside the hash cache
        (so a later `watch` can sync on top of an image an earlier run deployed)."""
        from devloop.k8s.cluster import new_api_client
        from devloop.live.image_files import SnapshotStore
        from devloop.live.sync import LiveSyncer
        from devloop.live.updaters import DockerUpdater, ExecUpdater

        cluster = self.deployer.cluster
        cache_file = self.cache.path if self.cache else default_cache_path(self.config.path)
        try:  # used only for the containers it proves are on this engine (DockerUpdater.holds)
            shared = DockerUpdater(docker.from_env(
                environment=self.deployer.docker_environment()))
        except (docker.errors.DockerException, vocab.DeployFailed):
            shared = None  # the exec API still works
        execs = ExecUpdater(lambda: new_api_client(cluster), on_retry=lambda r: self.bus.publish(
            ev.WARNING, message=str(r)))
        syncer = LiveSyncer(self.bus, cluster, execs,
                            SnapshotStore(cache_file.parent / "images"), self.config.root,
                            shared_daemon=shared)
        syncer.workloads = self.deployer.workloads_of  # one image may feed several workloads
        return syncer

    def _workloads_of(self, service: Any) -> list[Any]:
        """Every workload the service's image feeds; the one devloop.yaml names while the
        manifests do not render (the reload says why)."""
        from devloop.manifests.render import RenderError

        assert self.deployer is not None
        try:
            return self.deployer.workloads_of(service)
        except RenderError:
            return [service]

    def _container_watch(self, engine: Engine) -> Any:
        """With live update: report container (re)starts to the engine, which re-syncs a
        container that came back from its image without the synced files."""
        if not engine.live or self.deployer is None:
            return None
        from devloop.follow.restarts import ContainerWatch
        from devloop.loop.engine import ContainerStarted

        services = [t for s in engine.states.values() if s.digest.service.live_update.enabled
                    for t in self._workloads_of(s.digest.service)]
        watch = ContainerWatch(
            self.deployer.cluster, services,
            on_started=lambda name, pod, cid: engine.post(ContainerStarted(name, pod, cid)),
            on_error=lambda name, text: self.bus.publish(ev.WARNING, name, message=text))
        watch.start()
        return watch

    def _forwards(self, engine: Engine) -> Any:
        """The services' port forwards (follow.forwards), following their pods on their own."""
        if self.deployer is None:
            return None
        from devloop.follow.forwards import ForwardManager

        services = [*(s.digest.service for s in engine.states.values()),
                    *self.config.resources.values()]  # workloads devloop does not build
        manager = ForwardManager(self.deployer.cluster, services, self.bus,
                                 config_path=self.config.path.name,
                                 config=lambda: engine.config)
        manager.start()
        return manager

    def _dashboard(self, engine: Engine) -> Any:
        """The browser dashboard (devloop.ui.dashboard): a bus subscriber with its own server."""
        if self.ui is None:
            return None
        from devloop.commands.status import collect_status
        from devloop.ui import dashboard

        def status() -> list[dict[str, Any]]:
            cluster = self.deployer.cluster if self.deployer is not None else None
            return collect_status(engine.config, self.cache, self.services, self.context,
                                  cluster=cluster, probes=False,
                                  workloads=self._workloads_of if self.deployer else None)[0]

        return dashboard.start(self.bus, self.redactor, engine.post, status,
                               sorted({*engine.states, *self.config.resources}), self.ui,
                               only=self.services and [*self.services, *self.config.resources])

    def _build_engine(self, wait_for_docker: bool = False, live: bool = False) -> Engine | int:
        docker_env = None
        if self.deploy:
            from devloop.deploy.deployer import ClusterDeployer, ContextRefused

            try:
                self.deployer = ClusterDeployer.create(self.config, self.bus, self.redactor,
                                                       context=self.context)
            except ContextRefused as exc:
                self.bus.publish(ev.ERROR, None, message=str(exc))
                return exitcodes.CONFIG_ERROR
            except vocab.DeployFailed as exc:
                self.bus.publish(ev.ERROR, None, message=str(exc))
                return (exitcodes.CLUSTER_UNREACHABLE if exc.outcome == vocab.CLUSTER_UNREACHABLE
                        else exitcodes.DEPLOY_FAILED)
            docker_env = self.deployer.docker_environment()
            # what the Secrets of an earlier run hold, before any pod's output is shown
            self.redactor.add_secret_objects(owned_secrets(self.deployer.cluster))
        builder = self._builder(docker_env, wait_for_docker)
        if builder is None:
            return exitcodes.BUILD_FAILED
        live_syncer = self._live_syncer() if self.deployer is not None else None
        pipeline = pl.Pipeline(self.bus, builder, self.deployer, root=self.config.root,
                               live=live_syncer,
                               slots=BuildSlots(limit_for(self.config.max_parallel)))
        engine = Engine(self.config, self.bus, pipeline, services=self.services,
                        cache=self.cache, live=live and live_syncer is not None)
        if self.deployer is not None:  # an image built while a manifest edit waits goes with it
            self.deployer.images_wait_for_apply = engine.images_wait_for_apply
        return engine

    # --- commands --------------------------------------------------------------------------------

    def interrupt(self) -> None:
        """Called from the SIGINT/SIGTERM handler: must not take any lock."""
        self._interrupted = True
        if self.engine is not None:
            self.engine.request_stop("interrupted")

    def sync(self) -> int:
        engine = self._build_engine()
        if isinstance(engine, int):
            return engine
        self.engine = engine
        if self._interrupted:
            return exitcodes.INTERRUPTED
        if self.deployer is not None:  # like `tilt ci`: show new pods' output while waiting
            self.deployer.start_logs(list(engine.states), existing_tail=0)
        results = engine.run_once()
        if self.deployer is not None:
            self.deployer.close()
        outcomes = [r.outcome for r in results.values()]
        if engine.manifests_outcome is not None:  # the manifest apply after the reloads
            outcomes.append(engine.manifests_outcome)
        code = exit_code(outcomes, self._interrupted)
        self.bus.publish(ev.SYNC_FINISHED, None, exit_code=code,
                         services={n: r.outcome for n, r in results.items()})
        return code

    def watch(self) -> int:
        engine = self._build_engine(wait_for_docker=True, live=True)
        if isinstance(engine, int):
            return engine
        self.engine = engine
        if self._interrupted:
            return exitcodes.INTERRUPTED
        if self.deployer is not None:
            from devloop.follow.tracebacks import CrashWatch

            # a live-synced file that does not import is reported like a crashing rollout
            self.bus.subscribe(CrashWatch(self.bus, lambda: engine.config))
            self.deployer.start_logs(list(engine.states))
        containers = self._container_watch(engine)
        forwards = self._forwards(engine)
        ui = self._dashboard(engine)
        try:
            reason = engine.run()
        finally:
            if ui is not None:
                ui.close()
            if containers is not None:
                containers.stop()
            if forwards is not None:
                forwards.stop()
            if self.deployer is not None:
                self.deployer.close()
        self.bus.publish(ev.SHUTDOWN, None, reason=reason)
        return exitcodes.INTERRUPTED if reason == "interrupted" else exitcodes.OK

    def down(self, namespace: bool = False) -> int:
        """`devloop down`: remove what devloop installed or patched for the selected services
        (never a PersistentVolumeClaim); the namespace too with `namespace`, when it is empty
        of anything else. Exit codes as for sync."""
        import os

        from devloop.commands.down import run_down
        from devloop.deploy.deployer import connect_config, find_helm
        from devloop.k8s.cluster import ClusterUnreachable, check_reachable

        try:
            cluster = connect_config(self.config, self.context)
            check_reachable(cluster)
        except ValueError as exc:
            self.bus.publish(ev.ERROR, None, message=str(exc))
            return exitcodes.CLUSTER_UNREACHABLE
        except ClusterUnreachable as exc:
            self.bus.publish(ev.CLUSTER_UNREACHABLE, None, message=str(exc),
                             context=cluster.context, server=cluster.server)
            return exitcodes.CLUSTER_UNREACHABLE
        names = self.services or sorted(self.config.services)
        return run_down(cluster, self.config, [self.config.services[n] for n in names],
                        self.bus, os.environ, find_helm(), namespace=namespace)

    def status(self, out: TextIO, json_output: bool) -> int:
        from devloop.commands.status import collect_status, render_status

        rows, code = collect_status(self.config, self.cache, self.services, self.context,
                                    secrets=self.redactor.add_secret_objects)
        rows = self.redactor.value(rows)  # log tails and health messages can hold secrets
        import os

        from devloop.deploy.manifest_session import find_orphans

        orphaned = find_orphans(self.config, self.context, os.environ)
        if json_output:
            out.write(json.dumps({"schema": "devloop.status/v1", "services": rows,
                                  "orphaned": orphaned}) + "\n")
        else:
            out.write(render_status(rows))
            if orphaned:
                what = "deleted by the next apply" if self.config.prune else \
                    "set prune: true in devloop.yaml to delete them"
                out.write(f"orphaned (no longer in the manifests; {what}):"
                          f" {', '.join(orphaned)}\n")
        return code


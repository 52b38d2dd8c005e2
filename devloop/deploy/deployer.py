"""The cluster half of a reload: deliver -> install if missing -> patch -> rollout, plus logs.

Composes the single-purpose Kubernetes modules (cluster, deliver, install, patch, rollout,
podlogs) into the `Deployer` the pipeline calls, translating their errors into the pipeline's
outcomes and their progress into events. Called from worker threads; per-service state here is
only touched by that service's worker (the engine never runs two reloads of one service).
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from typing import Any

from kubernetes.client.exceptions import ApiException

from devloop import events as ev
from devloop.config.loader import Config, ResourceConfig, ServiceConfig
from devloop.deploy.contextguard import registry_refusal, shares_docker
from devloop.deploy.delivery import (
    Delivery,
    DeliveryError,
    DeliveryUnreachable,
    SharedDaemon,
    detect_delivery,
    pushed_fields,
)
from devloop.deploy.manifest_session import ManifestSession, Outcome
from devloop.deploy.patch import (
    Deployed,
    DeploymentNotFound,
    PatchError,
    container_index,
    patch_image,
    patch_image_at,
    patch_workload_image,
    read_deployed,
    read_workload_deployed,
    warn_rwo_rolling,
)
from devloop.deploy.rollout import RolloutResult, wait_rollout, wait_workload
from devloop.follow.logs import LogFollower
from devloop.image.problems import traceback_problem
from devloop.k8s import timeouts
from devloop.k8s.cluster import (
    Cluster,
    ClusterUnreachable,
    check_reachable,
    connect,
    new_api_client,
)
from devloop.k8s.errors import is_connection_error
from devloop.k8s.workloads import WorkloadRef, await_workload, fed_by, read_workload
from devloop.manifests.apply import ApplyError
from devloop.manifests.render import RenderError, env_values
from devloop.manifests.render import find_helm as find_helm
from devloop.redact import Redactor
from devloop.vocab import (
    CLUSTER_UNREACHABLE,
    DEPLOY_FAILED,
    OK,
    REGISTRY_UNREACHABLE,
    ROLLOUT_FAILED,
    DeployFailed,
)

log = logging.getLogger(__name__)


def connect_config(config: Config, context: str | None = None) -> Cluster:
    """The project's cluster: `context` (else devloop.yaml's, else the kubeconfig's current one)
    from devloop.yaml's kubeconfig (else $KUBECONFIG). ValueError names what is missing."""
    kubeconfig = str(config.kubeconfig) if config.kubeconfig else None
    return connect(context or config.context, config.namespace, kubeconfig)


class ContextRefused(Exception):
    """devloop must not deploy to this cluster as configured; str() is the one line saying
    what to set (exit code 2: devloop.yaml must change)."""


class ClusterDeployer:
    """Deploys services of one Config into one cluster/namespace."""

    def __init__(self, config: Config, bus: ev.EventBus, redactor: Redactor, cluster: Cluster,
                 delivery: Delivery, env: dict[str, str] | None = None) -> None:
        self.config = config
        self.bus = bus
        self.redactor = redactor
        self.cluster = cluster
        self.delivery = delivery
        self.env = dict(os.environ) if env is None else env
        self._warned: set[str] = set()
        self._registry_down: set[str] = set()  # services told their registry is unreachable
        self._present: set[str] = set()  # Deployments seen to exist: no install check needed
        # (service, workload, container) -> container index after a verified patch
        self._index: dict[tuple[str, str, str], int] = {}
        self._targets_of: dict[str, list[ServiceConfig]] = {}  # service -> workloads it feeds
        self._last_targets: dict[str, list[ServiceConfig]] = {}  # ... as last rendered
        self._followers: dict[tuple[str, str], LogFollower] = {}  # (service, workload) ->
        self._log_services: set[str] = set()
        self._existing_tail = 10
        self._logs_lock = threading.Lock()
        self._closed = False
        self._logs_stop = threading.Event()  # ends the waits for `resources:` workloads
        # one lock for image patches and manifest applies: an apply injects the images devloop
        # deployed, so it must never run between a patch's read and its write (or vice versa)
        self._apply_lock = threading.Lock()
        self._images: dict[str, str] = {}  # image repository -> reference devloop deployed
        self._orphans_said: list[str] = []
        self._digests: dict[str, str] = {}  # image repository -> input digest devloop deployed
        # set (by the engine) while a manifest edit waits to be applied: a built image goes out
        # with that apply, in one rollout, instead of a patch and then the apply's own rollout
        self.images_wait_for_apply = threading.Event()
        self._folded: dict[str, tuple[ServiceConfig, str, str]] = {}  # name -> (svc, ref, digest)
        self.manifests = (ManifestSession(config, cluster, self.env, self._apply_lock,
                                          on_render=redactor.add_secret_objects)
                          if config.deploy_format else None)

    @classmethod
    def create(cls, config: Config, bus: ev.EventBus, redactor: Redactor,
               context: str | None = None) -> ClusterDeployer:
        """Connect (a kubeconfig problem is DeployFailed(CLUSTER_UNREACHABLE)) and choose the
        delivery. An unreachable API server is reported but not fatal here: `watch` retries."""
        try:
            cluster = connect_config(config, context)
        except ValueError as exc:
            raise DeployFailed(CLUSTER_UNREACHABLE, str(exc)) from None
        reachable = True
        try:
            version = check_reachable(cluster)
            bus.publish(ev.CLUSTER_CONNECTED, None, context=cluster.context,
                        server=cluster.server, namespace=cluster.namespace, version=version)
        except ClusterUnreachable as exc:
            reachable = False
            bus.publish(ev.CLUSTER_UNREACHABLE, None, message=str(exc), context=cluster.context,
                        server=cluster.server)
        override = None if config.delivery == "auto" else config.delivery
        try:
            delivery = detect_delivery(cluster, override, config.default_repo,
                                       probe_nodes=reachable,
                                       insecure_registries=config.insecure_registries)
        except (ValueError, DeliveryError) as exc:
            raise DeployFailed(DEPLOY_FAILED, f"{config.path}: {exc}") from None
        if (isinstance(delivery, SharedDaemon) and config.delivery == "auto"
                and not shares_docker(cluster.context, cluster.server)):
            why = registry_refusal(cluster.context, cluster.server)
            raise ContextRefused(f"{config.path}: {why}")
        deployer = cls(config, bus, redactor, cluster, delivery)
        if config.chart is not None:
            redactor.add(env_values(config.chart, deployer.env).values())
        return deployer

    def docker_environment(self) -> dict[str, str] | None:
        try:
            return self.delivery.docker_environment()
        except DeliveryError as exc:
            raise DeployFailed(DEPLOY_FAILED, str(exc)) from None

    def _unreachable(self, exc: ClusterUnreachable) -> str:
        """The one-line message, always naming our context (lower layers may not know it)."""
        if exc.context:
            return str(exc)
        return str(ClusterUnreachable(self.cluster.context, exc.server, exc.detail,
                                      status=exc.status))

    def _read_deployed(self, service: ServiceConfig) -> Deployed:
        """What the service's workload runs, whatever its kind."""
        if service.kind == "Deployment":
            return read_deployed(self.cluster.apps, self.cluster.namespace, service.deployment,
                                 service.container)
        return read_workload_deployed(self.cluster.api_client, self.cluster.namespace,
                                      service.workload, service.container)[1]

    def _pod_selector(self, ref: WorkloadRef) -> Any:
        """The label selector of the pods of a workload, whatever its kind."""
        if ref.kind.kind == "Deployment":
            return self.cluster.apps.read_namespaced_deployment(
                ref.name, self.cluster.namespace, _request_timeout=timeouts.REQUEST).spec.selector
        return read_workload(self.cluster.api_client, self.cluster.namespace, ref).selector

    # --- Deployer protocol -----------------------------------------------------------------------

    def reconfigure(self, config: Config) -> None:
        """Per-use settings (log filters, rollout deadline, the manifests) follow a reloaded
        devloop.yaml."""
        self.config = config
        self.redactor.add_chart(config.chart)  # a values file or chart.set may have changed
        self._targets_of.clear()
        if self.manifests is not None and config.deploy_format:
            self.manifests.config = config
        elif config.deploy_format:
            self.manifests = ManifestSession(config, self.cluster, self.env, self._apply_lock,
                                             on_render=self.redactor.add_secret_objects)

    def workloads_of(self, service: ServiceConfig) -> list[ServiceConfig]:
        """The workloads (and containers) the service's image feeds, each as the service with
        its workload and container: with manifests, every built-in workload kind and container
        (init containers too) that names the image's repository, as Tilt and Skaffold match;
        else, or when none does, the one devloop.yaml names. Cached until the manifests or
        devloop.yaml change."""
        if self.manifests is None:
            return [service]
        cached = self._targets_of.get(service.name)
        if cached is None:
            objects, _ = self.manifests.render()
            cached = fed_by(service, objects, self.config.image_paths or None)
            self._targets_of[service.name] = cached
            self._last_targets[service.name] = cached
        return cached

    def _image_targets(self, service: ServiceConfig) -> list[ServiceConfig]:
        """Where a built image goes: the workloads it feeds; while the manifests do not render
        (an edit being typed, already reported by `manifests.failed`), those it fed when they
        last did, or devloop.yaml's own workload: a source edit still goes out."""
        try:
            return self.workloads_of(service)
        except RenderError:
            return self._last_targets.get(service.name, [service])

    def deployed_digest(self, service: ServiceConfig) -> str | None:
        try:
            targets = self.workloads_of(service)
            digests = {self._read_deployed(t).digest for t in targets}
        except RenderError as exc:
            raise DeployFailed(DEPLOY_FAILED, str(exc)) from None
        except ClusterUnreachable as exc:
            raise DeployFailed(CLUSTER_UNREACHABLE, self._unreachable(exc)) from None
        except DeploymentNotFound:
            return None  # the first deploy installs it
        except PatchError as exc:
            raise DeployFailed(DEPLOY_FAILED, str(exc)) from None
        if len(digests) != 1:
            return None  # its workloads run different images: deploy to all of them
        self._present.add(service.deployment)
        for target in targets:
            self._follow_logs_quietly(target)
        return digests.pop()

    def deploy(self, service: ServiceConfig, tag: str, digest: str,
               stop: threading.Event) -> None:
        name = service.name
        try:
            started = time.monotonic()
            ref = self.delivery.deliver(tag, stop)
            self._registry_down.discard(name)
            self.bus.publish(ev.DELIVER_FINISHED, name, method=self.delivery.name, image=ref,
                             seconds=round(time.monotonic() - started, 3),
                             **pushed_fields(self.delivery, ref))
            installed = self._install_if_missing(service, ref, digest)
            targets = self._image_targets(service)
            if not installed and self._fold(service, ref, digest):
                for target in targets:
                    self._follow_logs_quietly(target)
                return
            patched: list[tuple[ServiceConfig, int]] = []
            with self._apply_lock:
                for target in targets:  # one image in several workloads: all of them get it
                    patched.append((target, self._patch(target, ref, digest)))
                self._images[service.image] = ref
                self._digests[service.image] = digest
            for target, generation in patched:
                self.bus.publish(ev.DEPLOY_PATCHED, name, deployment=target.deployment,
                                 workload=str(target.workload), container=target.container,
                                 image=ref, generation=generation)
            self._warn_once(service)
            for target in targets:
                self._follow_logs_quietly(target)
        except ClusterUnreachable as exc:
            raise DeployFailed(CLUSTER_UNREACHABLE, self._unreachable(exc)) from None
        except DeliveryUnreachable as exc:  # said once per outage; `watch` retries by itself
            if name not in self._registry_down:
                self._registry_down.add(name)
                self.bus.publish(ev.ERROR, name, message=str(exc))
            raise DeployFailed(REGISTRY_UNREACHABLE, str(exc)) from None
        except (DeliveryError, RenderError, ApplyError, PatchError) as exc:
            self.bus.publish(ev.ERROR, name, message=str(exc))
            raise DeployFailed(DEPLOY_FAILED, str(exc)) from None
        started = time.monotonic()
        for target, generation in patched:
            result, seconds = self._wait_rollout(target, generation, stop)
            if result.ok:
                continue
            if stop.is_set():
                raise DeployFailed(ROLLOUT_FAILED, "stopped while waiting for the rollout")
            raise self._rollout_failed(target, result, seconds,
                                       f"rollout of {target.workload} failed")
        self.bus.publish(ev.ROLLOUT_READY, name, deployment=service.deployment,
                         workload=str(service.workload),
                         seconds=round(time.monotonic() - started, 3))

    def check_health(self, service: ServiceConfig, stop: threading.Event) -> None:
        """Raise DeployFailed(ROLLOUT_FAILED) when the deployed workload is not healthy: its
        rollout does not complete (a rollout in progress is waited for, up to
        rollout_timeout_s) or its newest pods crash. The same rule as after a patch, so `sync`
        never calls an unchanged but crash-looping service up to date."""
        try:
            checks = [(t, self._read_deployed(t)) for t in self.workloads_of(service)]
        except ClusterUnreachable as exc:
            raise DeployFailed(CLUSTER_UNREACHABLE, self._unreachable(exc)) from None
        except (PatchError, RenderError) as exc:
            raise DeployFailed(DEPLOY_FAILED, str(exc)) from None
        for target, deployed in checks:  # every workload the image feeds
            result, seconds = self._wait_rollout(target, deployed.generation, stop)
            if result.ok:
                continue
            if stop.is_set():
                raise DeployFailed(ROLLOUT_FAILED, "stopped while checking the rollout")
            raise self._rollout_failed(target, result, seconds,
                                       f"{target.workload} runs the current image but"
                                       " is not healthy")

    def referenced_images(self) -> set[str] | None:
        """Every image a Deployment or ReplicaSet of the namespace names (old ReplicaSets are
        what `kubectl rollout undo` goes back to); None when the API cannot say."""
        ns = self.cluster.namespace
        try:
            workloads = [
                *self.cluster.apps.list_namespaced_deployment(
                    ns, _request_timeout=timeouts.REQUEST).items,
                *self.cluster.apps.list_namespaced_replica_set(
                    ns, _request_timeout=timeouts.REQUEST).items,
            ]
        except Exception as exc:
            if not (is_connection_error(exc) or isinstance(exc, ApiException)):
                raise
            log.warning("cannot list the workloads of namespace %s (%s); keeping all images",
                        ns, exc.__class__.__name__)
            return None
        images: set[str] = set()
        for item in workloads:
            spec = item.spec.template.spec if item.spec and item.spec.template else None
            for c in [*(spec.containers or []), *(spec.init_containers or [])] if spec else []:
                if c.image:
                    images.add(c.image)
        return images

    def _wait_rollout(self, service: ServiceConfig, generation: int, stop: threading.Event
                      ) -> tuple[RolloutResult, float]:
        started = time.monotonic()
        if service.kind != "Deployment":  # a StatefulSet's rollout, a Job's completion, ...
            result = wait_workload(
                self.cluster.api_client, self.cluster.core, self.cluster.namespace,
                service.workload, generation, self.config.rollout_timeout_s, stop,
                lambda text: self.bus.publish(ev.ROLLOUT_PROGRESS, service.name, message=text))
            return result, round(time.monotonic() - started, 3)
        result = wait_rollout(
            self.cluster.apps, self.cluster.core, self.cluster.namespace, service.deployment,
            generation, self.config.rollout_timeout_s, stop,
            lambda text: self.bus.publish(ev.ROLLOUT_PROGRESS, service.name, message=text))
        return result, round(time.monotonic() - started, 3)

    def _rollout_failed(self, service: ServiceConfig, result: RolloutResult, seconds: float,
                        what: str) -> DeployFailed:
        """Publish a failed rollout (reason, pod, last log lines, problem) as events."""
        name = service.name
        self.bus.publish(ev.ROLLOUT_FAILED, name, deployment=service.deployment,
                         reason=result.reason, message=result.message, pod=result.pod,
                         log_tail=result.log_tail, seconds=seconds)
        problem = traceback_problem(result.log_tail, service, self.config.root)
        if problem is not None:
            self.bus.publish(ev.PROBLEM, name, **problem)
        outcome = CLUSTER_UNREACHABLE if result.reason == "ClusterUnreachable" else ROLLOUT_FAILED
        return DeployFailed(outcome, f"{what}: {result.reason}: {result.message}")

    def _patch(self, service: ServiceConfig, ref: str, digest: str) -> int:
        """One request per reload once the container's position is verified; the first patch
        (and any patch whose precondition fails) reads the Deployment and checks the container
        by name, so a wrong name is an error, never a new container."""
        if service.kind != "Deployment":
            return patch_workload_image(self.cluster.api_client, self.cluster.namespace,
                                        service.workload, service.container, ref, digest)
        apps, ns = self.cluster.apps, self.cluster.namespace
        key = (service.name, service.deployment, service.container)
        index = self._index.get(key)
        if index is not None:
            generation = patch_image_at(apps, ns, service.deployment, service.container, index,
                                        ref, digest)
            if generation is not None:
                return generation
            self._index.pop(key, None)
        generation = patch_image(apps, ns, service.deployment, service.container, ref, digest)
        with contextlib.suppress(PatchError, ClusterUnreachable):
            self._index[key] = container_index(apps, ns, service.deployment, service.container)
        return generation

    # --- first deploy ----------------------------------------------------------------------------

    def _install_if_missing(self, service: ServiceConfig, ref: str, digest: str) -> bool:
        """Apply the manifests when the service's Deployment does not exist (its first deploy),
        with the image just built for it; True when it did.

        Once a Deployment was seen, later reloads skip this check (one API call less per save);
        if it was deleted meanwhile, the patch fails with a clear message and the next manifest
        apply (or start of devloop) creates it again."""
        if service.deployment in self._present:
            return False
        try:
            self._read_deployed(service)
            self._present.add(service.deployment)
            return False
        except DeploymentNotFound:
            pass
        if self.manifests is None:
            raise PatchError(f"deployment {self.cluster.namespace}/{service.deployment} not found"
                             f" and {self.config.path} names no manifests (chart:, kustomize:"
                             " or manifests:) to create it from; create it first")
        outcome = self.manifests.apply({**self._images, service.image: ref},
                                       {**self._digests, service.image: digest})
        self._publish_outcome(service.name, outcome, 0.0)
        if outcome.applied or outcome.created:  # the first deploy, as `deploy.installed` says it
            self.bus.publish(ev.DEPLOY_INSTALLED, service.name,
                             objects=[*outcome.applied, *outcome.created],
                             chart=self._manifests_source())
        if outcome.error:
            raise ApplyError(outcome.error)
        self._present.add(service.deployment)
        return True

    def _fold(self, service: ServiceConfig, ref: str, digest: str) -> bool:
        """Leave the image to the manifest apply that is due (True), when one is: it injects
        every image devloop deployed, so this one rolls out with the edit, once."""
        if self.manifests is None or not self.images_wait_for_apply.is_set():
            return False
        with self._apply_lock:
            self._images[service.image] = ref
            self._digests[service.image] = digest
            self._folded[service.name] = (service, ref, digest)
        self.bus.publish(ev.ROLLOUT_PROGRESS, service.name, message=(
            f"{ref} goes out with the manifest edit saved with it: one apply, one rollout"))
        return True

    def _deploy_folded(self, stop: threading.Event) -> str | None:
        """After an apply: patch (and wait for) any image left to it that its workloads do not
        run yet (the manifests did not render, or do not name that workload), unless a newer
        image of the service was patched while the apply ran: never put an older one back.
        The failing outcome, or None."""
        with self._apply_lock:
            folded, self._folded = self._folded, {}
        for service, ref, digest in folded.values():
            targets = self._image_targets(service)  # may render a chart: outside the lock
            try:
                with self._apply_lock:  # read and patch with no image patch in between
                    if self._images.get(service.image) != ref:
                        continue  # a newer image went out since (this apply was running)
                    patched = [(t, self._patch(t, ref, digest)) for t in targets
                               if self._read_deployed(t).digest != digest]
            except (ClusterUnreachable, PatchError, DeploymentNotFound) as exc:
                self.bus.publish(ev.ERROR, service.name, message=str(exc))
                return DEPLOY_FAILED
            for target, generation in patched:
                self.bus.publish(ev.DEPLOY_PATCHED, service.name, deployment=target.deployment,
                                 workload=str(target.workload), container=target.container,
                                 image=ref, generation=generation)
            for target, generation in patched:
                result, seconds = self._wait_rollout(target, generation, stop)
                if not result.ok:
                    return self._rollout_failed(target, result, seconds,
                                                f"rollout of {target.workload} failed").outcome
                self.bus.publish(ev.ROLLOUT_READY, service.name, deployment=target.deployment,
                                 workload=str(target.workload), seconds=seconds)
        return None

    def _manifests_source(self) -> str:
        """Where the manifests come from, for `deploy.installed` (its field is `chart`)."""
        config = self.config
        if config.chart is not None:
            return str(config.chart.path)
        if config.kustomize is not None:
            return str(config.kustomize)
        return ", ".join(config.manifests)

    # --- manifests as a watched input ------------------------------------------------------------

    def apply_manifests(self, stop: threading.Event) -> str:
        """Render and apply what changed in the manifests, then wait for the rollouts it caused.
        Returns a pipeline outcome (OK, DEPLOY_FAILED, ROLLOUT_FAILED, CLUSTER_UNREACHABLE);
        a rendering error leaves every running object as it is (an image left to this apply is
        then patched as usual)."""
        if self.manifests is None:
            return OK
        self._targets_of.clear()  # the manifests may name the images elsewhere now
        started = time.monotonic()
        result = OK
        try:
            with self._apply_lock:
                images, digests = dict(self._images), dict(self._digests)
            outcome = self.manifests.apply(images, digests)
        except ClusterUnreachable as exc:  # tried again: images left to it stay with it
            self.bus.publish(ev.MANIFESTS_FAILED, None, message=self._unreachable(exc))
            return CLUSTER_UNREACHABLE
        except (RenderError, ApplyError) as exc:
            self.bus.publish(ev.MANIFESTS_FAILED, None, message=str(exc))
            outcome, result = None, DEPLOY_FAILED
        if outcome is not None:
            self._publish_outcome(None, outcome, round(time.monotonic() - started, 3))
            result = DEPLOY_FAILED if outcome.error else OK
            for workload, generation in outcome.workloads.items():
                waited = self._wait_applied(workload, generation, stop)
                if waited is not None and result == OK:
                    result = waited
        folded = self._deploy_folded(stop)
        return folded if folded is not None and result == OK else result

    def _wait_applied(self, workload: str, generation: int, stop: threading.Event
                      ) -> str | None:
        """Wait for the rollout an apply caused (`kind/name`): as its service's when a service
        feeds it (events, problems, log tail), else on its own (service null); the failing
        outcome, or None."""
        ref = WorkloadRef.parse(workload)
        if ref.kind.kind == "Deployment":
            self._present.add(ref.name)
        for service in self.config.services.values():
            for target in self.workloads_of(service):
                if str(target.workload) != workload:
                    continue
                waited, seconds = self._wait_rollout(target, generation, stop)
                if waited.ok:
                    self.bus.publish(ev.ROLLOUT_READY, service.name,
                                     deployment=target.deployment,
                                     workload=str(target.workload), seconds=seconds)
                    return None
                if stop.is_set():
                    return None
                return self._rollout_failed(target, waited, seconds,
                                            f"rollout of {workload} failed").outcome
        started = time.monotonic()
        ns, progress = self.cluster.namespace, (
            lambda text: self.bus.publish(ev.ROLLOUT_PROGRESS, None, message=f"{workload}: {text}"))
        if ref.kind.kind == "Deployment":
            waited = wait_rollout(self.cluster.apps, self.cluster.core, ns, ref.name, generation,
                                  self.config.rollout_timeout_s, stop, progress)
        else:
            waited = wait_workload(self.cluster.api_client, self.cluster.core, ns, ref,
                                   generation, self.config.rollout_timeout_s, stop, progress)
        seconds = round(time.monotonic() - started, 3)
        if waited.ok:
            self.bus.publish(ev.ROLLOUT_READY, None, deployment=workload, workload=workload,
                             seconds=seconds)
            return None
        if stop.is_set():
            return None
        self.bus.publish(ev.ROLLOUT_FAILED, None, deployment=workload, reason=waited.reason,
                         message=waited.message, pod=waited.pod, log_tail=waited.log_tail,
                         seconds=seconds)
        return ROLLOUT_FAILED

    def _publish_outcome(self, service: str | None, outcome: Outcome, seconds: float) -> None:
        if outcome.applied or outcome.created:
            self.bus.publish(ev.MANIFESTS_APPLIED, service, objects=outcome.applied,
                             created=outcome.created, unchanged=outcome.unchanged,
                             rolls=outcome.rolls, seconds=seconds)
        if outcome.error:
            self.bus.publish(ev.MANIFESTS_FAILED, service, message=outcome.error)
        if outcome.pruned or outcome.kept:
            self.bus.publish(ev.MANIFESTS_PRUNED, service, objects=outcome.pruned,
                             kept=outcome.kept)
        if outcome.orphaned != self._orphans_said:  # said when the list changes (also to [])
            self._orphans_said = list(outcome.orphaned)
            self.bus.publish(ev.MANIFESTS_ORPHANED, service, objects=outcome.orphaned,
                             prune=self.config.prune)

    def _warn_once(self, service: ServiceConfig) -> None:
        if service.name in self._warned or service.kind != "Deployment":
            return
        self._warned.add(service.name)
        try:
            text = warn_rwo_rolling(self.cluster.apps, self.cluster.core, self.cluster.namespace,
                                    service.deployment)
        except (PatchError, ClusterUnreachable) as exc:  # a warning must never fail a reload
            log.debug("%s: cannot check the rollout strategy: %s", service.name, exc)
            return
        except Exception:
            log.warning("%s: checking the rollout strategy failed", service.name, exc_info=True)
            return
        if text:
            self.bus.publish(ev.WARNING, service.name, message=text)

    # --- logs ------------------------------------------------------------------------------------

    def start_logs(self, services: list[str], existing_tail: int = 10) -> None:
        """Follow logs of these services' pods as soon as their Deployments are known; pods
        already running show their last `existing_tail` lines first."""
        resources = sorted(self.config.resources)  # workloads devloop does not build, too
        with self._logs_lock:
            self._log_services = {*services, *resources}
            self._existing_tail = existing_tail
        for name in services:
            svc = self.config.services.get(name)
            if svc is not None:
                threading.Thread(target=self._follow_logs_quietly, args=(svc,), daemon=True,
                                 name=f"logs-start:{name}").start()
        for name in resources:
            threading.Thread(target=self._follow_resource_logs, args=(name,), daemon=True,
                             name=f"logs-start:{name}").start()

    def _follow_resource_logs(self, name: str) -> None:
        """A `resources:` workload's logs, once it exists (the manifests may create it later)."""
        resource = self.config.resources[name]
        found = await_workload(self.cluster.api_client, self.cluster.namespace,
                               resource.workload, self._logs_stop, threading.Event(),
                               lambda text: self.bus.publish(ev.WARNING, name, message=text),
                               f"logs of {name}")
        if found is not None:
            self._follow_logs_quietly(resource)

    def _follow_logs_quietly(self, service: ServiceConfig | ResourceConfig) -> None:
        try:
            self._follow_logs(service)
        except Exception as exc:  # the first reload retries; a bug must not fail the reload
            if is_connection_error(exc) or isinstance(exc, ApiException):
                log.debug("%s: cannot follow logs yet: %s", service.name, exc.__class__.__name__)
            else:
                log.warning("%s: following logs failed", service.name, exc_info=True)

    def _follow_logs(self, service: ServiceConfig | ResourceConfig) -> None:
        with self._logs_lock:
            if (self._closed or service.name not in self._log_services
                    or (service.name, str(service.workload)) in self._followers):
                return
        selector = self._pod_selector(service.workload)
        follower = LogFollower(
            lambda: new_api_client(self.cluster), self.cluster.namespace, service.name,
            selector,
            on_line=self._on_line, on_error=lambda text, n=service.name: self.bus.publish(
                ev.WARNING, n, message=text),
            existing_tail=self._existing_tail,
            keep=lambda line, n=service.name: (s := self.config.services.get(n)
                                                or self.config.resources.get(n)) is None
            or s.logs.keeps(line),
            on_probe=self._on_probe_line, on_skipped=self._on_log_skipped)
        with self._logs_lock:
            if self._closed or (service.name, str(service.workload)) in self._followers:
                return
            self._followers[(service.name, str(service.workload))] = follower
        follower.start()

    def _on_line(self, service: str, pod: str, container: str, line: str) -> None:
        self.bus.publish(ev.POD_LOG, service, pod=pod, container=container, line=line,
                         source="pod")

    def _on_probe_line(self, service: str, pod: str, container: str, line: str) -> None:
        """A request to one of the container's probe paths: kept in JSON, folded on the
        console (devloop.config.logfilter)."""
        self.bus.publish(ev.POD_LOG, service, pod=pod, container=container, line=line,
                         source="pod", probe=True)

    def _on_log_skipped(self, service: str, pod: str, container: str, lines: int,
                        seconds: float) -> None:
        self.bus.publish(ev.LOG_SKIPPED, service, pod=pod, container=container, lines=lines,
                         estimate=True, seconds_behind=round(seconds, 3))

    def close(self) -> None:
        """Stop log streams (within about a second); workloads keep running."""
        self._logs_stop.set()
        with self._logs_lock:
            self._closed = True
            followers = list(self._followers.values())
        threads = [threading.Thread(target=f.stop, daemon=True) for f in followers]
        for t in threads:
            t.start()
        for t in threads:
            t.join(1.5)


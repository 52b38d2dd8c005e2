"""One project's manifests against one cluster, across a `watch`: render, plan, apply, wait.

Keeps what devloop applied last ({key: content hash}) so a change applies only what changed,
and the objects no longer rendered are reported as orphaned (and deleted with `prune: true`).
Every apply carries the images devloop deployed (injected by repository name, or where
devloop.yaml says an image no manifest names runs), so an apply never takes a workload back to
the manifest's own image; image patches after a build and applies are serialised by one lock,
so neither reads what the other is half-way through.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from devloop.config.loader import Config
from devloop.deploy.delivery import registry_ref
from devloop.deploy.patch import DIGEST_ANNOTATION
from devloop.k8s.cluster import Cluster
from devloop.k8s.inject import Feed, inject, name_fed, same_repository, users
from devloop.k8s.kinds import group_of, kind_of, pod_template
from devloop.k8s.ownership import is_devloop_owned, mark, unmark
from devloop.manifests import apply as api
from devloop.manifests.plan import CREATE_ONLY, Plan, display, key_of, order, plan
from devloop.manifests.render import Rendered, render


@dataclass
class Outcome:
    """What one apply did (for events and the exit code)."""

    applied: list[str] = field(default_factory=list)  # Kind/name
    created: list[str] = field(default_factory=list)  # claims created
    unchanged: int = 0
    orphaned: list[str] = field(default_factory=list)
    pruned: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)  # orphans not devloop's: left alone
    rolls: dict[str, list[str]] = field(default_factory=dict)  # workload -> configs it reads
    workloads: dict[str, int] = field(default_factory=dict)  # applied kind/name -> generation
    error: str | None = None  # the first failure, one line


def project_name(config: Config) -> str:
    """The name devloop's mark records: the chart release, else devloop.yaml's directory."""
    return config.chart.release if config.chart is not None else config.root.name


def normalise(rendered: list[Rendered], namespace: str, project: str,
              served_scope: Callable[[str, str], bool | None] = lambda _g, _k: None
              ) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """Objects with metadata.namespace filled in for namespaced kinds, devloop's mark, and a
    Namespace object for every namespace used that is not rendered (helm template and
    kustomize leave both to the installer); plus {key: source file}.

    A kind outside devloop's table is namespaced as a CustomResourceDefinition of the
    manifests says (`spec.scope`), else as `served_scope(group, kind)` says (the cluster's
    discovery; None: not served), else it is taken to be namespaced."""
    out: list[dict[str, Any]] = []
    sources: dict[str, str] = {}
    used: list[str] = []
    rendered_ns = {r.obj["metadata"]["name"] for r in rendered if r.obj.get("kind") == "Namespace"}
    defined = crd_scopes(r.obj for r in rendered)
    for r in rendered:
        obj = dict(r.obj)
        meta = dict(obj.get("metadata") or {})
        entry = kind_of(obj)
        if entry is not None:
            namespaced = entry.namespaced
        else:
            scope = (group_of(str(obj.get("apiVersion"))), str(obj.get("kind")))
            namespaced = defined.get(scope, served_scope(*scope))
        if namespaced is not False:
            meta.setdefault("namespace", namespace)
            if meta["namespace"] not in used:
                used.append(meta["namespace"])
        else:
            meta.pop("namespace", None)
        obj["metadata"] = meta
        obj = mark(obj, project)
        out.append(obj)
        sources[key_of(obj)] = r.source
    extra = [mark({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}, project)
             for ns in used if ns not in rendered_ns]
    return extra + out, sources


def crd_scopes(objects: Iterable[Mapping[str, Any]]) -> dict[tuple[str, str], bool]:
    """{(group, Kind): namespaced} for the kinds the CustomResourceDefinitions among `objects`
    define (and for CustomResourceDefinition itself, cluster-wide)."""
    out: dict[tuple[str, str], bool] = {("apiextensions.k8s.io", "CustomResourceDefinition"): False}
    for obj in objects:
        spec = obj.get("spec") or {}
        if obj.get("kind") == "CustomResourceDefinition" and isinstance(spec, dict):
            kind = (spec.get("names") or {}).get("kind")
            if spec.get("group") and kind:
                out[(str(spec["group"]), str(kind))] = spec.get("scope") != "Cluster"
    return out


class ManifestSession:
    """Applies a Config's manifests to a Cluster; thread-safe (one apply at a time)."""

    def __init__(self, config: Config, cluster: Cluster, env: Mapping[str, str],
                 lock: threading.Lock | None = None,
                 on_render: Callable[[list[dict[str, Any]]], None] | None = None) -> None:
        self.config = config
        self.on_render = on_render  # e.g. the redactor: rendered Secrets are secrets
        self.cluster = cluster
        self.env = env
        self.lock = lock or threading.Lock()
        self.last: dict[str, str] | None = None  # what was applied, None before the first
        self.versions: dict[str, str] = {}  # key -> apiVersion of what was applied
        self.generations: dict[str, int] = {}  # workload key -> generation after the apply
        self.orphaned: list[str] = []  # shown in status and the dashboard
        self.adopted: dict[str, bool] = {}  # key -> existed before devloop, without its mark
        self._scopes: dict[tuple[str, str], bool] = {}  # (group, kind) -> namespaced

    def render(self) -> tuple[list[dict[str, Any]], dict[str, str]]:
        """Rendered, normalised objects; RenderError when the manifests do not render."""
        rendered = render(self.config, self.cluster.namespace, self.env)
        if self.on_render is not None:
            self.on_render([r.obj for r in rendered])
        return normalise(rendered, self.cluster.namespace, project_name(self.config),
                         self._served_scope)

    def _served_scope(self, group: str, kind: str) -> bool | None:
        """Whether the cluster serves `kind` of `group` namespaced (None: not served), from API
        discovery, read again when a kind is not known yet (a CRD applied since)."""
        if (group, kind) not in self._scopes:
            self._scopes = {(group_of(k.group_version), k.kind): k.namespaced
                            for k in api.served(self.cluster.api_client)}
        return self._scopes.get((group, kind))

    def live_images(self, objects: list[dict[str, Any]], images: Mapping[str, str]
                    ) -> tuple[dict[str, str], dict[str, str]]:
        """For built images devloop has not deployed in this run: the image the cluster's
        workload already runs (the one an earlier run deployed) and its digest annotation,
        so an apply keeps both."""
        found: dict[str, str] = {}
        digests: dict[str, str] = {}
        repos = [s.image for s in self.config.services.values()
                 if not any(same_repository(r, s.image) for r in images)]
        for repo in repos:
            for use in users(objects, repo, self.config_image_paths()):
                entry = kind_of({"apiVersion": _api_version(objects, use), "kind": use.kind})
                if entry is None or use.container is None:
                    continue
                live = api.read(self.cluster.api_client, entry.api_version, use.kind,
                                use.namespace, use.name)
                ref = _container_image(live, use.container, use.init) if live else None
                if ref and (same_repository(ref, repo) or self._pushed(ref, repo)):
                    found[repo] = ref
                    digest = ((live or {}).get("metadata") or {}).get("annotations", {}).get(
                        DIGEST_ANNOTATION)
                    if digest:
                        digests[repo] = digest
                    break
        return found, digests

    def _pushed(self, ref: str, repo: str) -> bool:
        """`ref` is `repo` as registry delivery pushed it (`<default_repo>/<repo>:dl-...`)."""
        default_repo = self.config.default_repo
        return bool(default_repo) and same_repository(ref, registry_ref(default_repo, repo))

    def config_image_paths(self) -> Mapping[str, Any] | None:
        return self.config.image_paths or None

    def apply(self, images: Mapping[str, str], digests: Mapping[str, str] | None = None
              ) -> Outcome:
        """Render, inject `images` ({repository: ref devloop deployed}) and their input
        `digests` ({repository: digest}, the annotation devloop's patch sets), plan against the
        last apply, apply what changed, create missing claims, report (and with prune,
        delete) orphans. Raises RenderError (nothing applied) and ClusterUnreachable."""
        with self.lock:
            objects, sources = self.render()
            objects = name_fed(objects, self._feeds(), self.cluster.namespace,
                               self.config_image_paths())
            live_refs, live_digests = self.live_images(objects, images)
            all_images = {**live_refs, **images}
            all_digests = {**live_digests, **(digests or {})}
            paths = self.config_image_paths()
            # a workload running a built image devloop has neither built nor found running is
            # left to that service's first deploy, so it starts once, from its own image
            unknown = [s.image for s in self.config.services.values()
                       if not any(same_repository(r, s.image) for r in all_images)]
            objects = [with_digest(inject(o, all_images, paths), all_digests, paths)
                       for o in objects
                       if not any(users([o], repo, paths) for repo in unknown)]
            earlier = self.earlier() if self.last is None else []
            todo = plan(objects, self.last, prune=self.config.prune, earlier=earlier)
            return self._run(todo, objects, sources)

    def _feeds(self) -> list[Feed]:
        """Where devloop.yaml says each service's image runs (used where no manifest names it)."""
        return [Feed(s.image, s.workload.kind.kind, s.deployment, s.container)
                for s in self.config.services.values()]

    def earlier(self) -> list[str]:
        """Keys of the objects devloop applied for this project that the cluster holds (an
        earlier run applied them), of every kind it serves, custom resources included: what
        was dropped from the manifests while devloop was stopped is orphaned too."""
        found = api.list_owned(self.cluster.api_client, self.cluster.namespace,
                               project_name(self.config))
        for obj in found:
            self.versions.setdefault(key_of(obj), str(obj.get("apiVersion")))
        return [key_of(o) for o in found]

    def orphans(self) -> list[str]:
        """`Kind/name` of what devloop applied and the manifests no longer render (status)."""
        objects, _ = self.render()
        rendered = {key_of(o) for o in objects}
        return sorted(display(k) for k in self.earlier() if k not in rendered)

    def _run(self, todo: Plan, objects: list[dict[str, Any]], sources: dict[str, str]
             ) -> Outcome:
        out = Outcome(unchanged=len(todo.unchanged), rolls={display(k): v
                                                            for k, v in todo.rolls.items()})
        applied = dict(self.last or {})
        for key in todo.orphaned:  # found by devloop's mark (an earlier run): known from now on
            applied.setdefault(key, "")
        client = self.cluster.api_client
        before = self._generations_before(todo.apply)
        # one sequence in dependency order: a claim is created after its Namespace exists
        for obj in sorted([*todo.create, *todo.apply], key=order):
            key = key_of(obj)
            if obj.get("kind") in CREATE_ONLY:
                try:
                    if api.create_if_missing(client, obj, sources.get(key, "")):
                        out.created.append(display(key))
                except api.ApplyError as exc:
                    out.error = out.error or str(exc)
                    continue
                applied[key] = todo.hashes[key]
                continue
            try:
                obj = self._unless_foreign(key, obj)
                stored = api.apply(client, obj, sources.get(key, ""))
            except api.Immutable as exc:
                if obj.get("kind") != "Job":
                    out.error = out.error or str(exc)
                    applied.pop(key, None)
                    continue
                # a Job's pod template cannot change: replace it, as `kubectl replace --force`
                api.delete_owned(client, key, str(obj.get("apiVersion")), wait=True)
                try:
                    stored = api.apply(client, obj, sources.get(key, ""))
                except api.ApplyError as again:
                    out.error = out.error or str(again)
                    applied.pop(key, None)
                    continue
            except api.ApplyError as exc:
                out.error = out.error or str(exc)
                applied.pop(key, None)  # tried again next time
                continue
            applied[key] = todo.hashes[key]
            self.versions[key] = str(obj.get("apiVersion"))
            out.applied.append(display(key))
            entry = kind_of(obj)
            if entry is not None and entry.workload and entry.kind != "Pod":
                generation = int((stored.get("metadata") or {}).get("generation") or 0)
                if generation != before.get(key):  # the spec changed: a rollout to wait for
                    out.workloads[f"{entry.kind.lower()}/{obj['metadata']['name']}"] = generation
                self.generations[key] = generation
        for key in todo.unchanged:
            self.versions.setdefault(key, _version_of(objects, key))
        for key in todo.prune:
            version = api.api_version_of(key, self.versions)
            try:
                result = "kept" if version is None else api.delete_owned(client, key, version)
            except api.ApplyError as exc:
                out.error = out.error or str(exc)
                continue
            # deleted, already gone, or not devloop's (someone else's object of that name):
            # either way devloop no longer answers for it
            (out.kept if result == "kept" else out.pruned).append(display(key))
            applied.pop(key, None)
        self.last = applied
        out.orphaned = sorted(display(k) for k in applied if k not in todo.hashes)
        self.orphaned = list(out.orphaned)
        return out

    def _generations_before(self, objects: list[dict[str, Any]]) -> dict[str, int | None]:
        """The generation of each workload about to be applied: from the last apply, else read
        (the first apply of a session), so an apply that changes no spec waits for nothing."""
        out: dict[str, int | None] = {}
        for obj in objects:
            entry = kind_of(obj)
            if entry is None or not entry.workload or entry.kind == "Pod":
                continue
            key = key_of(obj)
            if key in self.generations:
                out[key] = self.generations[key]
                continue
            meta = obj.get("metadata") or {}
            live = api.read(self.cluster.api_client, entry.api_version, entry.kind,
                            meta.get("namespace"), str(meta.get("name")))
            out[key] = int((live.get("metadata") or {}).get("generation") or 0) if live else None
        return out

    def _unless_foreign(self, key: str, obj: dict[str, Any]) -> dict[str, Any]:
        """`obj` without devloop's mark when the object exists and is not devloop's (asked once
        per object and session): applying to someone's object must not make `down` take it
        for devloop's and delete it."""
        if key not in self.adopted:
            meta = obj.get("metadata") or {}
            current = api.read(self.cluster.api_client, str(obj.get("apiVersion")),
                               str(obj.get("kind")), meta.get("namespace"), str(meta.get("name")))
            self.adopted[key] = current is not None and not is_devloop_owned(current)
        return unmark(obj) if self.adopted[key] else obj


def with_digest(obj: dict[str, Any], digests: Mapping[str, str],
                image_paths: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """`obj` carrying the digest annotation devloop's image patch sets (on the workload and
    its pod template) when it runs one of the repositories of `digests`: the same values as
    the patch, so the patch after a first apply changes nothing (no second revision) and a
    later apply never takes the annotation back."""
    template = pod_template(obj)
    found = [d for repo, d in digests.items() if template is not None
             and users([obj], repo, image_paths)]
    if not found:
        return obj
    obj = copy.deepcopy(obj)
    template = pod_template(obj)
    assert template is not None
    for meta in (obj.setdefault("metadata", {}), template.setdefault("metadata", {})):
        meta["annotations"] = {**(meta.get("annotations") or {}), DIGEST_ANNOTATION: found[-1]}
    return obj


def _api_version(objects: list[dict[str, Any]], use: Any) -> str:
    for obj in objects:
        meta = obj.get("metadata") or {}
        if obj.get("kind") == use.kind and meta.get("name") == use.name:
            return str(obj.get("apiVersion"))
    return ""


def _version_of(objects: list[dict[str, Any]], key: str) -> str:
    for obj in objects:
        if key_of(obj) == key:
            return str(obj.get("apiVersion"))
    return ""


def _container_image(obj: Mapping[str, Any], container: str, init: bool) -> str | None:
    from devloop.k8s.kinds import pod_specs

    for spec in pod_specs(obj):
        for c in spec.get("initContainers" if init else "containers") or []:
            if c.get("name") == container:
                return c.get("image")
    return None


def find_orphans(config: Config, context: str | None, env: Mapping[str, str]) -> list[str]:
    """For `devloop status`: what devloop applied that the manifests no longer render ([]
    without a deploy format, or when the cluster or the manifests cannot say)."""
    from devloop.k8s.cluster import ClusterUnreachable, connect
    from devloop.manifests.render import RenderError

    if not config.deploy_format:
        return []
    try:
        cluster = connect(context or config.context, config.namespace,
                          str(config.kubeconfig) if config.kubeconfig else None)
        return ManifestSession(config, cluster, env).orphans()
    except (ValueError, ClusterUnreachable, RenderError, api.ApplyError):
        return []

"""Load and validate devloop.yaml.

Every mistake is reported with file, line and key path, all at once, and a config that has any
mistake is never used: the caller either gets a complete `Config` or a `ConfigError` listing every
problem. Line numbers come from PyYAML's composed node tree, so they point at the offending key.
"""

from __future__ import annotations

import difflib
import glob
import ipaddress
import os
import posixpath
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from docker.utils.build import PatternMatcher  # .dockerignore syntax

from devloop.config.logfilter import LogFilter
from devloop.k8s.kinds import PathError, parse_path
from devloop.k8s.workloads import WorkloadError, WorkloadRef
from devloop.text import NotText, decode_text

CONFIG_NAME = "devloop.yaml"
DELIVERY_MODES = ("auto", "docker", "minikube", "kind", "k3d", "registry")
WATCH_BACKENDS = ("auto", "inotify", "native", "polling")
BUILDERS = ("auto", "buildkit", "legacy")  # devloop.image.buildkit.choose
_IMAGE_RE = re.compile(r"^[a-z0-9]+([._-][a-z0-9]+)*(/[a-z0-9]+([._-][a-z0-9]+)*)*$")
_NAME_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_ENV_RE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_DIGITS = re.compile(r"[0-9]{1,5}")  # ASCII only: "²".isdigit() is True, int("²") fails


@dataclass(frozen=True)
class Problem:
    """One mistake in the config file, printable as `file:line: key.path: message`."""

    file: str
    line: int
    key: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        text = f"{where}: {self.key}: {self.message}" if self.key else f"{where}: {self.message}"
        return _CONTROL.sub(lambda m: repr(m.group())[1:-1], text)  # one line, whatever it quotes


class ConfigError(Exception):
    """The config file has at least one mistake; `problems` lists them all."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


@dataclass(frozen=True)
class SyncRule:
    """devloop.yaml `live_update.sync` item: context path `src` ("" = the whole context) lands
    at the absolute container path `dest` (a directory's files below it; a file inside it when
    dest ends with /)."""

    src: str
    dest: str


@dataclass(frozen=True)
class RunStep:
    """A command run in the container (`sh -c`) after a sync; with `trigger`, only when a
    synced context path matches one of its .dockerignore-style patterns."""

    cmd: str
    trigger: tuple[str, ...] = ()


@dataclass(frozen=True)
class LiveUpdateConfig:
    """A service's `live_update`: on by default, with sync rules inferred from the Dockerfile
    when `sync` is empty; `fall_back_on` adds rebuild triggers to the defaults."""

    enabled: bool = True
    sync: tuple[SyncRule, ...] = ()
    fall_back_on: tuple[str, ...] = ()
    run: tuple[RunStep, ...] = ()


@dataclass(frozen=True)
class PortForward:
    """devloop.yaml `port_forwards` item: `address:local_port` on this machine reaches
    `remote_port` of a Ready pod of the service's current revision."""

    local_port: int
    remote_port: int
    address: str = "127.0.0.1"


@dataclass(frozen=True)
class BuildSecret:
    """A BuildKit build secret (`RUN --mount=type=secret,id=...`): from a file or an
    environment variable, read when building, never stored in devloop.yaml or the image."""

    file: Path | None = None
    env: str | None = None


@dataclass(frozen=True)
class ServiceConfig:
    """One image built from a context and the Deployment container it feeds."""

    name: str
    context: Path
    dockerfile: Path
    image: str
    deployment: str
    container: str
    build_args: dict[str, str] = field(default_factory=dict)
    target: str | None = None
    watch: tuple[Path, ...] = ()
    ignore: tuple[str, ...] = ()
    path_map: dict[str, Path] = field(default_factory=dict)
    live_update: LiveUpdateConfig = LiveUpdateConfig()
    port_forwards: tuple[PortForward, ...] = ()
    logs: LogFilter = field(default_factory=LogFilter)
    kind: str = "Deployment"  # the workload's kind (`workload: statefulset/db`); name: deployment
    platform: str | None = None  # `linux/amd64`: the cluster's platform, not this machine's
    build_secrets: dict[str, BuildSecret] = field(default_factory=dict)  # id -> source

    @property
    def workload(self) -> WorkloadRef:
        """The workload this service's image feeds (`deployment` is its name, any kind)."""
        return WorkloadRef.parse(f"{self.kind}/{self.deployment}")

    @property
    def config_key(self) -> str:
        """Where devloop.yaml configures it, for messages."""
        return f"services.{self.name}"


@dataclass(frozen=True)
class ResourceConfig:
    """devloop.yaml `resources:` entry: a workload devloop does not build, shown with its
    health, logs and port forwards."""

    name: str
    workload: WorkloadRef
    container: str | None = None  # for logs and status; None: every container
    port_forwards: tuple[PortForward, ...] = ()
    logs: LogFilter = field(default_factory=LogFilter)

    @property
    def config_key(self) -> str:
        """Where devloop.yaml configures it, for messages."""
        return f"resources.{self.name}"


@dataclass(frozen=True)
class ChartConfig:
    """The Helm chart devloop renders and applies; `set_env` maps chart values to environment
    variables (secrets come from the environment, never from devloop.yaml or git)."""

    path: Path
    release: str
    values_files: tuple[Path, ...] = ()
    set_values: dict[str, str] = field(default_factory=dict)
    set_env: dict[str, str] = field(default_factory=dict)  # values.path -> ENV_NAME


@dataclass(frozen=True)
class Config:
    """A complete, validated devloop.yaml."""

    path: Path
    root: Path
    namespace: str
    services: dict[str, ServiceConfig]
    context: str | None = None
    kubeconfig: Path | None = None
    quiet_period_ms: int = 100
    quiet_period_cap_ms: int = 2000
    keep_images: int = 3
    max_parallel: int = 0  # concurrent image builds; 0: chosen from the CPU count
    rollout_timeout_s: float = 120.0
    delivery: str = "auto"
    watch_backend: str = "auto"  # auto | inotify | native | polling (devloop.inputs.filewatch)
    builder: str = "auto"  # auto | buildkit | legacy (devloop.image.buildkit)
    default_repo: str | None = None
    chart: ChartConfig | None = None
    kustomize: Path | None = None  # a kustomization directory, rendered by `kubectl kustomize`
    manifests: tuple[str, ...] = ()  # absolute paths or globs of plain YAML files/directories
    allow_contexts: tuple[str, ...] = ()  # kube contexts trusted beyond the known-local ones
    insecure_registries: tuple[str, ...] = ()  # HOST:PORT pushed to without verified TLS
    prune: bool = False  # delete objects dropped from the manifests (never PVCs or namespaces)
    resources: dict[str, ResourceConfig] = field(default_factory=dict)  # not built by devloop
    image_paths: dict[str, tuple[str, ...]] = field(default_factory=dict)  # custom kinds

    @property
    def deploy_format(self) -> str | None:
        """"chart", "kustomize", "manifests", or None (the Deployments exist already)."""
        if self.chart is not None:
            return "chart"
        if self.kustomize is not None:
            return "kustomize"
        return "manifests" if self.manifests else None


# --- schema -------------------------------------------------------------------------------------

_TOP_KEYS = {
    "version", "namespace", "context", "kubeconfig", "quiet_period_ms", "quiet_period_cap_ms",
    "keep_images", "max_parallel", "rollout_timeout_s", "delivery", "default_repo", "chart",
    "services", "watch_backend", "kustomize", "manifests", "allow_contexts", "prune",
    "insecure_registries",
    "resources", "image_paths", "builder",
}
DEPLOY_FORMATS = ("chart", "kustomize", "manifests")
KUSTOMIZATION_NAMES = ("kustomization.yaml", "kustomization.yml", "Kustomization")
_SERVICE_KEYS = {
    "context", "dockerfile", "image", "deployment", "container", "build_args", "target", "watch",
    "ignore", "path_map", "live_update", "port_forwards", "logs", "workload",
    "platform", "build_secrets",
}
_RESOURCE_KEYS = {"workload", "container", "port_forwards", "logs"}
_LIVE_KEYS = {"sync", "fall_back_on", "run"}
_SYNC_KEYS = {"src", "dest"}
_RUN_KEYS = {"cmd", "trigger"}
_CHART_KEYS = {"path", "release", "values_files", "set", "set_env"}
_FORWARD_KEYS = {"port", "address"}
_LOGS_KEYS = {"include", "exclude"}


class _Checker:
    """Walks the composed YAML nodes, collecting problems instead of stopping at the first."""

    def __init__(self, path: Path, env: dict[str, str]) -> None:
        self.path = path
        self.root = path.parent
        self.env = env
        self.problems: list[Problem] = []
        try:
            self.display = str(path.relative_to(Path.cwd()))
        except ValueError:
            self.display = str(path)

    def problem(self, node: yaml.Node | None, key: str, message: str) -> None:
        line = node.start_mark.line + 1 if node is not None else 0
        self.problems.append(Problem(self.display, line, key, message))

    def mapping(self, node: yaml.Node, key: str, allowed: set[str]) -> dict[str, yaml.Node]:
        """Return {key: value node} of a mapping, reporting unknown keys with a suggestion."""
        if not isinstance(node, yaml.MappingNode):
            self.problem(node, key, f"must be a mapping, not {_kind(node)}")
            return {}
        out: dict[str, yaml.Node] = {}
        for knode, vnode in node.value:
            name = knode.value if isinstance(knode, yaml.ScalarNode) else f"<{_kind(knode)}>"
            path = f"{key}.{name}" if key else name
            if allowed and name not in allowed:
                close = difflib.get_close_matches(name, sorted(allowed), n=1)
                hint = f" (did you mean '{close[0]}'?)" if close else ""
                self.problem(knode, path, f"unknown key{hint}")
                continue
            if name in out:
                self.problem(knode, path, "duplicate key")
            out[name] = vnode
        return out

    def scalar(self, node: yaml.Node, key: str) -> Any:
        if not isinstance(node, yaml.ScalarNode):
            self.problem(node, key, f"must be a single value, not {_kind(node)}")
            return None
        try:
            return yaml.safe_load(yaml.serialize(node))
        except Exception as exc:  # PyYAML's constructors raise any kind
            # an explicit tag whose value does not fit it (`!!int abc`, `!!binary é`, `!custom`)
            reason = " ".join(str(getattr(exc, "problem", None) or exc).split())[:200]
            tag = node.tag.replace("tag:yaml.org,2002:", "!!")
            self.problem(node, key, f"'{node.value[:80]}' is not a valid {tag} value"
                                    f" ({reason}); remove the tag or fix the value")
            return None

    def string(self, node: yaml.Node, key: str, pattern: re.Pattern[str] | None = None,
               what: str = "") -> str | None:
        value = self.scalar(node, key)
        if value is None:
            if isinstance(node, yaml.ScalarNode):
                self.problem(node, key, "must not be empty")
            return None
        if not isinstance(value, str):
            value = str(value)
        if pattern is not None and not pattern.fullmatch(value):  # `$` allows a final "\n"
            self.problem(node, key, f"'{value}' is not a valid {what}")
            return None
        return value

    def number(self, node: yaml.Node, key: str, minimum: float, maximum: float,
               integer: bool = True) -> float | None:
        value = self.scalar(node, key)
        ok_type = isinstance(value, int) if integer else isinstance(value, int | float)
        if isinstance(value, bool) or not ok_type:
            kind = "a whole number" if integer else "a number"
            self.problem(node, key, f"must be {kind}, got {value!r}")
            return None
        if not minimum <= value <= maximum:
            self.problem(node, key, f"must be between {minimum:g} and {maximum:g}, got {value}")
            return None
        return value

    def string_list(self, node: yaml.Node, key: str) -> list[tuple[yaml.Node, str]]:
        if not isinstance(node, yaml.SequenceNode):
            self.problem(node, key, f"must be a list, not {_kind(node)}")
            return []
        out = []
        for i, item in enumerate(node.value):
            value = self.string(item, f"{key}[{i}]")
            if value is not None:
                out.append((item, value))
        return out

    def string_map(self, node: yaml.Node, key: str) -> dict[str, str]:
        out: dict[str, str] = {}
        for name, vnode in self.mapping(node, key, set()).items():
            value = self.scalar(vnode, f"{key}.{name}")
            out[name] = "" if value is None else self.expand(str(value), vnode, f"{key}.{name}")
        return out

    def expand(self, value: str, node: yaml.Node, key: str) -> str:
        """Expand ${VAR} and ${VAR:-default}; an unset variable without default is a mistake."""

        def sub(m: re.Match[str]) -> str:
            name, default = m.group(1), m.group(2)
            if name in self.env:
                return self.env[name]
            if default is not None:
                return default
            self.problem(node, key, f"environment variable {name} is not set "
                                    f"(write ${{{name}:-}} for an empty default)")
            return ""

        return _ENV_RE.sub(sub, value)

    def resolve(self, node: yaml.Node, key: str, base: Path, raw: str) -> Path | None:
        """`base / raw` made absolute, or a problem for a path no file system can hold (a NUL
        character, a name too long)."""
        raw = raw.replace("\\", "/")  # written on Windows (services\api): the same path
        try:
            path = (base / raw).resolve()
            path.exists()  # raises for a name too long
        except (OSError, ValueError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            self.problem(node, key, f"'{raw[:80]}' is not a usable path ({reason})")
            return None
        return path

    def existing_path(self, node: yaml.Node, key: str, base: Path, want_dir: bool) -> Path | None:
        raw = self.string(node, key)
        if raw is None:
            return None
        path = self.resolve(node, key, base, raw)
        if path is None:
            return None
        shown = os.path.relpath(path, self.root)
        if want_dir and not path.is_dir():
            self.problem(node, key, f"{shown} is not a directory" if path.exists()
                         else f"{shown} does not exist")
            return None
        if not want_dir and not path.is_file():
            self.problem(node, key, f"{shown} does not exist")
            return None
        return path


def _compile_error(exc: Exception) -> str:
    """Why a regex or .dockerignore pattern does not compile, in a few words."""
    return exc.msg if isinstance(exc, re.error) else "too large or nested too deeply"


def _kind(node: yaml.Node) -> str:
    return {yaml.MappingNode: "a mapping", yaml.SequenceNode: "a list"}.get(type(node), "a value")


def load_config(path: Path, env: dict[str, str] | None = None) -> Config:
    """Read `path` and return a complete Config, or raise ConfigError listing every mistake."""
    path = path.resolve()
    checker = _Checker(path, dict(os.environ) if env is None else env)
    try:
        if path.exists() and not path.is_file():  # a FIFO or a device would never end
            raise ConfigError([Problem(checker.display, 0, "", "is not a regular file (pass "
                                       "the devloop.yaml file with --config PATH)")])
        text = decode_text(path.read_bytes())
    except NotText as exc:
        raise ConfigError([Problem(checker.display, exc.line, "", exc.message)]) from None
    except FileNotFoundError:
        raise ConfigError([Problem(checker.display, 0, "", "file not found (create it, or pass "
                                   "--config PATH)")]) from None
    except OSError as exc:
        problem = Problem(checker.display, 0, "", f"cannot read: {exc.strerror}")
        raise ConfigError([problem]) from None
    try:
        root_node = yaml.compose(text)
    except yaml.YAMLError as exc:
        raise ConfigError([Problem(checker.display, _yaml_error_line(exc, text), "",
                                   f"invalid YAML: {_yaml_error_reason(exc)}")]) from None
    except RecursionError:
        raise ConfigError([Problem(checker.display, 1, "", "invalid YAML: nested too deeply")]
                          ) from None
    if root_node is None:
        raise ConfigError([Problem(checker.display, 1, "", "file is empty")])
    config = _build(checker, root_node)
    if checker.problems or config is None:
        raise ConfigError(checker.problems)
    return config


def _yaml_error_line(exc: yaml.YAMLError, text: str) -> int:
    """The 1-based line of a parse error (a reader error only knows its character offset)."""
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    if mark is not None:
        return mark.line + 1
    position = getattr(exc, "position", None)
    return text.count("\n", 0, position) + 1 if isinstance(position, int) else 1


def _yaml_error_reason(exc: yaml.YAMLError) -> str:
    if isinstance(exc, yaml.reader.ReaderError):
        return f"character {exc.character!r} is not allowed in YAML"
    return " ".join(str(getattr(exc, "problem", None) or exc).split())


def _build(c: _Checker, root_node: yaml.Node) -> Config | None:
    top = c.mapping(root_node, "", _TOP_KEYS)
    if "version" in top:
        version = c.scalar(top["version"], "version")
        if version != 1:
            c.problem(top["version"], "version", f"unsupported version {version!r} (expected 1)")
    namespace = "default"
    if "namespace" in top:
        namespace = c.string(top["namespace"], "namespace", _NAME_RE, "namespace name") or namespace
    opts: dict[str, Any] = {}
    numeric = {
        "quiet_period_ms": (0, 10_000, True),
        "quiet_period_cap_ms": (0, 60_000, True),
        "keep_images": (1, 1000, True),
        "max_parallel": (0, 256, True),
        "rollout_timeout_s": (1, 3600, False),
    }
    for key, (lo, hi, integer) in numeric.items():
        if key in top:
            value = c.number(top[key], key, lo, hi, integer)
            if value is not None:
                opts[key] = value
    if "context" in top:
        opts["context"] = c.string(top["context"], "context")
    if "kubeconfig" in top:
        raw = c.string(top["kubeconfig"], "kubeconfig")
        if raw:
            opts["kubeconfig"] = c.resolve(top["kubeconfig"], "kubeconfig", c.root,
                                           os.path.expanduser(raw))
    if "delivery" in top:
        mode = c.string(top["delivery"], "delivery")
        if mode is not None and mode not in DELIVERY_MODES:
            c.problem(top["delivery"], "delivery",
                      f"'{mode}' is not one of {', '.join(DELIVERY_MODES)}")
        elif mode:
            opts["delivery"] = mode
    if "watch_backend" in top:
        backend = c.string(top["watch_backend"], "watch_backend")
        if backend is not None and backend not in WATCH_BACKENDS:
            c.problem(top["watch_backend"], "watch_backend",
                      f"'{backend}' is not one of {', '.join(WATCH_BACKENDS)}")
        elif backend:
            opts["watch_backend"] = backend
    if "builder" in top:
        builder = c.string(top["builder"], "builder")
        if builder is not None and builder not in BUILDERS:
            c.problem(top["builder"], "builder", f"'{builder}' is not one of {', '.join(BUILDERS)}")
        elif builder:
            opts["builder"] = builder
    if "default_repo" in top:
        opts["default_repo"] = c.string(top["default_repo"], "default_repo")
    formats = [k for k in DEPLOY_FORMATS if k in top]
    for extra in formats[1:]:
        c.problem(top[extra], extra, f"devloop.yaml deploys with one format; remove either"
                  f" {formats[0]}: or {extra}:")
    if "chart" in top:
        opts["chart"] = _chart(c, top["chart"])
    if "kustomize" in top:
        opts["kustomize"] = _kustomize(c, top["kustomize"])
    if "manifests" in top:
        opts["manifests"] = _manifests(c, top["manifests"])
    if "allow_contexts" in top:
        opts["allow_contexts"] = tuple(v for _, v in c.string_list(top["allow_contexts"],
                                                                    "allow_contexts"))
    if "insecure_registries" in top:
        opts["insecure_registries"] = tuple(
            v for _, v in c.string_list(top["insecure_registries"], "insecure_registries"))
    if "prune" in top:
        prune = c.scalar(top["prune"], "prune")
        if not isinstance(prune, bool):
            c.problem(top["prune"], "prune", f"must be true or false, got {prune!r}")
        else:
            opts["prune"] = prune
    if "resources" in top:
        opts["resources"] = _resources(c, top["resources"])
    if "image_paths" in top:
        opts["image_paths"] = _image_paths(c, top["image_paths"])
    services: dict[str, ServiceConfig] = {}
    if "services" not in top:
        c.problem(root_node, "services", "is required (one entry per image to build)")
    else:
        nodes = c.mapping(top["services"], "services", set())
        if not nodes and isinstance(top["services"], yaml.MappingNode):
            c.problem(top["services"], "services", "must list at least one service")
        for name, node in nodes.items():
            if not _NAME_RE.fullmatch(name):
                c.problem(node, f"services.{name}", "service names are lowercase letters, "
                          "digits and '-'")
                continue
            svc = _service(c, name, node)
            if svc is not None:
                services[name] = svc
        _check_unique(c, top["services"], services)
        _check_forwards(c, top["services"], services)
    if c.problems:
        return None
    return Config(path=c.path, root=c.root, namespace=namespace, services=services, **opts)


def _service(c: _Checker, name: str, node: yaml.Node) -> ServiceConfig | None:
    key = f"services.{name}"
    fields = c.mapping(node, key, _SERVICE_KEYS)
    if not isinstance(node, yaml.MappingNode):
        return None
    for required in ("context", "image"):
        if required not in fields:
            c.problem(node, f"{key}.{required}", "is required")
    context = (c.existing_path(fields["context"], f"{key}.context", c.root, want_dir=True)
               if "context" in fields else None)
    dockerfile = None
    if context is not None:
        if "dockerfile" in fields:
            dockerfile = c.existing_path(fields["dockerfile"], f"{key}.dockerfile", context,
                                         want_dir=False)
        elif (context / "Dockerfile").is_file():
            dockerfile = context / "Dockerfile"
        else:
            c.problem(fields["context"], f"{key}.dockerfile",
                      f"{os.path.relpath(context / 'Dockerfile', c.root)} does not exist "
                      "(set dockerfile: to the right file)")
    if context is not None:
        _check_dockerignore(c, context)
    image = c.string(fields["image"], f"{key}.image", _IMAGE_RE, "image name (no tag: devloop "
                     "tags images with their input digest)") if "image" in fields else None
    deployment, kind = name, "Deployment"
    if "deployment" in fields:
        deployment = c.string(fields["deployment"], f"{key}.deployment", _NAME_RE,
                              "Deployment name") or name
    if "workload" in fields:
        if "deployment" in fields:
            c.problem(fields["workload"], f"{key}.workload", "names the same thing as"
                      " deployment:; keep one (workload: KIND/NAME names any kind)")
        ref = _workload(c, fields["workload"], f"{key}.workload")
        if ref is not None:
            deployment, kind = ref.name, ref.kind.kind
    container = deployment
    if "container" in fields:
        container = c.string(fields["container"], f"{key}.container", _NAME_RE,
                             "container name") or deployment
    build_args = c.string_map(fields["build_args"], f"{key}.build_args") \
        if "build_args" in fields else {}
    target = c.string(fields["target"], f"{key}.target") if "target" in fields else None
    platform = (c.string(fields["platform"], f"{key}.platform", _PLATFORM_RE,
                         "platform (os/arch[/variant], e.g. linux/amd64)")
                if "platform" in fields else None)
    build_secrets = (_build_secrets(c, fields["build_secrets"], f"{key}.build_secrets")
                     if "build_secrets" in fields else {})
    watch: list[Path] = []
    if "watch" in fields:
        for item, raw in c.string_list(fields["watch"], f"{key}.watch"):
            path = c.resolve(item, f"{key}.watch", c.root, raw)
            if path is None:
                continue
            if not path.exists():
                c.problem(item, f"{key}.watch", f"{os.path.relpath(path, c.root)} does not exist")
            else:
                watch.append(path)
    ignore = tuple(v for _, v in c.string_list(fields["ignore"], f"{key}.ignore")) \
        if "ignore" in fields else ()
    path_map: dict[str, Path] = {}
    if "path_map" in fields:
        for cpath, local in c.string_map(fields["path_map"], f"{key}.path_map").items():
            resolved = c.resolve(fields["path_map"], f"{key}.path_map.{cpath}", c.root, local)
            if resolved is not None:
                path_map[cpath.rstrip("/") or "/"] = resolved
    live_update = (_live_update(c, fields["live_update"], f"{key}.live_update", context)
                   if "live_update" in fields else LiveUpdateConfig())
    port_forwards = (_port_forwards(c, fields["port_forwards"], f"{key}.port_forwards")
                     if "port_forwards" in fields else ())
    logs = _logs(c, fields["logs"], f"{key}.logs") if "logs" in fields else LogFilter()
    if None in (context, dockerfile, image):
        return None
    assert context is not None and dockerfile is not None and image is not None
    return ServiceConfig(
        name=name, context=context, dockerfile=dockerfile, image=image, deployment=deployment,
        container=container, build_args=build_args, target=target, watch=tuple(watch),
        ignore=ignore, path_map=path_map, live_update=live_update, port_forwards=port_forwards,
        logs=logs, kind=kind, platform=platform, build_secrets=build_secrets,
    )


_PLATFORM_RE = re.compile(r"[a-z0-9]+/[a-z0-9_]+(/[a-z0-9]+)?")  # one: the image is loaded
_SECRET_ID_RE = re.compile(r"[A-Za-z0-9_.-]+")
_ENV_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _build_secrets(c: _Checker, node: yaml.Node, key: str) -> dict[str, BuildSecret]:
    """`build_secrets: {npmrc: {file: ~/.npmrc}, token: {env: GH_TOKEN}}`: sources only, so
    devloop.yaml never holds a value."""
    out: dict[str, BuildSecret] = {}
    for sid, item in c.mapping(node, key, set()).items():
        where = f"{key}.{sid}"
        if not _SECRET_ID_RE.fullmatch(sid):
            c.problem(item, where, "secret ids are letters, digits, '_', '.' and '-'")
            continue
        fields = c.mapping(item, where, {"file", "env"})
        if not isinstance(item, yaml.MappingNode):
            continue
        if len(fields) != 1:
            c.problem(item, where, "needs exactly one of file: (a path) or env: (a variable"
                      " name) holding the secret")
            continue
        if "env" in fields:
            name = c.string(fields["env"], f"{where}.env", _ENV_NAME_RE,
                            "environment variable name")
            if name:
                out[sid] = BuildSecret(env=name)
        else:
            raw = c.string(fields["file"], f"{where}.file")
            path = (c.resolve(fields["file"], f"{where}.file", c.root, os.path.expanduser(raw))
                    if raw else None)
            if path is not None and not path.is_file():
                c.problem(fields["file"], f"{where}.file", f"{path} is not a readable file")
            elif path is not None:
                out[sid] = BuildSecret(file=path)
    return out


def _workload(c: _Checker, node: yaml.Node, key: str) -> WorkloadRef | None:
    """`statefulset/db` (KIND/NAME, any workload kind) or `web` (a Deployment)."""
    text = c.string(node, key)
    if text is None:
        return None
    try:
        ref = WorkloadRef.parse(text)
    except WorkloadError as exc:
        c.problem(node, key, str(exc))
        return None
    if not _NAME_RE.fullmatch(ref.name):
        c.problem(node, key, f"'{ref.name}' is not a valid workload name")
        return None
    return ref


def _resources(c: _Checker, node: yaml.Node) -> dict[str, ResourceConfig]:
    """`resources: {postgres: {workload: statefulset/postgres, port_forwards: [5432]}}`."""
    out: dict[str, ResourceConfig] = {}
    for name, item in c.mapping(node, "resources", set()).items():
        key = f"resources.{name}"
        fields = c.mapping(item, key, _RESOURCE_KEYS)
        if not isinstance(item, yaml.MappingNode):
            continue
        if "workload" not in fields:
            c.problem(item, f"{key}.workload", "is required (KIND/NAME, e.g. statefulset/db)")
            continue
        ref = _workload(c, fields["workload"], f"{key}.workload")
        container = (c.string(fields["container"], f"{key}.container", _NAME_RE,
                              "container name") if "container" in fields else None)
        forwards = (_port_forwards(c, fields["port_forwards"], f"{key}.port_forwards")
                    if "port_forwards" in fields else ())
        logs = _logs(c, fields["logs"], f"{key}.logs") if "logs" in fields else LogFilter()
        if ref is not None:
            out[name] = ResourceConfig(name, ref, container, forwards, logs)
    return out


def _image_paths(c: _Checker, node: yaml.Node) -> dict[str, tuple[str, ...]]:
    """`image_paths: {Kind: [spec.image, spec.template.spec.containers[*].image]}`."""
    out: dict[str, tuple[str, ...]] = {}
    for kind, item in c.mapping(node, "image_paths", set()).items():
        paths = []
        for path_node, path in c.string_list(item, f"image_paths.{kind}"):
            try:
                parse_path(path)
            except PathError as exc:
                c.problem(path_node, f"image_paths.{kind}", str(exc))
                continue
            paths.append(path)
        out[kind] = tuple(paths)
    return out


def _check_dockerignore(c: _Checker, context: Path) -> None:
    """The context's .dockerignore is UTF-8 text whose patterns compile; else one line naming
    its own file and line (read byte for byte, as docker does, it would skip other files than
    the person meant)."""
    path = context / ".dockerignore"
    try:
        shown = str(path.relative_to(Path.cwd()))
    except ValueError:
        shown = str(path)
    try:
        text = decode_text(path.read_bytes())
    except (FileNotFoundError, NotADirectoryError):
        return
    except NotText as exc:
        c.problems.append(Problem(shown, exc.line, "", exc.message))
        return
    except OSError as exc:
        c.problems.append(Problem(shown, 0, "", f"cannot read: {exc.strerror}"))
        return
    for number, line in enumerate(text.splitlines(), 1):
        pattern = line.strip()
        if not pattern or pattern.startswith("#"):
            continue
        try:
            PatternMatcher([pattern]).matches("x")
        except (re.error, OverflowError, RecursionError) as exc:
            reason = _compile_error(exc)
            c.problems.append(Problem(shown, number, "", f"'{pattern[:80]}' is not a valid"
                                                         f" pattern ({reason})"))


def _port_forwards(c: _Checker, node: yaml.Node, key: str) -> tuple[PortForward, ...]:
    """`[3000, "8080:8000", {port: "8080:8000", address: 0.0.0.0}]`: local[:remote] ports."""
    out: list[PortForward] = []
    for i, item in enumerate(_items(c, node, key)):
        where, port_node, address = f"{key}[{i}]", item, "127.0.0.1"
        if isinstance(item, yaml.MappingNode):
            fields = c.mapping(item, where, _FORWARD_KEYS)
            if "port" not in fields:
                c.problem(item, f"{where}.port", "is required (LOCAL:REMOTE or one port)")
                continue
            port_node = fields["port"]
            where_port = f"{where}.port"
            if "address" in fields:
                raw = c.string(fields["address"], f"{where}.address")
                try:
                    address = str(ipaddress.ip_address(raw or ""))
                except ValueError:
                    c.problem(fields["address"], f"{where}.address",
                              f"'{raw}' is not an IP address (e.g. 127.0.0.1 or 0.0.0.0)")
                    continue
        else:
            where_port = where
        value = c.scalar(port_node, where_port)
        if value is None:
            continue
        parts = str(value).split(":")
        ports = [int(p) if _DIGITS.fullmatch(p) else -1 for p in parts]
        if len(parts) > 2 or any(not 0 < p < 65536 for p in ports):
            c.problem(port_node, where_port, f"'{value}' is not PORT or LOCAL:REMOTE"
                      " (ports 1-65535)")
            continue
        forward = PortForward(ports[0], ports[-1], address)
        if any((f.local_port, f.address) == (forward.local_port, address) for f in out):
            c.problem(port_node, where_port, f"local port {forward.local_port} is forwarded"
                      " twice")
            continue
        out.append(forward)
    return tuple(out)


def _logs(c: _Checker, node: yaml.Node, key: str) -> LogFilter:
    """`{include: [regex, ...], exclude: [regex, ...]}` (or one regex each), each compiled."""
    fields = c.mapping(node, key, _LOGS_KEYS)
    compiled: dict[str, tuple[re.Pattern[str], ...]] = {}
    for name, vnode in fields.items():
        where = f"{key}.{name}"
        items = [(vnode, c.string(vnode, where))] if isinstance(vnode, yaml.ScalarNode) \
            else c.string_list(vnode, where)
        out = []
        for item, text in items:
            if not text:
                continue
            try:
                out.append(re.compile(text))
            except (re.error, OverflowError, RecursionError) as exc:
                reason = _compile_error(exc)
                c.problem(item, where, f"'{text[:80]}' is not a valid regular expression"
                                       f" ({reason})")
        compiled[name] = tuple(out)
    return LogFilter(include=compiled.get("include", ()), exclude=compiled.get("exclude", ()))


def _live_update(c: _Checker, node: yaml.Node, key: str, context: Path | None
                 ) -> LiveUpdateConfig:
    """`live_update: false`, `true`, or a mapping of sync / fall_back_on / run."""
    if isinstance(node, yaml.ScalarNode):
        value = c.scalar(node, key)
        if not isinstance(value, bool):
            c.problem(node, key, f"must be false, true or a mapping, got {value!r}")
        return LiveUpdateConfig(enabled=value is not False)
    fields = c.mapping(node, key, _LIVE_KEYS)
    sync: list[SyncRule] = []
    if "sync" in fields:
        for i, item in enumerate(_items(c, fields["sync"], f"{key}.sync")):
            rule = _sync_rule(c, item, f"{key}.sync[{i}]", context)
            if rule is not None:
                sync.append(rule)
    fall_back_on = _patterns(c, fields["fall_back_on"], f"{key}.fall_back_on") \
        if "fall_back_on" in fields else ()
    run: list[RunStep] = []
    if "run" in fields:
        for i, item in enumerate(_items(c, fields["run"], f"{key}.run")):
            step = _run_step(c, item, f"{key}.run[{i}]")
            if step is not None:
                run.append(step)
    return LiveUpdateConfig(sync=tuple(sync), fall_back_on=fall_back_on, run=tuple(run))


def _items(c: _Checker, node: yaml.Node, key: str) -> list[yaml.Node]:
    if not isinstance(node, yaml.SequenceNode):
        c.problem(node, key, f"must be a list, not {_kind(node)}")
        return []
    return list(node.value)


def _sync_rule(c: _Checker, node: yaml.Node, key: str, context: Path | None) -> SyncRule | None:
    """{src, dest}: src inside the context (it may not exist yet), dest an absolute path."""
    fields = c.mapping(node, key, _SYNC_KEYS)
    if not isinstance(node, yaml.MappingNode):
        return None
    for required in ("src", "dest"):
        if required not in fields:
            c.problem(node, f"{key}.{required}", "is required")
    src = c.string(fields["src"], f"{key}.src") if "src" in fields else None
    dest = c.string(fields["dest"], f"{key}.dest") if "dest" in fields else None
    rel = None
    if src is not None and context is not None:
        path = Path(os.path.normpath(context / src))
        if path != context and context not in path.parents:
            c.problem(fields["src"], f"{key}.src", f"'{src}' is outside the build context "
                      f"{os.path.relpath(context, c.root)} (src is relative to the context)")
        else:
            rel = "" if path == context else path.relative_to(context).as_posix()
    if dest is not None and not dest.startswith("/"):
        c.problem(fields["dest"], f"{key}.dest", f"'{dest}' must be an absolute container path "
                  "(starting with /)")
        dest = None
    if rel is None or dest is None:
        return None
    # a trailing / is kept: a file src then lands inside dest, as with COPY
    return SyncRule(rel, posixpath.normpath(dest) + ("/" if dest.endswith("/") else ""))


def _run_step(c: _Checker, node: yaml.Node, key: str) -> RunStep | None:
    """{cmd, trigger} or just the command as a string."""
    if isinstance(node, yaml.ScalarNode):
        cmd = c.string(node, key)
        if cmd is not None and not cmd.strip():
            c.problem(node, key, "must not be empty")
        return RunStep(cmd.strip()) if cmd and cmd.strip() else None
    fields = c.mapping(node, key, _RUN_KEYS)
    if not isinstance(node, yaml.MappingNode):
        return None
    if "cmd" not in fields:
        c.problem(node, f"{key}.cmd", "is required (the shell command to run)")
        return None
    cmd = c.string(fields["cmd"], f"{key}.cmd")
    if cmd is not None and not cmd.strip():
        c.problem(fields["cmd"], f"{key}.cmd", "must not be empty")
        cmd = None
    trigger = _patterns(c, fields["trigger"], f"{key}.trigger") if "trigger" in fields else ()
    return RunStep(cmd.strip(), trigger) if cmd is not None else None


def _patterns(c: _Checker, node: yaml.Node, key: str) -> tuple[str, ...]:
    """A list (or one) of .dockerignore-style patterns, each checked to compile."""
    if isinstance(node, yaml.ScalarNode):
        one = c.string(node, key)
        items = [(node, one)] if one else []
    else:
        items = c.string_list(node, key)
    out = []
    for item, pattern in items:
        try:
            PatternMatcher([pattern]).matches("x")
        except (re.error, OverflowError, RecursionError) as exc:
            reason = _compile_error(exc)
            c.problem(item, key, f"'{pattern[:80]}' is not a valid pattern ({reason})")
            continue
        out.append(pattern)
    return tuple(out)


def _chart(c: _Checker, node: yaml.Node) -> ChartConfig | None:
    fields = c.mapping(node, "chart", _CHART_KEYS)
    if "path" not in fields:
        if isinstance(node, yaml.MappingNode):
            c.problem(node, "chart.path", "is required")
        return None
    chart_dir = c.existing_path(fields["path"], "chart.path", c.root, want_dir=True)
    release = None
    if "release" in fields:
        release = c.string(fields["release"], "chart.release", _NAME_RE, "release name")
    elif chart_dir is not None:
        release = _chart_name(c, fields["path"], chart_dir)
    values_files: list[Path] = []
    if "values_files" in fields:
        # Listed values files may be absent (secrets files are git-ignored); they are used when
        # present, so a fresh clone works without them.
        values_files = [path for item, raw in c.string_list(fields["values_files"],
                                                           "chart.values_files")
                        if (path := c.resolve(item, "chart.values_files", c.root, raw))]
    set_values = c.string_map(fields["set"], "chart.set") if "set" in fields else {}
    set_env: dict[str, str] = {}
    if "set_env" in fields:
        for value_path, env_name in c.string_map(fields["set_env"], "chart.set_env").items():
            if not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", env_name):
                c.problem(fields["set_env"], f"chart.set_env.{value_path}",
                          f"'{env_name}' is not an environment variable name")
            else:
                set_env[value_path] = env_name
    if chart_dir is None or release is None:
        return None
    return ChartConfig(path=chart_dir, release=release, values_files=tuple(values_files),
                       set_values=set_values, set_env=set_env)


def _chart_name(c: _Checker, node: yaml.Node, path: Path) -> str | None:
    """The default release name: the chart's own `name` (Chart.yaml), as `helm install
    --generate-name` users expect a name they recognise."""
    shown = os.path.relpath(path / "Chart.yaml", c.root)
    try:
        data = yaml.safe_load(decode_text((path / "Chart.yaml").read_bytes()))
    except FileNotFoundError:
        c.problem(node, "chart.path", f"{shown} does not exist (is {os.path.relpath(path, c.root)}"
                  " a Helm chart?)")
        return None
    except (OSError, yaml.YAMLError, NotText, RecursionError) as exc:
        c.problem(node, "chart.path", f"{shown} cannot be read: {exc}".splitlines()[0])
        return None
    name = data.get("name") if isinstance(data, dict) else None
    if not isinstance(name, str) or not _NAME_RE.match(name):
        c.problem(node, "chart.release", f"{shown} has no usable name: set chart.release")
        return None
    return name


def _kustomize(c: _Checker, node: yaml.Node) -> Path | None:
    """`kustomize: DIR`: a directory holding a kustomization file."""
    path = c.existing_path(node, "kustomize", c.root, want_dir=True)
    if path is not None and not any((path / n).is_file() for n in KUSTOMIZATION_NAMES):
        c.problem(node, "kustomize", f"{os.path.relpath(path, c.root)} has no kustomization.yaml")
        return None
    return path


def _manifests(c: _Checker, node: yaml.Node) -> tuple[str, ...]:
    """`manifests: [PATH, ...]`: files, directories or globs (relative to devloop.yaml), each
    matching at least one file now, so a typo is reported instead of deploying nothing."""
    items = [(node, c.string(node, "manifests"))] if isinstance(node, yaml.ScalarNode) \
        else c.string_list(node, "manifests")
    out: list[str] = []
    for item, raw in items:
        if not raw:
            continue
        pattern = str(c.root / os.path.expanduser(raw))
        if not glob.glob(pattern, recursive=True):
            c.problem(item, "manifests", f"{raw} matches no file or directory")
            continue
        out.append(pattern)
    return tuple(out)


def _check_unique(c: _Checker, node: yaml.Node, services: dict[str, ServiceConfig]) -> None:
    seen: dict[tuple[str, str], str] = {}
    for svc in services.values():
        key = (svc.deployment, svc.container)
        if key in seen:
            c.problem(node, f"services.{svc.name}.deployment",
                      f"Deployment {svc.deployment} container {svc.container} is already fed by "
                      f"service {seen[key]}")
        seen[key] = svc.name


def _check_forwards(c: _Checker, node: yaml.Node, services: dict[str, ServiceConfig]) -> None:
    """One local address:port serves one service only."""
    seen: dict[tuple[str, int], str] = {}
    for svc in services.values():
        for forward in svc.port_forwards:
            local = (forward.address, forward.local_port)
            if local in seen:
                c.problem(node, f"services.{svc.name}.port_forwards",
                          f"local port {forward.local_port} is already forwarded for service"
                          f" {seen[local]}")
            seen.setdefault(local, svc.name)

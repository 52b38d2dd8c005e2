"""Render a project's manifests (Helm chart, kustomization or plain YAML) into objects.

One renderer per format, each returning `Rendered` objects that remember the file they came
from, so every later message (a conflict, an object without a name) can point at it. Nothing
after this module knows which format the project uses. A rendering error is a `RenderError`
whose text is one line naming the file and, where the tool or the YAML parser says, the line.
"""

from __future__ import annotations

import glob
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from devloop.config.loader import KUSTOMIZATION_NAMES, ChartConfig, Config
from devloop.text import one_line

HELM_INSTALL_HINT = ("install helm 3 or 4 (https://helm.sh/docs/intro/install/, or"
                     " scripts/install-helm in this repo) or point $DEVLOOP_HELM at it")
KUBECTL_INSTALL_HINT = ("install kubectl 1.27+ (it embeds kustomize; scripts/install-helm puts"
                        " one in .tools/bin) or point $DEVLOOP_KUBECTL at it")
SET_PREFIX = "DEVLOOP_SET_"
MANIFEST_SUFFIXES = (".yaml", ".yml", ".json")
_SOURCE_RE = re.compile(r"^# Source: (.+)$", re.MULTILINE)

Runner = Callable[..., "subprocess.CompletedProcess[str]"]


class RenderError(Exception):
    """The manifests cannot be rendered; str() is one line naming file (and line) and cause."""


@dataclass(frozen=True)
class Rendered:
    """One object of the rendered manifests and where it came from (for messages)."""

    obj: dict[str, Any]
    source: str


# --- tools ---------------------------------------------------------------------------------------

def find_helm(env: Mapping[str, str] | None = None) -> str:
    """$DEVLOOP_HELM, else `helm` on PATH (a missing one is reported when it is run)."""
    env = os.environ if env is None else env
    return env.get("DEVLOOP_HELM") or shutil.which("helm") or "helm"


def find_kubectl(env: Mapping[str, str] | None = None) -> str:
    """$DEVLOOP_KUBECTL, else the kubectl beside helm (scripts/install-helm puts both in
    .tools/bin), else `kubectl` on PATH."""
    env = os.environ if env is None else env
    if env.get("DEVLOOP_KUBECTL"):
        return env["DEVLOOP_KUBECTL"]
    helm = shutil.which(find_helm(env))
    if helm:
        beside = Path(helm).resolve().parent / "kubectl"
        if beside.is_file() and os.access(beside, os.X_OK):
            return str(beside)
    return shutil.which("kubectl") or "kubectl"


def _run(run: Runner, args: list[str], what: str, hint: str, timeout: float
         ) -> subprocess.CompletedProcess[str]:
    try:
        return run(args, capture_output=True, text=True, timeout=timeout)
    except FileNotFoundError as exc:
        raise RenderError(f"{args[0]} is not installed (it renders {what}): {hint}") from exc
    except subprocess.TimeoutExpired as exc:
        raise RenderError(f"{' '.join(args[:2])} {what} did not finish in {timeout:.0f}s"
                          ) from exc


def _error_line(stderr: str, prefix: str) -> str:
    """The tool's own error line (`Error: ...` / `error: ...`): it names file and line."""
    lines = [ln.strip() for ln in (stderr or "").splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.lower().startswith(prefix)]
    chosen = errors[-1] if errors else (lines[-1] if lines else "no error output")
    return chosen[len(prefix):].strip() if chosen.lower().startswith(prefix) else chosen


# --- Helm ----------------------------------------------------------------------------------------

def nested_values(dotted: Mapping[str, str]) -> dict[str, Any]:
    """{"a.b": "x"} -> {"a": {"b": "x"}} (a values file for helm)."""
    root: dict[str, Any] = {}
    for key, value in dotted.items():
        node = root
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise RenderError(f"value {key} conflicts with another value set on {part}")
        node[leaf] = value
    return root


def env_values(chart: ChartConfig, env: Mapping[str, str]) -> dict[str, str]:
    """Chart values taken from the environment (secrets never live in git or devloop.yaml):
    `chart.set_env` ({value.path: ENV_NAME}), then any DEVLOOP_SET_<path, `__` between keys>,
    which wins. Empty variables are ignored so an exported-but-empty one does not blank a
    values file entry."""
    values = {path: env[name] for path, name in chart.set_env.items() if env.get(name)}
    for name, value in env.items():
        if name.startswith(SET_PREFIX) and len(name) > len(SET_PREFIX) and value:
            values[name[len(SET_PREFIX):].replace("__", ".")] = value
    return values


def chart_values(chart: ChartConfig, env: Mapping[str, str]) -> dict[str, str]:
    """`chart.set` overlaid with the values from the environment."""
    return {**chart.set_values, **env_values(chart, env)}


def render_chart(chart_dir: Path, release: str, namespace: str, values_files: list[Path],
                 set_values: Mapping[str, str], helm: str = "helm", run: Runner = subprocess.run,
                 timeout: float = 120, set_env: Mapping[str, str] | None = None
                 ) -> list[dict[str, Any]]:
    """`helm template` the chart and return its objects as dicts (see render_chart_sources)."""
    return [r.obj for r in render_chart_sources(chart_dir, release, namespace, values_files,
                                                set_values, helm, run, timeout, set_env)]


def render_chart_sources(chart_dir: Path, release: str, namespace: str,
                         values_files: list[Path], set_values: Mapping[str, str],
                         helm: str = "helm", run: Runner = subprocess.run, timeout: float = 120,
                         set_env: Mapping[str, str] | None = None) -> list[Rendered]:
    """`helm template` the chart; each object knows its template (helm's `# Source:` line).

    set_values go to helm through a private temporary values file, never the command line, so
    secrets do not show up in `ps`; they are strings (like --set-string)."""
    chart_dir = Path(chart_dir)
    if not (chart_dir / "Chart.yaml").is_file():
        raise RenderError(f"chart directory {chart_dir} has no Chart.yaml")
    for values in values_files:
        if not Path(values).is_file():
            raise RenderError(f"values file {values} does not exist")
    args = [helm, "template", release, str(chart_dir), "--namespace", namespace]
    for values in values_files:
        args += ["--values", str(values)]
    fd, secret_file = tempfile.mkstemp(prefix="devloop-values-", suffix=".yaml")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:  # mkstemp: mode 0600
            yaml.safe_dump(nested_values(set_values), handle)
        if set_values:
            args += ["--values", secret_file]
        done = _run(run, args, f"the chart {chart_dir}", HELM_INSTALL_HINT, timeout)
    finally:
        os.unlink(secret_file)
    if done.returncode != 0:
        message = _error_line(done.stderr, "error:")
        names = [env for path, env in (set_env or {}).items() if path in message]
        if names:
            message += (f" (devloop reads it from the environment variable {names[0]}:"
                        " chart.set_env in devloop.yaml)")
        raise RenderError(one_line(f"helm template {chart_dir} failed: {message}", 700))
    out: list[Rendered] = []
    for doc in re.split(r"^---\s*$", done.stdout, flags=re.MULTILINE):
        source = _SOURCE_RE.search(doc)
        where = source.group(1) if source else str(chart_dir)
        out += _parse(doc, where, f"helm template {chart_dir} printed invalid YAML in {where}")
    return out


# --- kustomize -----------------------------------------------------------------------------------

def render_kustomize(directory: Path, kubectl: str = "kubectl", run: Runner = subprocess.run,
                     timeout: float = 120) -> list[Rendered]:
    """`kubectl kustomize DIR` (kustomize v5 built into kubectl)."""
    done = _run(run, [kubectl, "kustomize", str(directory)], f"the kustomization {directory}",
                KUBECTL_INSTALL_HINT, timeout)
    if done.returncode != 0:
        raise RenderError(one_line(f"kustomize {directory} failed: "
                                   f"{_error_line(done.stderr, 'error:')}", 700))
    return _parse(done.stdout, str(directory), f"kustomize {directory} printed invalid YAML")


# --- plain YAML ----------------------------------------------------------------------------------

def manifest_files(patterns: tuple[str, ...] | list[str]) -> list[Path]:
    """The files the `manifests:` entries name: files, directories (every .yaml/.yml/.json
    below, sorted) and globs, each file once, in the order given."""
    found: dict[Path, None] = {}
    for pattern in patterns:
        for match in sorted(glob.glob(pattern, recursive=True)):
            path = Path(match)
            if path.is_dir():
                for sub in sorted(path.rglob("*")):
                    if sub.is_file() and sub.suffix in MANIFEST_SUFFIXES:
                        found.setdefault(sub, None)
            elif path.is_file():
                found.setdefault(path, None)
    return list(found)


def render_files(patterns: tuple[str, ...] | list[str], root: Path) -> list[Rendered]:
    """Every object of every file (multi-document YAML); a YAML mistake names file:line."""
    files = manifest_files(patterns)
    if not files:
        raise RenderError(f"manifests: {', '.join(patterns)} match no file (devloop.yaml)")
    out: list[Rendered] = []
    for path in files:
        shown = os.path.relpath(path, root)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise RenderError(f"{shown}: cannot read: {exc.strerror}") from exc
        out += _parse(text, shown, shown, marks=True)
    return out


def _parse(text: str, source: str, what: str, marks: bool = False) -> list[Rendered]:
    """The mapping documents of `text` (a `List` kind is unpacked); YAML errors are one line,
    with `source:line` when `marks` (the text is the user's own file)."""
    try:
        docs = list(yaml.safe_load_all(text))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        reason = getattr(exc, "problem", None) or str(exc)
        if marks and mark is not None:
            raise RenderError(one_line(f"{source}:{mark.line + 1}: invalid YAML: {reason}")
                              ) from exc
        raise RenderError(one_line(f"{what}: {reason}")) from exc
    out: list[Rendered] = []
    for doc in docs:
        if doc is None:
            continue
        if not isinstance(doc, dict):
            raise RenderError(f"{source}: a document is {type(doc).__name__}, not an object")
        items = doc.get("items") if str(doc.get("kind", "")).endswith("List") else [doc]
        for obj in items or []:
            if not isinstance(obj, dict) or not obj.get("kind") or not obj.get("apiVersion"):
                raise RenderError(f"{source}: an object without apiVersion or kind")
            if not (obj.get("metadata") or {}).get("name"):
                raise RenderError(f"{source}: {obj.get('kind')} without metadata.name")
            out.append(Rendered(obj, source))
    return out


# --- one entry point -----------------------------------------------------------------------------

def render(config: Config, namespace: str, env: Mapping[str, str],
           run: Runner = subprocess.run) -> list[Rendered]:
    """The project's objects in the format devloop.yaml names ([] without one)."""
    fmt = config.deploy_format
    if fmt == "chart":
        chart = config.chart
        assert chart is not None
        return render_chart_sources(chart.path, chart.release, namespace,
                                    [p for p in chart.values_files if p.is_file()],
                                    chart_values(chart, env), helm=find_helm(env), run=run,
                                    set_env=chart.set_env)
    if fmt == "kustomize":
        assert config.kustomize is not None
        return render_kustomize(config.kustomize, find_kubectl(env), run=run)
    if fmt == "manifests":
        return render_files(config.manifests, config.root)
    return []


def input_paths(config: Config) -> list[Path]:
    """What to watch for manifest changes: the chart directory and values files, the
    kustomization directory and the local directories it refers to, or the manifest files
    and directories (a glob's directory)."""
    fmt = config.deploy_format
    if fmt == "chart":
        assert config.chart is not None
        return [config.chart.path, *config.chart.values_files]
    if fmt == "kustomize":
        assert config.kustomize is not None
        return _kustomize_dirs(config.kustomize, set())
    out: list[Path] = []
    for pattern in config.manifests:
        if glob.has_magic(pattern):
            base = Path(pattern)
            while glob.has_magic(str(base)):
                base = base.parent
            out.append(base)
        else:
            out.append(Path(pattern))
    return out


def _kustomize_dirs(directory: Path, seen: set[Path]) -> list[Path]:
    """The kustomization directory and every local directory its resources, components or
    bases name (an overlay's `../base`), recursively."""
    directory = directory.resolve()
    if directory in seen:
        return []
    seen.add(directory)
    out = [directory]
    for name in KUSTOMIZATION_NAMES:
        path = directory / name
        if not path.is_file():
            continue
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError):
            return out  # rendering reports it
        for key in ("resources", "components", "bases"):
            for ref in data.get(key) or [] if isinstance(data, dict) else []:
                target = (directory / str(ref)).resolve()
                if target.is_dir() and not any(target == d or d in target.parents
                                                for d in out):
                    out += _kustomize_dirs(target, seen)
        break
    return out

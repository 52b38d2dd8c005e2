"""The architecture holds: devloop's packages form layers, and no import points up or in a circle.

Read from the source with ast (every import, also those inside functions or under
TYPE_CHECKING: a type-only arrow is still a dependency a reader must follow), so a new module
that imports the wrong way fails here before anyone has to untangle it.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2] / "devloop"

# Lowest first. A unit is a subpackage of devloop or a module directly in it; each may import
# only units of its own rank or below (the README's "what happens on a save" reads top-down).
LAYERS: list[set[str]] = [
    {"text", "exitcodes", "events", "vocab", "redact"},  # shared words, no devloop imports
    {"k8s"},  # the API: connection, errors, retries, kinds, workloads, pods
    {"config"},  # devloop.yaml
    {"manifests"},  # rendering and applying a project's manifests
    {"inputs"},  # ignore rules, digests, file watching
    {"image"},  # Dockerfiles and builds
    {"live"},  # live update
    {"follow"},  # logs, forwards, restarts, tracebacks
    {"deploy"},  # delivery, install, patch, rollout, context guard
    {"loop"},  # the engine, its rules, the reload pipeline
    {"ui"},  # console and dashboard
    {"commands"},  # status, down
    {"app"},  # wiring for one run
    {"cli"},  # the command line
]
MAX_TOP_LEVEL_MODULES = 8


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """devloop modules `path` imports (`from devloop.x import name` counts devloop.x.name when
    that is a module, else devloop.x)."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("devloop"))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            if not target.startswith("devloop"):
                continue
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                found.add(sub if sub in MODULES else target)
    found.discard(name)
    return {m for m in found if m in MODULES}


MODULES = {_module_name(p): p for p in ROOT.rglob("*.py")}
GRAPH = {name: _imports(path) for name, path in MODULES.items()}


def _unit(module: str) -> str:
    return module.split(".")[1] if "." in module else module


def _rank(unit: str) -> int:
    for rank, units in enumerate(LAYERS):
        if unit in units:
            return rank
    raise AssertionError(f"devloop.{unit} is in no layer: add it to LAYERS in {__file__}")


def test_every_unit_has_a_layer() -> None:
    for module in MODULES:
        if module != "devloop":
            _rank(_unit(module))


def test_no_import_points_to_a_higher_layer() -> None:
    upward = [f"{a} -> {b}" for a, targets in GRAPH.items() for b in sorted(targets)
              if a != "devloop" and _rank(_unit(b)) > _rank(_unit(a))]
    assert not upward, "imports that point up a layer:\n  " + "\n  ".join(upward)


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of `graph` as a path, or None (iterative DFS, colours white/grey/black)."""
    state: dict[str, int] = {}
    for start in sorted(graph):
        if state.get(start):
            continue
        stack = [(start, iter(sorted(graph[start])))]
        path = [start]
        state[start] = 1
        while stack:
            node, children = stack[-1]
            child = next(children, None)
            if child is None:
                state[node] = 2
                stack.pop()
                path.pop()
            elif state.get(child) == 1:
                return [*path[path.index(child):], child]
            elif not state.get(child):
                state[child] = 1
                path.append(child)
                stack.append((child, iter(sorted(graph.get(child, ())))))
    return None


def test_no_import_cycle_between_modules() -> None:
    # a package's __init__ re-exports its modules: the arrow from it is not a dependency of theirs
    graph = {m: {t for t in ts if not (MODULES[m].name == "__init__.py" and t.startswith(m + "."))}
             for m, ts in GRAPH.items()}
    cycle = _cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_no_import_cycle_between_units() -> None:
    units: dict[str, set[str]] = {}
    for module, targets in GRAPH.items():
        if module != "devloop":
            units.setdefault(_unit(module), set()).update(
                _unit(t) for t in targets if _unit(t) != _unit(module))
    cycle = _cycle(units)
    assert cycle is None, "cycle between packages: " + " -> ".join(cycle or [])


def test_few_modules_directly_in_devloop() -> None:
    top = sorted(p.name for p in ROOT.glob("*.py"))
    assert len(top) <= MAX_TOP_LEVEL_MODULES, f"devloop/ holds {top}: move some into a package"


@pytest.mark.parametrize("wrong", [("devloop.text", "devloop.loop.engine")])
def test_the_check_catches_an_upward_import(wrong: tuple[str, str]) -> None:
    """Positive control: an arrow from the bottom layer to the loop is reported."""
    low, high = wrong
    assert _rank(_unit(high)) > _rank(_unit(low))
    graph = {**GRAPH, low: GRAPH[low] | {high}, high: GRAPH[high] | {low}}
    assert _cycle(graph) is not None

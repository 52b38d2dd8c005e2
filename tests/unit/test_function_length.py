"""No function in devloop is longer than 100 lines: a longer one mixes decisions with effects
(as Pipeline.run once did, at 158) and cannot be read, or tested, one concern at a time."""

from __future__ import annotations

import ast
from pathlib import Path

DEVLOOP = Path(__file__).resolve().parents[2] / "devloop"
MAX_LINES = 100


def _too_long(source: str, where: str) -> list[str]:
    return [f"{where}:{node.lineno} {node.name} ({node.end_lineno - node.lineno + 1} lines)"
            for node in ast.walk(ast.parse(source))
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
            and (node.end_lineno or node.lineno) - node.lineno + 1 > MAX_LINES]


def test_no_function_in_devloop_is_longer_than_100_lines() -> None:
    found = [line for path in sorted(DEVLOOP.rglob("*.py"))
             for line in _too_long(path.read_text(), str(path.relative_to(DEVLOOP.parent)))]
    assert not found, "split these functions:\n  " + "\n  ".join(found)


def test_the_check_sees_a_long_function() -> None:
    """Positive control: 101 lines are reported, 100 are not, methods included."""
    body = "".join("    x = 1\n" for _ in range(99))
    assert _too_long(f"def f():\n{body}", "m.py") == []
    method = "".join("    " + line for line in body.splitlines(True))
    long = f"class C:\n    def g(self):\n{method}        return x\n"
    assert _too_long(long, "m.py") == ["m.py:2 g (101 lines)"]

"""Label and field selectors: the query-string syntax and the `LabelSelector` object form."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from . import errors

Matcher = Callable[[dict[str, str]], bool]

_SET_RE = re.compile(r"^\s*(!?)\s*([A-Za-z0-9./_-]+)\s*(?:(notin|in)\s*\(([^)]*)\))?\s*$")
_EQ_RE = re.compile(r"^\s*([A-Za-z0-9./_-]+)\s*(==|!=|=)\s*([A-Za-z0-9._-]*)\s*$")


def _split_top_level(text: str) -> list[str]:
    """Splits on commas that are not inside `( ... )`."""
    parts, depth, current = [], 0, ""
    for char in text:
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        if char == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += char
    parts.append(current)
    return [p for p in parts if p.strip()]


def parse_label_selector(text: str | None) -> Matcher:
    """Parses `a=b,c!=d,e in (x,y),!f` into a predicate over a label map."""
    if not text:
        return lambda labels: True
    checks: list[Matcher] = []
    for part in _split_top_level(text):
        eq = _EQ_RE.match(part)
        if eq:
            key, op, value = eq.groups()
            if op == "!=":
                checks.append(lambda lb, k=key, v=value: lb.get(k) != v)
            else:
                checks.append(lambda lb, k=key, v=value: lb.get(k) == v)
            continue
        st = _SET_RE.match(part)
        if not st:
            raise errors.bad_request(f"unable to parse requirement: {part.strip()!r}")
        neg, key, op, values = st.groups()
        if op:
            if neg:
                raise errors.bad_request(f"unable to parse requirement: {part.strip()!r}")
            options = {v.strip() for v in values.split(",") if v.strip()}
            if op == "in":
                checks.append(lambda lb, k=key, o=options: lb.get(k) in o)
            else:
                checks.append(lambda lb, k=key, o=options: lb.get(k) not in o)
        elif neg:
            checks.append(lambda lb, k=key: k not in lb)
        else:
            checks.append(lambda lb, k=key: k in lb)
    return lambda labels: all(check(labels) for check in checks)


def label_selector_object(selector: dict[str, Any] | None) -> Matcher:
    """Predicate for a `LabelSelector` (matchLabels + matchExpressions); empty matches all."""
    selector = selector or {}
    wanted = dict(selector.get("matchLabels") or {})
    exprs = list(selector.get("matchExpressions") or [])

    def match(labels: dict[str, str]) -> bool:
        if any(labels.get(k) != v for k, v in wanted.items()):
            return False
        for expr in exprs:
            key, op, values = expr["key"], expr["operator"], set(expr.get("values") or [])
            if (
                (op == "In" and labels.get(key) not in values)
                or (op == "NotIn" and labels.get(key) in values)
                or (op == "Exists" and key not in labels)
                or (op == "DoesNotExist" and key in labels)
            ):
                return False
        return True

    return match


def _field(obj: dict[str, Any], path: str) -> str:
    value: Any = obj
    for part in path.split("."):
        if not isinstance(value, dict):
            return ""
        value = value.get(part)
    return "" if value is None else str(value)


def parse_field_selector(text: str | None) -> Callable[[dict[str, Any]], bool]:
    """Parses `metadata.name=x,status.phase!=Running` into a predicate over whole objects."""
    if not text:
        return lambda obj: True
    checks: list[Callable[[dict[str, Any]], bool]] = []
    for part in text.split(","):
        eq = re.match(r"^\s*([A-Za-z0-9.]+)\s*(==|!=|=)\s*(.*?)\s*$", part)
        if not eq:
            raise errors.bad_request(f"invalid field selector: {part!r}")
        path, op, value = eq.groups()
        if op == "!=":
            checks.append(lambda o, p=path, v=value: _field(o, p) != v)
        else:
            checks.append(lambda o, p=path, v=value: _field(o, p) == v)
    return lambda obj: all(check(obj) for check in checks)

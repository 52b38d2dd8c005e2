"""Label selectors as the query string the Kubernetes API takes (`label_selector=`).

One place for it: a Deployment's selector may carry matchExpressions as well as matchLabels, and
a query that drops them matches pods of other workloads (logs, health and status of the wrong
pods).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kubernetes import client as k8s

_OPERATORS = {"In": "{key} in ({values})", "NotIn": "{key} notin ({values})",
              "Exists": "{key}", "DoesNotExist": "!{key}"}


def selector_query(selector: k8s.V1LabelSelector | Mapping[str, Any] | None) -> str:
    """`a=b,tier in (x,y),!c` from a V1LabelSelector, an API-form dict (`matchLabels`,
    `matchExpressions`) or a plain label mapping; "" selects everything."""
    if selector is None:
        return ""
    if isinstance(selector, k8s.V1LabelSelector):
        labels = selector.match_labels or {}
        expressions = [(e.key, e.operator, e.values or []) for e in
                       selector.match_expressions or []]
    elif "matchLabels" in selector or "matchExpressions" in selector:
        labels = selector.get("matchLabels") or {}
        expressions = [(e["key"], e["operator"], e.get("values") or []) for e in
                       selector.get("matchExpressions") or []]
    else:
        labels, expressions = selector, []
    parts = [f"{k}={v}" for k, v in sorted(labels.items())]
    for key, operator, values in expressions:
        form = _OPERATORS.get(operator)
        if form is None:
            raise ValueError(f"unknown label selector operator {operator!r} for key {key!r}")
        parts.append(form.format(key=key, values=",".join(values)))
    return ",".join(parts)

"""The deploy formats (Helm, kustomize, plain YAML): rendering, the pure apply plan, and
server-side apply.

What other packages use is re-exported here; each module says why it exists.
"""

from devloop.manifests.apply import ApplyError
from devloop.manifests.plan import CREATE_ONLY, Plan, display, key_of, kind_name, order, plan
from devloop.manifests.render import (
    Rendered,
    RenderError,
    chart_values,
    env_values,
    find_helm,
    input_paths,
    render,
    render_chart,
)

__all__ = [
    "CREATE_ONLY",
    "ApplyError",
    "Plan",
    "RenderError",
    "Rendered",
    "chart_values",
    "display",
    "env_values",
    "find_helm",
    "input_paths",
    "key_of",
    "kind_name",
    "order",
    "plan",
    "render",
    "render_chart",
]

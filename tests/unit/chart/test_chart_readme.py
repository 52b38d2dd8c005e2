"""The chart README's values table documents every value with its real default."""

from __future__ import annotations

import re

import yaml

ROW = re.compile(r"^\| `(?P<path>[\w.]+)` \| `(?P<default>[^`]*)` \|", re.MULTILINE)


def leaves(values: dict, prefix: str = "") -> dict[str, object]:
    """Dotted path -> value for every non-mapping value, as users write them with --set."""
    out: dict[str, object] = {}
    for key, value in values.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(leaves(value, f"{path}."))
        else:
            out[path] = value
    return out


def as_written(value: object) -> str:
    if value == "":
        return '""'
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


def test_values_table_lists_every_value_with_its_default(helm) -> None:
    values = leaves(yaml.safe_load((helm.chart / "values.yaml").read_text()))
    readme = (helm.chart / "README.md").read_text()
    table = readme[readme.index("## Values") :]
    documented = {m["path"]: m["default"] for m in ROW.finditer(table)}
    assert documented == {path: as_written(value) for path, value in values.items()}

"""Lends the stand-in's context to the user's kubeconfig while `scripts/dev` runs, so that a
second terminal (`devloop status`, `kubectl get pods`) reaches it with nothing to export.

`add` copies the stand-in's cluster, user and context (all named `devloop-standin`) into the
user's kubeconfig (the first file of $KUBECONFIG, else ~/.kube/config, created when missing),
makes it the current context only when there was none, and writes a record of what it did;
`remove` takes out exactly that and restores the previous current context. Other contexts are
never touched. devloop itself knows nothing of this: it just reads the kubeconfig.

    python -m tests.kube_standin.user_kubeconfig add --from STANDIN_KUBECONFIG --record FILE
    python -m tests.kube_standin.user_kubeconfig remove --record FILE
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

import yaml

SECTIONS = (("clusters", "cluster"), ("users", "user"), ("contexts", "context"))


def default_target(environ: dict[str, str] | None = None) -> Path:
    """Where kubectl writes: the first file of $KUBECONFIG, else ~/.kube/config."""
    env = os.environ if environ is None else environ
    first = next((p for p in env.get("KUBECONFIG", "").split(os.pathsep) if p), "")
    return Path(first) if first else Path(env.get("HOME", str(Path.home()))) / ".kube" / "config"


def _load(path: Path) -> dict[str, Any]:
    if not path.exists():
        return {}
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ValueError(f"{path} is not valid YAML ({exc}): fix or move it, then retry") from exc
    if not isinstance(data, dict):
        raise ValueError(f"{path} is not a kubeconfig mapping: fix or move it, then retry")
    return data


def _save(path: Path, data: dict[str, Any]) -> None:
    """Atomic write, keeping the file's mode (0600 for a new file: it holds a token)."""
    mode = path.stat().st_mode & 0o777 if path.exists() else 0o600
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.devloop-tmp")
    tmp.write_text(yaml.safe_dump(data, sort_keys=False))
    tmp.chmod(mode)
    tmp.replace(path)


def _without(data: dict[str, Any], name: str) -> None:
    for section, _ in SECTIONS:
        entries = data.get(section)
        if isinstance(entries, list):
            data[section] = [e for e in entries if not (isinstance(e, dict)
                                                        and e.get("name") == name)]


def add(source: Path, target: Path, record: Path) -> str:
    """Adds the context of `source` to `target`; returns one line saying how to use it."""
    if record.exists():
        remove(record)  # left over from a run that was killed
    theirs = _load(source)
    name = theirs.get("current-context") or "devloop-standin"
    created = not target.exists()
    data = _load(target) or {"apiVersion": "v1", "kind": "Config", "preferences": {}}
    previous = data.get("current-context") or ""
    _without(data, name)  # a stale copy of ours (same name) from a killed run
    for section, _ in SECTIONS:
        data.setdefault(section, [])
        if not isinstance(data[section], list):
            raise ValueError(f"{target}: '{section}' is not a list: fix it, then retry")
        data[section] += [e for e in theirs.get(section) or [] if e.get("name") == name]
    made_current = not previous
    if made_current:
        data["current-context"] = name
    _save(target, data)
    record.parent.mkdir(parents=True, exist_ok=True)
    record.write_text(json.dumps({"target": str(target), "name": name, "created": created,
                                  "previous": previous, "made_current": made_current}))
    if made_current:
        return f"added kube context {name} to {target} (current context until scripts/dev stops)"
    return (f"added kube context {name} to {target}; your current context stays '{previous}': "
            f"in another terminal add --context {name} (`devloop status --context {name}`, "
            f"`kubectl --context {name} get pods -A`)")


def remove(record: Path) -> str:
    """Takes out what `add` put in (per `record`) and restores the previous current context."""
    if not record.exists():
        return "nothing to remove"
    info = json.loads(record.read_text())
    target, name = Path(info["target"]), info["name"]
    if target.exists():
        data = _load(target)
        _without(data, name)
        if data.get("current-context") == name:
            known = {c.get("name") for c in data.get("contexts") or [] if isinstance(c, dict)}
            data["current-context"] = info["previous"] if info["previous"] in known else ""
        empty = not any(data.get(section) for section, _ in SECTIONS)
        if info["created"] and empty:
            target.unlink()
        else:
            _save(target, data)
    record.unlink()
    return f"removed kube context {name} from {target}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.kube_standin.user_kubeconfig")
    parser.add_argument("action", choices=("add", "remove"))
    parser.add_argument("--from", dest="source", type=Path, help="the stand-in's kubeconfig")
    parser.add_argument("--record", type=Path, required=True)
    parser.add_argument("--target", type=Path, default=None)
    args = parser.parse_args(argv)
    try:
        if args.action == "add":
            if args.source is None:
                parser.error("add needs --from")
            print(add(args.source, args.target or default_target(), args.record))
        else:
            print(remove(args.record))
    except (OSError, ValueError) as exc:
        print(f"kubeconfig: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

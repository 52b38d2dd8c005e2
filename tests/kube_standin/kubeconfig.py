"""Writes the kubeconfig through which clients (kubernetes, kubectl, helm) reach the stand-in."""

from __future__ import annotations

import base64
from pathlib import Path

import yaml

CONTEXT = "devloop-standin"


def write_kubeconfig(
    path: Path, url: str, token: str, ca_cert: Path | None = None, namespace: str = "default"
) -> Path:
    """A kubeconfig with one cluster/user/context named `devloop-standin`, mode 0600."""
    cluster: dict[str, str] = {"server": url}
    if ca_cert is not None:
        cluster["certificate-authority-data"] = base64.b64encode(ca_cert.read_bytes()).decode()
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "preferences": {},
        "clusters": [{"name": CONTEXT, "cluster": cluster}],
        "users": [{"name": CONTEXT, "user": {"token": token}}],
        "contexts": [
            {"name": CONTEXT,
             "context": {"cluster": CONTEXT, "user": CONTEXT, "namespace": namespace}}
        ],
        "current-context": CONTEXT,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(yaml.safe_dump(config, sort_keys=False))
    tmp.chmod(0o600)
    tmp.replace(path)
    return path

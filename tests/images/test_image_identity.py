"""Image identity does not depend on the shell (issue 11 item 4).

scripts/dev used to export DEVLOOP_OFFLINE=true, which devloop.yaml fed into build args and so
into every digest: a plain `devloop sync` in another terminal then saw other digests, rebuilt
every service and flipped the cluster between two image sets. The Dockerfiles now install from
the host-downloaded folders whenever they are present, so no variable takes part.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

from devloop.config.loader import load_config
from devloop.inputs.digest import ServiceDigest

REPO = Path(__file__).resolve().parents[2]
EXPORT = re.compile(r"^\s*export\s+([A-Za-z_][A-Za-z0-9_]*)(?:=(\S*))?", re.MULTILINE)


def dev_script_environment(plain: dict[str, str]) -> dict[str, str]:
    """The environment `devloop watch` gets from scripts/dev: every variable it exports (with a
    stand-in value where the value is computed), plus the one it used to export."""
    env = dict(plain)
    for name, value in EXPORT.findall((REPO / "scripts" / "dev").read_text()):
        env[name] = value if value and "$" not in value else f"/from-scripts-dev/{name}"
    env["DEVLOOP_OFFLINE"] = "true"
    return env


def digests(env: dict[str, str]) -> dict[str, str]:
    config = load_config(REPO / "devloop.yaml", env=env)
    result = {}
    for name, service in config.services.items():
        digest = ServiceDigest(service)
        digest.scan()
        result[name] = digest.digest()
    return result


def test_scripts_dev_environment_gives_the_same_digests_as_a_plain_shell() -> None:
    plain = {"PATH": "/usr/bin:/bin", "HOME": "/root"}
    assert digests(dev_script_environment(plain)) == digests(plain)


def test_digests_do_see_what_the_image_is_built_from() -> None:
    """Positive control: the comparison above is not blind; a different build target (one of
    the inputs devloop.yaml gives) changes the digest."""
    config = load_config(REPO / "devloop.yaml", env={})
    service = config.services["backend"]
    as_configured = ServiceDigest(service)
    as_configured.scan()
    other = ServiceDigest(dataclasses.replace(service, target=None))
    other.scan()
    assert as_configured.digest() != other.digest()

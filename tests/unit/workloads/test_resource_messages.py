"""A `resources:` workload's messages name it where devloop.yaml configures it (resources.NAME),
not as a service; no cluster needed (a port-forward's bind error is worded before any request)."""

from __future__ import annotations

import errno
from pathlib import Path

from devloop import events as ev
from devloop.config.loader import load_config
from devloop.follow.forwards import ServiceForwards


def test_a_taken_port_of_a_resource_names_resources_key(tmp_path: Path) -> None:
    (tmp_path / "api").mkdir()
    (tmp_path / "api/Dockerfile").write_text("FROM scratch\n")
    (tmp_path / "devloop.yaml").write_text(
        "version: 1\nservices:\n  api:\n    context: api\n    image: api\n"
        "    port_forwards: [8000]\n"
        "resources:\n  db:\n    workload: statefulset/db\n    port_forwards: ['15432:5432']\n")
    config = load_config(tmp_path / "devloop.yaml")
    bus = ev.EventBus()
    for item, key in ((config.resources["db"], "resources.db"), (config.services["api"],
                                                                  "services.api")):
        forwards = ServiceForwards(None, item, bus)  # type: ignore[arg-type]  # no request made
        text = forwards._bind_error(forwards.listeners[0], OSError(errno.EACCES, "denied"))
        assert f"check {key}.port_forwards in devloop.yaml" in text, text
        assert "\n" not in text

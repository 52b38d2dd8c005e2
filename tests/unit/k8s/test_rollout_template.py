"""Which ReplicaSet holds a Deployment's new revision: the one made from its current template.
A Recreate rollout scales the old pods down before the new ReplicaSet exists, and the
Deployment says it observed the new generation meanwhile; the old ReplicaSet's failing pods
(here: an image that cannot be pulled) must not be taken for the new revision's."""

from __future__ import annotations

from devloop.deploy.rollout import current_template


def template(image: str, pod_hash: str | None = None) -> dict:
    labels = {"app": "box", **({"pod-template-hash": pod_hash} if pod_hash else {})}
    return {"metadata": {"labels": labels},
            "spec": {"containers": [{"name": "box", "image": image}]}}


def test_the_replica_set_of_the_current_template_is_the_new_revision() -> None:
    assert current_template(template("box:dl-2", "7d9f"), template("box:dl-2"))


def test_the_old_replica_set_is_not_while_the_new_one_is_not_made_yet() -> None:
    assert not current_template(template("box:none", "2kff"), template("box:dl-2"))
    # an annotation or a label of the template is part of it too
    changed = template("box:dl-2")
    changed["metadata"]["annotations"] = {"rev": "2"}
    assert not current_template(template("box:dl-2", "7d9f"), changed)

"""Field ownership decisions as plain functions of (live object, managedFields, request): what a
manager owns, what an apply conflicts with, merges and removes. No server: the same code the
stand-in runs for every write."""

from __future__ import annotations

import copy

import pytest

from tests.kube_standin.errors import ApiError
from tests.kube_standin.field_sets import FieldSets, describe, from_fields_v1, to_fields_v1
from tests.kube_standin.managed_fields import FieldManager, manager_from_user_agent
from tests.kube_standin.schema import Schemas

SCHEMAS = Schemas()
FM = FieldManager(SCHEMAS)
SETS = FieldSets(SCHEMAS)


def pod(**spec: object) -> dict:
    base = {"containers": [{"name": "app", "image": "a:1", "args": ["--x"],
                            "ports": [{"containerPort": 80}],
                            "env": [{"name": "A", "value": "1"}]}]}
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "p", "namespace": "ns", "labels": {"app": "p"},
                         "finalizers": ["example.com/keep"]},
            "spec": {**base, **spec}}


def owners(obj: dict) -> dict[tuple[str, str], set]:
    return {(e["manager"], e["operation"]): from_fields_v1(e["fieldsV1"])
            for e in obj["metadata"].get("managedFields") or []}


def test_field_sets_follow_the_schema_list_and_map_types():
    fields = SETS.of(pod(), None)
    container = ("f:spec", "f:containers", 'k:{"name":"app"}')
    assert container in fields  # an associative-list item is a member itself
    assert (*container, "f:ports", 'k:{"containerPort":80,"protocol":"TCP"}') in fields
    args = (*container, "f:args")
    assert args in fields  # an atomic list is one field, nothing below it
    assert not any(len(p) > len(args) and p[:len(args)] == args for p in fields)
    assert ("f:metadata", "f:finalizers", 'v:"example.com/keep"') in fields  # a set
    assert ("f:metadata", "f:labels") in fields and ("f:metadata", "f:labels", "f:app") in fields
    assert not any(p[:2] == ("f:metadata", "f:name") for p in fields)  # the server's own
    assert from_fields_v1(to_fields_v1(fields)) == fields
    assert describe((*container, "f:image")) == '.spec.containers[name="app"].image'


def test_an_update_takes_the_fields_it_changes_from_everyone():
    live = pod()
    FM.created(live, "kubectl-create", None)
    edited = copy.deepcopy(live)
    edited["spec"]["containers"][0]["image"] = "a:2"
    FM.updated(live, edited, "kubectl-edit", None)
    image = ("f:spec", "f:containers", 'k:{"name":"app"}', "f:image")
    assert image in owners(edited)[("kubectl-edit", "Update")]
    assert image not in owners(edited)[("kubectl-create", "Update")]
    assert ("f:spec", "f:containers", 'k:{"name":"app"}', "f:args") in \
        owners(edited)[("kubectl-create", "Update")]


def test_apply_conflicts_then_force_and_shared_ownership():
    live = pod()
    FM.created(live, "devloop", None, applied=pod())
    edited = copy.deepcopy(live)
    edited["spec"]["containers"][0]["args"] = ["--y"]
    FM.updated(live, edited, "kubectl-edit", None)
    with pytest.raises(ApiError) as caught:
        FM.apply(edited, pod(), "devloop", False, None)
    assert caught.value.code == 409
    assert caught.value.message == ('Apply failed with 1 conflict: conflict with "kubectl-edit" '
                                    'using v1: .spec.containers[name="app"].args')
    forced = FM.apply(edited, pod(), "devloop", True, None)
    assert forced["spec"]["containers"][0]["args"] == ["--x"]
    assert ("kubectl-edit", "Update") not in owners(forced)
    # A second applier agreeing on a value shares it; nothing conflicts.
    shared = FM.apply(forced, {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
                               "spec": {"containers": [{"name": "app", "image": "a:1"}]}},
                      "other", False, None)
    image = ("f:spec", "f:containers", 'k:{"name":"app"}', "f:image")
    assert image in owners(shared)[("other", "Apply")]
    assert image in owners(shared)[("devloop", "Apply")]


def test_two_conflicts_are_listed_by_manager():
    live = pod()
    FM.created(live, "devloop", None, applied=pod())
    edited = copy.deepcopy(live)
    edited["spec"]["containers"][0].update(image="b:1", args=["--z"])
    FM.updated(live, edited, "kubectl-edit", None)
    with pytest.raises(ApiError) as caught:
        FM.apply(edited, pod(), "devloop", False, None)
    assert caught.value.message == (
        'Apply failed with 2 conflicts: conflicts with "kubectl-edit" using v1:\n'
        '- .spec.containers[name="app"].args\n- .spec.containers[name="app"].image')
    assert [c["field"] for c in caught.value.details["causes"]] == [
        '.spec.containers[name="app"].args', '.spec.containers[name="app"].image']


def test_apply_removes_only_what_it_alone_owned():
    live = pod()
    FM.created(live, "devloop", None, applied=pod())
    labelled = copy.deepcopy(live)
    labelled["metadata"]["labels"]["team"] = "blue"
    labelled["spec"]["containers"][0]["env"].append({"name": "B", "value": "2"})
    FM.updated(live, labelled, "labeller", None)
    smaller = pod()
    del smaller["metadata"]["labels"]
    del smaller["metadata"]["finalizers"]
    smaller["spec"]["containers"][0]["env"] = []
    smaller["spec"]["containers"][0]["ports"] = []
    after = FM.apply(labelled, smaller, "devloop", False, None)
    assert after["metadata"]["labels"] == {"team": "blue"}  # the labeller's stays
    assert "finalizers" not in after["metadata"]
    container = after["spec"]["containers"][0]
    assert container["env"] == [{"name": "B", "value": "2"}]
    assert "ports" not in container  # emptied and nobody else owns it
    assert container["args"] == ["--x"]


def test_the_user_agent_names_updates_without_a_field_manager():
    assert manager_from_user_agent("kubectl/v1.35.0 (linux/amd64) kubernetes/abc") == "kubectl"
    assert manager_from_user_agent("OpenAPI-Generator/31.0.0/python") == "OpenAPI-Generator"
    assert manager_from_user_agent(None) == "unknown"

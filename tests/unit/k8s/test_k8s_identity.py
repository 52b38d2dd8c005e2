"""Pure rules behind "what is deployed" (issue 11, items 2 and 10): the `dl-` tag, the
annotation agreement, and the label-selector query. No cluster needed."""

from __future__ import annotations

import pytest
from kubernetes import client as k8s

from devloop.deploy.patch import Deployed
from devloop.inputs.digest import dl_tag_hex, image_tag
from devloop.k8s.selectors import selector_query

FULL = "0123456789abcdef" * 4
OTHER = "fedcba9876543210" * 4


def test_the_tag_is_read_back_from_any_ref_form() -> None:
    tag = image_tag("lumina-chatbot", FULL)
    assert dl_tag_hex(tag) == FULL[:12]
    assert dl_tag_hex(f"localhost:5000/{tag}") == FULL[:12]
    assert dl_tag_hex(f"{tag}@sha256:{'0' * 64}") == FULL[:12]
    for other in ("lumina-chatbot:latest", "localhost:5000/chatbot", "x:dl-short", None):
        assert dl_tag_hex(other) is None


def test_the_deployed_digest_is_the_recorded_one_only_when_the_image_agrees() -> None:
    ours = image_tag("chatbot", FULL)
    assert Deployed(ours, FULL, 3, FULL).digest == FULL
    # `kubectl set image` to another tag: the annotations no longer describe what runs
    assert Deployed(image_tag("chatbot", OTHER), FULL, 4, FULL).digest is None
    assert Deployed("chatbot:hotfix", FULL, 4, FULL).digest is None
    # `kubectl rollout undo`: the old template (and its annotation) came back
    assert Deployed(image_tag("chatbot", OTHER), FULL, 5, OTHER).digest == OTHER
    assert Deployed(ours, None, 1, None).digest is None  # never deployed by devloop


def test_selector_queries_keep_match_expressions_in_every_form() -> None:
    expected = "app=web,tier in (a,b),track notin (canary),release,!legacy"
    expressions = [("tier", "In", ["a", "b"]), ("track", "NotIn", ["canary"]),
                   ("release", "Exists", None), ("legacy", "DoesNotExist", None)]
    model = k8s.V1LabelSelector(match_labels={"app": "web"}, match_expressions=[
        k8s.V1LabelSelectorRequirement(key=k, operator=o, values=v) for k, o, v in expressions])
    api = {"matchLabels": {"app": "web"}, "matchExpressions": [
        {"key": k, "operator": o, **({"values": v} if v else {})} for k, o, v in expressions]}
    assert selector_query(model) == selector_query(api) == expected
    assert selector_query({"b": "2", "a": "1"}) == "a=1,b=2"
    assert selector_query(None) == ""
    with pytest.raises(ValueError, match="'Near'"):
        selector_query({"matchExpressions": [{"key": "x", "operator": "Near"}]})

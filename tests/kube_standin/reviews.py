"""Access and identity reviews (`kubectl auth can-i`, `kubectl auth whoami`): create-only kinds
that are answered, never stored.

The stand-in authorizes like an API server run with `--authorization-mode=AlwaysAllow`: its one
token may do everything, RBAC objects are stored but not enforced, so every access review says
allowed (with the empty reason that authorizer gives).
"""

from __future__ import annotations

import copy

from . import errors
from .resources import Resource
from .schema import Schemas
from .store import Obj

USER = {"username": "devloop-standin", "groups": ["system:masters", "system:authenticated"]}
ACCESS_REVIEWS = ("SelfSubjectAccessReview", "SubjectAccessReview", "LocalSubjectAccessReview")


def answer(res: Resource, namespace: str, body: object, schemas: Schemas) -> Obj:
    """The review with its status filled in, as the API server returns it (201 Created)."""
    if not isinstance(body, dict):
        raise errors.bad_request("the request body must be a JSON object")
    review: Obj = copy.deepcopy(body)
    review.setdefault("apiVersion", res.api_version)
    review.setdefault("kind", res.kind)
    if review["apiVersion"] != res.api_version or review["kind"] != res.kind:
        raise errors.bad_request(
            f"the object in the body ({review['apiVersion']}, {review['kind']}) is not a "
            f"{res.kind} of {res.api_version}")
    review.pop("status", None)
    causes = schemas.errors(review)
    if res.kind in ACCESS_REVIEWS:
        spec = review.get("spec") or {}
        if not spec.get("resourceAttributes") and not spec.get("nonResourceAttributes"):
            causes.append(("spec.resourceAttributes", "Required value: exactly one of "
                           "nonResourceAttributes or resourceAttributes must be specified"))
        attrs = spec.get("resourceAttributes") or {}
        if res.namespaced and attrs.get("namespace", namespace) != namespace:
            causes.append(("spec.resourceAttributes.namespace",
                           "Invalid value: must match metadata.namespace"))
    if causes:
        name = (review.get("metadata") or {}).get("name", "")
        raise errors.invalid(res.kind, res.group, name, causes)
    meta = review.setdefault("metadata", {})
    if res.namespaced:
        meta["namespace"] = namespace
    if res.kind in ACCESS_REVIEWS:
        review["status"] = {"allowed": True}
    elif res.kind == "SelfSubjectRulesReview":
        review["status"] = {
            "resourceRules": [{"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]}],
            "nonResourceRules": [{"verbs": ["*"], "nonResourceURLs": ["*"]}],
            "incomplete": False,
        }
    elif res.kind == "SelfSubjectReview":
        review["status"] = {"userInfo": copy.deepcopy(USER)}
    else:
        raise errors.method_not_allowed("create", res.plural)
    return review

"""Decodes the Kubernetes protobuf request bodies that client-go's typed clients send (helm stores
releases as Secrets that way). Only the kinds such clients write are known: Secret, ConfigMap,
Namespace, DeleteOptions and the reviews of `kubectl auth`; anything else is answered with 415
so the client knows to send JSON."""

from __future__ import annotations

import base64
import datetime as dt
from collections.abc import Iterator
from typing import Any

from . import errors

MAGIC = b"k8s\x00"

# field number -> (json name, type); types: str, bytes, int, bool, time, map_str, map_bytes,
# list_str, msg:<schema>, list_msg:<schema>
SCHEMAS: dict[str, dict[int, tuple[str, str]]] = {
    "Unknown": {1: ("typeMeta", "msg:TypeMeta"), 2: ("raw", "bytes"),
                3: ("contentEncoding", "str"), 4: ("contentType", "str")},
    "TypeMeta": {1: ("apiVersion", "str"), 2: ("kind", "str")},
    "ObjectMeta": {
        1: ("name", "str"), 2: ("generateName", "str"), 3: ("namespace", "str"),
        5: ("uid", "str"), 6: ("resourceVersion", "str"), 7: ("generation", "int"),
        8: ("creationTimestamp", "time"), 9: ("deletionTimestamp", "time"),
        10: ("deletionGracePeriodSeconds", "int"), 11: ("labels", "map_str"),
        12: ("annotations", "map_str"), 13: ("ownerReferences", "list_msg:OwnerReference"),
        14: ("finalizers", "list_str"),
    },
    "OwnerReference": {1: ("kind", "str"), 3: ("name", "str"), 4: ("uid", "str"),
                       5: ("apiVersion", "str"), 6: ("controller", "bool"),
                       7: ("blockOwnerDeletion", "bool")},
    "Secret": {1: ("metadata", "msg:ObjectMeta"), 2: ("data", "map_bytes"), 3: ("type", "str"),
               4: ("stringData", "map_str"), 5: ("immutable", "bool")},
    "ConfigMap": {1: ("metadata", "msg:ObjectMeta"), 2: ("data", "map_str"),
                  3: ("binaryData", "map_bytes"), 4: ("immutable", "bool")},
    "Namespace": {1: ("metadata", "msg:ObjectMeta"), 2: ("spec", "msg:NamespaceSpec")},
    "NamespaceSpec": {1: ("finalizers", "list_str")},
    "Time": {1: ("seconds", "int"), 2: ("nanos", "int")},
    "DeleteOptions": {1: ("gracePeriodSeconds", "int"), 2: ("preconditions", "msg:Preconditions"),
                      3: ("orphanDependents", "bool"), 4: ("propagationPolicy", "str"),
                      5: ("dryRun", "list_str")},
    "Preconditions": {1: ("uid", "str"), 2: ("resourceVersion", "str")},
    "MapEntry": {1: ("key", "str"), 2: ("value", "bytes")},
    # kubectl auth can-i / can-i --list / whoami
    "SelfSubjectAccessReview": {1: ("metadata", "msg:ObjectMeta"),
                                2: ("spec", "msg:SelfSubjectAccessReviewSpec")},
    "SelfSubjectAccessReviewSpec": {1: ("resourceAttributes", "msg:ResourceAttributes"),
                                    2: ("nonResourceAttributes", "msg:NonResourceAttributes")},
    "ResourceAttributes": {1: ("namespace", "str"), 2: ("verb", "str"), 3: ("group", "str"),
                           4: ("version", "str"), 5: ("resource", "str"),
                           6: ("subresource", "str"), 7: ("name", "str")},
    "NonResourceAttributes": {1: ("path", "str"), 2: ("verb", "str")},
    "SelfSubjectRulesReview": {1: ("metadata", "msg:ObjectMeta"),
                               2: ("spec", "msg:SelfSubjectRulesReviewSpec")},
    "SelfSubjectRulesReviewSpec": {1: ("namespace", "str")},
    "SelfSubjectReview": {1: ("metadata", "msg:ObjectMeta")},
}
# Top-level kinds a body may carry (the rest of SCHEMAS are nested messages).
KINDS = ("Secret", "ConfigMap", "Namespace", "DeleteOptions", "SelfSubjectAccessReview",
         "SelfSubjectRulesReview", "SelfSubjectReview")


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7


def _fields(buf: bytes) -> Iterator[tuple[int, Any]]:
    pos = 0
    while pos < len(buf):
        key, pos = _varint(buf, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(buf, pos)
        elif wire == 2:
            length, pos = _varint(buf, pos)
            value, pos = buf[pos:pos + length], pos + length
        elif wire == 1:
            value, pos = buf[pos:pos + 8], pos + 8
        elif wire == 5:
            value, pos = buf[pos:pos + 4], pos + 4
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")
        yield number, value


def _message(buf: bytes, schema: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    fields = SCHEMAS[schema]
    for number, value in _fields(buf):
        if number not in fields:
            continue
        name, kind = fields[number]
        if kind == "str":
            out[name] = value.decode()
        elif kind == "bytes":
            out[name] = value
        elif kind in ("int", "bool"):
            out[name] = bool(value) if kind == "bool" else value
        elif kind == "time":
            stamp = _message(value, "Time")
            out[name] = dt.datetime.fromtimestamp(stamp.get("seconds", 0), dt.UTC).strftime(
                "%Y-%m-%dT%H:%M:%SZ")
        elif kind in ("map_str", "map_bytes"):
            entry = _message(value, "MapEntry")
            raw = entry.get("value", b"")
            out.setdefault(name, {})[entry.get("key", "")] = (
                raw.decode() if kind == "map_str" else base64.b64encode(raw).decode())
        elif kind == "list_str":
            out.setdefault(name, []).append(value.decode())
        elif kind.startswith("msg:"):
            out[name] = _message(value, kind[4:])
        elif kind.startswith("list_msg:"):
            out.setdefault(name, []).append(_message(value, kind[9:]))
    return out


def decode(body: bytes) -> dict[str, Any]:
    """The JSON form of a `application/vnd.kubernetes.protobuf` body."""
    if not body.startswith(MAGIC):
        raise errors.bad_request("protobuf body without the k8s magic prefix")
    try:
        envelope = _message(body[len(MAGIC):], "Unknown")
        type_meta = envelope.get("typeMeta") or {}
        kind = type_meta.get("kind", "")
        if kind not in KINDS:
            raise errors.ApiError(
                415, "UnsupportedMediaType",
                f"the stand-in decodes protobuf only for {', '.join(KINDS)}, not "
                f"{kind or 'this object'}; send JSON")
        obj = _message(envelope.get("raw", b""), kind)
    except (IndexError, ValueError, UnicodeDecodeError) as exc:
        raise errors.bad_request(f"cannot decode the protobuf body: {exc}") from exc
    return {"apiVersion": type_meta.get("apiVersion", "v1"), "kind": kind, **obj}

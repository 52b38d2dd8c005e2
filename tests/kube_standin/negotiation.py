"""Accept-header negotiation as kube-apiserver does it (k8s.io/apiserver handlers/negotiation).

The log endpoint answers text/plain, yet it is negotiated against the API's serializers like any
object GET: an Accept that allows none of JSON, YAML or protobuf gets 406 NotAcceptable, so a
client asking for `text/plain` alone never sees a log line on a real cluster.
"""

from __future__ import annotations

from . import errors

# (type, subtype, has a stream serializer), in the API server's order.
SERIALIZERS = (
    ("application", "json", True),
    ("application", "yaml", False),
    ("application", "vnd.kubernetes.protobuf", True),
)
NOT_ACCEPTABLE = "only the following media types are accepted: " + ", ".join(
    f"{t}/{s}" for t, s, _ in SERIALIZERS)


def _clauses(header: str) -> list[tuple[str, str, dict[str, str]]]:
    """goautoneg.ParseAccept: (type, subtype, params) by falling q; `q` itself is dropped."""
    parsed: list[tuple[float, int, str, str, dict[str, str]]] = []
    for order, part in enumerate(header.split(",")):
        media, *raw_params = part.strip(" ").split(";")
        kind, _, sub = media.partition("/")
        kind, sub = kind.strip(" "), sub.strip(" ")
        if not sub:
            if kind != "*":
                continue
            sub = "*"
        elif "/" in sub:
            continue
        q, params = 1.0, {}
        for raw in raw_params:
            key, eq, value = raw.partition("=")
            if not eq or "=" in value:
                continue
            key = key.strip(" ")
            if key == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
            else:
                params[key] = value.strip(" ")
        parsed.append((q, order, kind, sub, params))
    # goautoneg sorts by q, then concrete before wildcard types; the sort is not stable there,
    # but for the accept/reject decision only "some clause matches" counts.
    parsed.sort(key=lambda c: (-c[0], c[2] == "*", c[3] == "*", c[1]))
    return [(kind, sub, params) for _, _, kind, sub, params in parsed]


def _allowed(params: dict[str, str], streams: bool) -> bool:
    """acceptMediaTypeOptions for the log endpoint: no conversion (as/g/v), `stream` only as
    `watch` on a type with a stream serializer; unknown parameters are ignored."""
    if any(key in params for key in ("as", "g", "v")):
        return False
    stream = params.get("stream", "")
    return not stream or (streams and stream == "watch")


def check_accept(header: str) -> None:
    """Raise 406 NotAcceptable (the real Status and message) unless `header` allows a
    serializer; an empty or missing Accept is allowed."""
    if not header:
        return
    for kind, sub, params in _clauses(header):
        for s_kind, s_sub, streams in SERIALIZERS:
            matches = (kind == "*" and sub == "*") or (kind == s_kind and sub in (s_sub, "*"))
            if matches and _allowed(params, streams):
                return
    raise errors.ApiError(406, "NotAcceptable", NOT_ACCEPTABLE)

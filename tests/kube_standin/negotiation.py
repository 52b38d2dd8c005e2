"""Accept-header negotiation of `GET pods/{name}/log` as kube-apiserver does it, in two layers
(checked against a kube-apiserver 1.36 built from source: same codes and messages):

1. go-restful's route match: some comma-separated entry of Accept, parameters cut off, must be
   exactly `*/*` or one of the route's Produces types (no `application/*`, no `*`, case
   matters); else 406 "406: Not Acceptable ... Available representations: ...".
2. k8s.io/apiserver handlers/negotiation: the log is negotiated against the API's serializers
   like any object GET, with wildcards and parameters; an Accept that allows none of JSON,
   YAML or protobuf gets 406 "only the following media types are accepted: ...".

So a client asking for `text/plain` alone never sees a log line on a real cluster.
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
LOG_PRODUCES = ("text/plain", *(f"{t}/{s}" for t, s, _ in SERIALIZERS))


def _route_accepts(header: str, produces: tuple[str, ...]) -> bool:
    """go-restful Route.matchesAccept (an empty Accept counts as */*)."""
    for part in (header or "*/*").split(","):
        media = part.split(";", 1)[0].strip(" ")
        if media == "*/*" or media in produces:
            return True
    return False


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


def check_log_accept(header: str) -> None:
    """Raise 406 NotAcceptable (the real Status and message of the layer that refuses) unless
    `header` passes both layers; an empty or missing Accept is allowed."""
    if not _route_accepts(header, LOG_PRODUCES):
        raise errors.ApiError(406, "NotAcceptable", "406: Not Acceptable\n\nAvailable"
                              f" representations: {', '.join(LOG_PRODUCES)}", details={})
    if not header:
        return
    for kind, sub, params in _clauses(header):
        for s_kind, s_sub, streams in SERIALIZERS:
            matches = (kind == "*" and sub == "*") or (kind == s_kind and sub in (s_sub, "*"))
            if matches and _allowed(params, streams):
                return
    raise errors.ApiError(406, "NotAcceptable", NOT_ACCEPTABLE)

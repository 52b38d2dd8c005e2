"""The frontend server's /api/* proxy: run-time backend URL, faithful relay, clear failures.

The upstream here is a recording stand-in, because these tests must see exactly which method,
path, headers and body reached the backend; the browser test uses the real backend.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Callable
from urllib.parse import parse_qs

from tests.ports import free_port
from tests.services.frontend.frontend_harness import (
    BUILD_TIME_API_URL,
    FrontendBuild,
    FrontendServer,
    RecordedRequest,
    StubUpstream,
)


def call(method: str, url: str, body: bytes | None = None,
         headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    """One HTTP call that returns error statuses instead of raising."""
    request = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, {k.lower(): v for k, v in response.headers.items()}, \
                response.read()
    except urllib.error.HTTPError as error:
        return error.code, {k.lower(): v for k, v in error.headers.items()}, error.read()


def test_backend_url_is_read_at_run_time_not_build_time(
    start_frontend: Callable[[str | None], FrontendServer],
    stub_upstream: Callable[[str], StubUpstream],
) -> None:
    first, second = stub_upstream("first"), stub_upstream("second")
    server_a = start_frontend(first.url)
    server_b = start_frontend(second.url)

    status_a, _, body_a = call("GET", f"{server_a.url}/api/health")
    status_b, _, body_b = call("GET", f"{server_b.url}/api/health")

    assert (status_a, json.loads(body_a)["backend"]) == (200, "first")
    assert (status_b, json.loads(body_b)["backend"]) == (200, "second")
    assert [r.path for r in first.requests] == ["/api/health"]
    assert [r.path for r in second.requests] == ["/api/health"]


def test_build_output_does_not_embed_the_build_time_backend_url(
    frontend_build: FrontendBuild,
) -> None:
    # The build ran with NEXT_PUBLIC_API_URL=BUILD_TIME_API_URL; no shipped file may contain it.
    offenders = [
        str(path.relative_to(frontend_build.standalone_dir))
        for path in frontend_build.standalone_dir.rglob("*")
        if path.is_file() and path.suffix in {".js", ".json", ".html", ".rsc", ".body"}
        and "node_modules" not in path.parts
        and BUILD_TIME_API_URL.encode() in path.read_bytes()
    ]
    assert offenders == []


def test_relays_method_path_query_auth_and_body_both_ways(
    start_frontend: Callable[[str | None], FrontendServer],
    stub_upstream: Callable[[str], StubUpstream],
) -> None:
    upstream = stub_upstream("backend")

    def reply(request: RecordedRequest) -> tuple[int, dict[str, str], bytes]:
        return 422, {"content-type": "application/problem+json"}, b'{"detail":"title: missing"}'

    upstream.respond = reply
    server = start_frontend(upstream.url + "/")  # a trailing slash must not double up

    status, headers, body = call(
        "PATCH", f"{server.url}/api/todos/7?expand=1&q=a%20b%2Bc",
        body=b'{"done": true}',
        headers={"Authorization": "Bearer tok-123", "Content-Type": "application/json",
                 "Cookie": "session=not-for-the-backend"},
    )

    assert status == 422
    assert headers["content-type"] == "application/problem+json"
    assert json.loads(body) == {"detail": "title: missing"}
    [seen] = upstream.requests
    path, _, query = seen.path.partition("?")
    assert (seen.method, path) == ("PATCH", "/api/todos/7")
    assert parse_qs(query) == {"expand": ["1"], "q": ["a b+c"]}
    assert seen.headers["authorization"] == "Bearer tok-123"
    assert seen.headers["content-type"] == "application/json"
    assert "cookie" not in seen.headers
    assert json.loads(seen.body) == {"done": True}


def test_every_method_reaches_the_backend(
    start_frontend: Callable[[str | None], FrontendServer],
    stub_upstream: Callable[[str], StubUpstream],
) -> None:
    upstream = stub_upstream("backend")
    server = start_frontend(upstream.url)

    for method in ("GET", "POST", "PUT", "PATCH", "DELETE"):
        status, _, body = call(method, f"{server.url}/api/todos/1", body=b"{}" if method in {
            "POST", "PUT", "PATCH"} else None, headers={"Content-Type": "application/json"})
        assert status == 200, (method, body)
        assert json.loads(body)["method"] == method

    assert [r.method for r in upstream.requests] == ["GET", "POST", "PUT", "PATCH", "DELETE"]


def test_no_content_answers_pass_through_empty(
    start_frontend: Callable[[str | None], FrontendServer],
    stub_upstream: Callable[[str], StubUpstream],
) -> None:
    upstream = stub_upstream("backend")
    upstream.respond = lambda request: (204, {}, b"")
    server = start_frontend(upstream.url)

    status, _, body = call("DELETE", f"{server.url}/api/todos/3",
                           headers={"Authorization": "Bearer t"})

    assert (status, body) == (204, b"")


def test_unreachable_backend_gives_502_json_naming_it(
    start_frontend: Callable[[str | None], FrontendServer],
) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    server = start_frontend(dead)

    status, headers, body = call("GET", f"{server.url}/api/todos")

    assert status == 502
    assert headers["content-type"].startswith("application/json")
    detail = json.loads(body)["detail"]
    assert dead in detail
    assert "ECONNREFUSED" in detail


def test_missing_backend_url_is_reported_not_guessed(
    start_frontend: Callable[[str | None], FrontendServer],
) -> None:
    server = start_frontend(None)

    status, _, body = call("GET", f"{server.url}/api/health")

    assert status == 500
    assert "NEXT_PUBLIC_API_URL is not set" in json.loads(body)["detail"]
    # The pages themselves still render, so probes on / keep passing.
    assert call("GET", f"{server.url}/")[0] == 200

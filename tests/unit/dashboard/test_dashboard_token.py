"""Reading the dashboard needs the per-run token (issue 17.5): another user of the machine can
connect to loopback, so neither the page (which carries the token) nor the logs are served
without it. A real server on loopback; requests as curl or a browser would send them."""

from __future__ import annotations

from tests.dashboard.server_harness import exchange, serving, status_of


def _get(dash, path: str, extra: str = "") -> bytes:
    return exchange(dash, f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{dash.port}\r\n{extra}"
                          "Connection: close\r\n\r\n".encode())


def test_without_the_token_nothing_is_readable():
    with serving() as (_bus, dash, _warnings):
        page = _get(dash, "/")
        assert status_of(page) == 401
        assert b"open the address\ndevloop printed" in page and dash.token.encode() not in page
        for path in ("/api/logs", "/api/status", "/api/services", "/api/events?cards=1",
                     "/?token=guessed"):
            assert status_of(_get(dash, path)) == 401, path
        # a cookie for another dashboard (another port) does not open this one
        other = f"Cookie: devloop-{dash.port + 1}={dash.token}\r\n"
        assert status_of(_get(dash, "/api/services", other)) == 401
        # positive control: the header opens the API
        assert status_of(_get(dash, "/api/services", f"X-Devloop-Token: {dash.token}\r\n")) == 200


def test_the_printed_address_sets_a_strict_cookie_that_opens_the_page():
    with serving() as (_bus, dash, _warnings):
        assert dash.open_url == f"{dash.url}/?token={dash.token}"
        login = _get(dash, f"/?token={dash.token}")
        assert status_of(login) == 303 and b"\r\nLocation: /\r\n" in login
        cookie = login.split(b"Set-Cookie: ", 1)[1].split(b"\r\n", 1)[0].decode()
        assert cookie == (f"devloop-{dash.port}={dash.token}; Path=/; HttpOnly; "
                          "SameSite=Strict")
        jar = f"Cookie: theme=dark; {cookie.split(';', 1)[0]}\r\n"
        page = _get(dash, "/", jar)
        assert status_of(page) == 200 and f'content="{dash.token}"'.encode() in page
        assert status_of(_get(dash, "/api/logs?limit=5", jar)) == 200
        # the cookie reads; acting still needs the header (a form post cannot set it)
        post = exchange(dash, f"POST /api/services/api/pause HTTP/1.1\r\nHost: 127.0.0.1:"
                              f"{dash.port}\r\n{jar}Content-Length: 0\r\nConnection: close"
                              "\r\n\r\n".encode())
        assert status_of(post) == 403

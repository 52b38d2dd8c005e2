"""The dashboard under misbehaving clients: a page that stops reading, too many pages, pages that
connect while events pour in. A real server and real sockets (no cluster needed: the events are
published on the bus as the pipeline would)."""

from __future__ import annotations

import http.client
import json
import socket
import threading
import time

from devloop import events as ev
from devloop.ui.dashboard.feed import Feed
from tests.dashboard.server_harness import (
    connect,
    exchange,
    get_json,
    head,
    serving,
    sse_messages,
    status_of,
    wait_for,
)

LINE = "x" * 900  # a long log line: the kernel's socket buffers fill after a few thousand


def _stalled(dash, cards: bool = True) -> socket.socket:
    """A client that asks for the event stream and then never reads a byte (a frozen tab)."""
    sock = connect(dash)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.sendall(f"GET /api/events{'?cards=1' if cards else ''} HTTP/1.1\r\n".encode()
                 + head(dash) + b"\r\n")
    wait_for(lambda: dash.streams_open >= 1, 30, "the stalled client's stream to open")
    return sock


def _read_until(page: socket.socket, marker: bytes, timeout: float = 30) -> bytes:
    """What the page read until `marker` arrived (keep-alives never let a recv time out)."""
    got, deadline = b"", time.monotonic() + timeout
    while marker not in got:
        assert time.monotonic() < deadline, f"{marker!r} never arrived; got {got[-300:]!r}"
        got += page.recv(65536)
    return got


def test_a_client_that_stops_reading_is_dropped_and_told_when_it_reconnects():
    feed = Feed(max_messages=500, max_bytes=256 * 1024, run="t1")
    with serving(feed=feed, socket_timeout=0.5) as (bus, dash, warnings):
        stalled = _stalled(dash)
        kept_max = [0, 0]
        published = 0

        def publish() -> None:
            nonlocal published
            for n in range(6000):
                bus.publish(ev.POD_LOG, "api", pod="api-1", container="api", line=f"{n} {LINE}")
                published += 1
                if n % 100 == 0:
                    kept = feed.kept()
                    kept_max[:] = [max(kept_max[0], kept[0]), max(kept_max[1], kept[1])]

        publisher = threading.Thread(target=publish)
        publisher.start()
        publisher.join(120)
        # publishers never wait for a page: every event went through while the page was stalled
        assert not publisher.is_alive() and published == 6000
        # what is kept for pages is bounded whatever the page does (no queue per event)
        assert kept_max[0] <= 500 and kept_max[1] <= 256 * 1024
        assert dash.state.line_count() == 1000  # the per-pod log buffer holds its bound too
        # the stalled page is dropped (its write timed out), freeing its stream
        wait_for(lambda: dash.streams_open == 0, 60, "the stalled client to be dropped")
        assert dash.streams_dropped >= 1

        # it reconnects, as EventSource does, with the last id it received: it is told
        got = b""
        while not (ids := [m["id"] for m in sse_messages(got) if "id" in m]):
            got += stalled.recv(65536)  # the first message: its (empty) snapshot
        stalled.close()
        with connect(dash) as again:
            again.sendall(b"GET /api/events?cards=1 HTTP/1.1\r\n" + head(dash)
                          + f"Last-Event-ID: {ids[-1]}\r\n\r\n".encode())
            first = b""
            while first.count(b"\n\n") < 3:
                first += again.recv(65536)
        kinds = [m.get("event", "message") for m in sse_messages(first)]
        assert kinds[:2] == ["dropped", "snapshot"], kinds
        # positive control: the server still answers, and a page that reads gets new events
        assert get_json(dash, "/api/services")[0] == 200
        assert not warnings


def test_a_reading_page_that_reconnects_in_time_is_not_told_anything():
    """The control for the test above: a page that kept up reconnects without `dropped`."""
    with serving(feed=Feed(run="t2"), keepalive_s=0.2) as (bus, dash, _warnings):
        with connect(dash) as page:
            page.sendall(b"GET /api/events HTTP/1.1\r\n" + head(dash) + b"\r\n")
            wait_for(lambda: dash.streams_open == 1, 30, "the stream to open")
            bus.publish(ev.POD_LOG, "api", pod="api-1", container="api", line="one")
            got = _read_until(page, b'"one"')
        last = [m["id"] for m in sse_messages(got) if "id" in m][-1]
        wait_for(lambda: dash.streams_open == 0, 30, "the first stream to close")
        with connect(dash) as page:
            page.sendall(b"GET /api/events HTTP/1.1\r\n" + head(dash)
                         + f"Last-Event-ID: {last}\r\n\r\n".encode())
            wait_for(lambda: dash.streams_open == 1, 30, "the second stream to open")
            bus.publish(ev.POD_LOG, "api", pod="api-1", container="api", line="two")
            got = _read_until(page, b'"two"')
        assert b"event: dropped" not in got


def test_streams_over_the_cap_get_a_503_saying_why_and_a_freed_slot_is_reused():
    with serving(max_streams=2, keepalive_s=0.2) as (_bus, dash, _warnings):
        pages = [connect(dash) for _ in range(2)]
        for page in pages:
            page.sendall(b"GET /api/events HTTP/1.1\r\n" + head(dash) + b"\r\n")
        wait_for(lambda: dash.streams_open == 2, 30, "two streams to open")
        refused = exchange(dash, b"GET /api/events HTTP/1.1\r\n" + head(dash) + b"\r\n")
        assert status_of(refused) == 503
        assert b"too many open dashboard streams (2); close another dashboard tab" in refused
        assert b"Retry-After: 5" in refused
        pages[0].close()
        wait_for(lambda: dash.streams_open == 1, 30, "the closed page's stream to end")
        with connect(dash) as page:  # positive control: the freed slot serves a new page
            page.sendall(b"GET /api/events HTTP/1.1\r\n" + head(dash) + b"\r\n")
            assert page.recv(65536).startswith(b"HTTP/1.1 200")
        pages[1].close()


def test_pages_connecting_during_a_firehose_see_every_line_once():
    """Snapshot + stream = every line exactly once, however the connect falls between events
    (the snapshot is taken at one feed position, then built outside the publishers' lock)."""
    with serving() as (bus, dash, _warnings):
        stop = threading.Event()
        sent: list[int] = []

        def publish() -> None:
            n = 0
            while not stop.is_set() or n < 300:
                bus.publish(ev.POD_LOG, "api", pod="api-1", container="api", line=f"n={n}")
                sent.append(n)
                n += 1
                if n % 50 == 0:
                    time.sleep(0.001)

        publisher = threading.Thread(target=publish)
        publisher.start()
        pages = []
        for _ in range(3):
            page = connect(dash)
            page.sendall(b"GET /api/events?cards=1 HTTP/1.1\r\n" + head(dash) + b"\r\n")
            pages.append(page)
            time.sleep(0.05)
        wait_for(lambda: dash.streams_open == 3, 30, "three streams to open")
        stop.set()
        publisher.join(60)
        last = sent[-1]
        bus.publish(ev.POD_LOG, "api", pod="api-1", container="api", line="end")
        import json

        for page in pages:
            got = b""
            while b'"line":"end"' not in got:
                got += page.recv(1 << 20)
            page.close()
            numbers: list[int] = []
            for message in sse_messages(got):
                doc = json.loads(message["data"])
                if message.get("event") == "snapshot":
                    numbers += [int(x["line"][2:]) for x in doc["logs"]]
                elif message.get("event") is None and doc["line"] != "end":
                    numbers.append(int(doc["line"][2:]))
            # from its first line on, nothing missed and nothing twice
            assert numbers == list(range(numbers[0], last + 1)), (numbers[:5], numbers[-5:])


def test_requests_on_one_keep_alive_connection_are_answered_at_once():
    """A page's requests share one connection. The answer's headers and body are two writes: with
    Nagle's algorithm on, each body waited for the client's delayed ACK, at least 40 ms (Linux's
    floor) per request, so 20 requests took over 0.8 s; answered at once they take a few ms even
    on a loaded machine."""
    with serving() as (_bus, dash, _warnings):
        conn = http.client.HTTPConnection("127.0.0.1", dash.port, timeout=10)
        headers = {"Host": f"127.0.0.1:{dash.port}", "X-Devloop-Token": dash.token}
        started = time.monotonic()
        for _ in range(20):
            conn.request("GET", "/api/services", headers=headers)
            response = conn.getresponse()
            assert response.status == 200
            assert [c["service"] for c in json.loads(response.read())["services"]] == ["api"]
        took = time.monotonic() - started
        conn.close()
    assert took < 0.6, f"20 keep-alive requests took {took:.2f} s"

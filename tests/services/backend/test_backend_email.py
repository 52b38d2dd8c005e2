"""The welcome email: sent over STARTTLS with the SMTP credentials, and never in the way."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.ports import free_port

if TYPE_CHECKING:  # conftest is loaded by pytest; importing it at run time could pick another
    from conftest import BackendLauncher, BackendProcess, SmtpCapture

SMTP_CREDENTIALS = {"SMTP_USER": "mailer@example.com", "SMTP_PASS": "app-pass"}


def _wait_for_event(backend: BackendProcess, event: str, timeout: float = 10) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for e in backend.log_events():
            if e["event"] == event:
                return e
        time.sleep(0.05)
    raise AssertionError(f"no {event!r} log line within {timeout} s:\n{backend.logs()}")


def test_welcome_email_is_sent_over_starttls(
    launcher: BackendLauncher, smtp_server: tuple[SmtpCapture, Path]
) -> None:
    capture, ca_file = smtp_server
    backend = launcher.start(
        env={
            **SMTP_CREDENTIALS,
            "SMTP_HOST": capture.host,
            "SMTP_PORT": str(capture.port),
            "SSL_CERT_FILE": str(ca_file),  # trust the test server's self-signed certificate
        }
    )
    api = backend.api()

    assert api.register("newbie@example.com", name="Newbie").status_code == 201

    event = _wait_for_event(backend, "welcome email sent")
    assert event["tls"] is True
    assert capture.logins == [("mailer@example.com", "app-pass")]
    [msg] = capture.messages
    assert msg["X-Envelope-To"] == "newbie@example.com"
    assert msg["Subject"] == "Welcome to Lumina Todo"
    assert "mailer@example.com" in msg["From"]
    assert "Hi Newbie," in msg.get_payload()
    assert "app-pass" not in backend.logs()


def test_registration_succeeds_when_smtp_refuses_connections(launcher: BackendLauncher) -> None:
    backend = launcher.start(
        env={**SMTP_CREDENTIALS, "SMTP_HOST": "127.0.0.1", "SMTP_PORT": str(free_port())}
    )
    api = backend.api()
    assert api.register("refused@example.com").status_code == 201
    event = _wait_for_event(backend, "welcome email failed")
    assert "ConnectionRefusedError" in event["error"]
    assert api.login("refused@example.com")  # the account works regardless


@pytest.fixture
def silent_smtp() -> Iterator[tuple[int, threading.Event, list[socket.socket]]]:
    """A TCP server that accepts connections and never says a word (a hung mail server)."""
    listener = socket.create_server(("127.0.0.1", 0))
    accepted: list[socket.socket] = []
    connected = threading.Event()

    def accept() -> None:
        try:
            conn, _ = listener.accept()
        except OSError:
            return
        accepted.append(conn)
        connected.set()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield listener.getsockname()[1], connected, accepted
    listener.close()
    for conn in accepted:
        conn.close()
    thread.join(timeout=5)


def test_registration_does_not_wait_for_a_hung_mail_server(
    launcher: BackendLauncher, silent_smtp: tuple[int, threading.Event, list[socket.socket]]
) -> None:
    port, connected, accepted = silent_smtp
    backend = launcher.start(
        env={**SMTP_CREDENTIALS, "SMTP_HOST": "127.0.0.1", "SMTP_PORT": str(port)}
    )
    api = backend.api()

    assert api.register("patient@example.com").status_code == 201
    # The response came back although the mail server has not even sent its greeting yet:
    assert connected.wait(10), "the backend never tried to send the welcome email"
    assert not any(e["event"].startswith("welcome email") for e in backend.log_events())
    assert api.login("patient@example.com")  # and the app keeps serving meanwhile

    accepted[0].close()  # the mail server hangs up: the attempt ends as a logged failure
    event = _wait_for_event(backend, "welcome email failed")
    assert event["to"] == "patient@example.com"



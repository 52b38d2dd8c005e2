"""The plain rules of registry delivery: whose credentials, which registry is insecure, what a
failure says, what a push stream adds up to, what status shows. Credential helpers are real
programs on PATH, as docker runs them."""

from __future__ import annotations

import json
import stat

import pytest

from devloop import events as ev
from devloop.commands.status import registry_identity
from devloop.deploy.registry import (
    Progress,
    RegistryError,
    RegistryUnreachable,
    credentials,
    explain,
    insecure,
    registry_host,
)
from devloop.ui.console import describe


def test_registry_host_is_read_as_docker_reads_it():
    assert registry_host("127.0.0.1:5000/team/app") == "127.0.0.1:5000"
    assert registry_host("127.0.0.1:5000") == "127.0.0.1:5000"  # a bare default_repo
    assert registry_host("ghcr.io/me/app") == "ghcr.io"
    assert registry_host("localhost/app") == "localhost"
    assert registry_host("me/app") == "docker.io"


def test_insecure_only_on_loopback_or_when_configured():
    assert insecure("127.0.0.1:5000") and insecure("localhost:5000") and insecure("[::1]:5000")
    assert not insecure("registry.example.com:5000")
    assert insecure("registry.example.com:5000", ["registry.example.com:5000"])
    assert not insecure("10.1.2.3:5000")


@pytest.mark.parametrize(("engine_says", "words", "retried"), [
    ("unauthorized: authentication required", "docker login reg.test:5000", False),
    ("denied: requested access to the resource is denied", "docker login reg.test:5000", False),
    ("received unexpected HTTP status: 413 Request Entity Too Large", "body size limit", False),
    ("blob upload unknown: write /var/lib/registry/x: no space left on device", "free space",
     False),
    ("Get https://reg.test:5000/v2/: x509: certificate signed by unknown authority",
     "/etc/docker/certs.d/reg.test:5000/ca.crt", False),
    ("Put http://reg.test:5000/v2/x/blobs/uploads/: dial tcp 10.0.0.1:5000: connect: "
     "connection refused", "start it or fix default_repo", True),
])
def test_every_push_failure_is_one_line_naming_the_registry_and_what_to_do(engine_says, words,
                                                                          retried):
    error = explain("reg.test:5000", engine_says + "\nsecond line")
    message = str(error)
    assert "\n" not in message and "reg.test:5000" in message and words in message
    # only a registry that did not answer is retried by `watch`; the rest need the user
    assert isinstance(error, RegistryUnreachable) is retried


def test_progress_counts_pushed_and_present_layers_and_the_digest():
    progress = Progress()
    stream = [{"status": "Preparing", "id": "a"}, {"status": "Preparing", "id": "b"},
              {"status": "Layer already exists", "id": "a"},
              {"status": "Pushing", "id": "b", "progressDetail": {"current": 512, "total": 900}},
              {"status": "Pushing", "id": "b", "progressDetail": {"current": 900, "total": 900}},
              {"status": "Pushed", "id": "b"},
              {"status": "Mounted from other/app", "id": "c"},
              {"aux": {"Tag": "dl-1", "Digest": "sha256:" + "ab" * 32, "Size": 527}}]
    assert all(progress.add(e) is None for e in stream)
    assert progress.pushed == {"b"} and progress.present == {"a", "c"}
    assert progress.sent["b"] == 900 and progress.digest == "sha256:" + "ab" * 32
    assert progress.add({"errorDetail": {"message": "boom"}, "error": "boom"}) == "boom"


def _helper(bin_dir, name: str, body: str) -> None:
    path = bin_dir / f"docker-credential-{name}"
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(path.stat().st_mode | stat.S_IEXEC)


def test_credentials_come_from_auths_and_credential_helpers_as_docker_does(tmp_path,
                                                                        monkeypatch):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    _helper(bin_dir, "fake", 'read url; printf \'{"ServerURL":"%s","Username":"helper-user",'
                             '"Secret":"helper-secret"}\' "$url"')
    _helper(bin_dir, "gone", "echo 'credentials not found in native keychain'; exit 1")
    _helper(bin_dir, "broken", "echo 'error getting credentials: dbus is not running'; exit 1")
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    config = tmp_path / "docker"
    config.mkdir()
    (config / "config.json").write_text(json.dumps({
        "auths": {"plain.test:5000": {"auth": "dXNlcjpwYXNz"}},  # user:pass
        "credHelpers": {"helped.test": "fake", "gone.test": "gone", "broken.test": "broken",
                        "missing.test": "not-installed"}}))
    plain = credentials("plain.test:5000", str(config))
    assert plain and plain["username"] == "user" and plain["password"] == "pass"
    helped = credentials("helped.test", str(config))
    assert helped and helped["Username"] == "helper-user"
    assert helped["Password"] == "helper-secret"
    assert credentials("anonymous.test", str(config)) is None
    assert credentials("gone.test", str(config)) is None  # the helper has none: anonymous
    for host in ("broken.test", "missing.test"):
        with pytest.raises(RegistryError) as failed:
            credentials(host, str(config))
        assert host in str(failed.value) and "\n" not in str(failed.value)
        assert "docker login" in str(failed.value)


def test_status_shows_the_registry_and_the_running_digest_of_a_pinned_image():
    pinned = "127.0.0.1:5000/lumina-backend:dl-0123456789ab@sha256:" + "cd" * 32
    assert registry_identity(pinned) == {"registry": "127.0.0.1:5000",
                                         "image_digest": "sha256:" + "cd" * 32}
    assert registry_identity("lumina-backend:dl-0123456789ab") == {"registry": None,
                                                                   "image_digest": None}


def test_the_console_says_what_a_push_sent():
    event = ev.Event(type=ev.DELIVER_FINISHED, service="backend", data={
        "method": "registry", "image": "127.0.0.1:5000/b:dl-0123456789ab@sha256:" + "ab" * 32,
        "seconds": 0.19, "registry": "127.0.0.1:5000", "digest": "sha256:" + "ab" * 32,
        "layers_pushed": 1, "layers_present": 8, "bytes_pushed": 62464})
    assert describe(event).endswith("(1 layers pushed, 0.1 MB; 8 already in 127.0.0.1:5000)")

"""Pushing to a real registry the way `docker push` does, with the user's credentials.

The Docker Engine does the push (it sends only the layers the registry lacks); devloop gives it
the credentials docker itself would use (config.json `auths`, `credHelpers`, `credsStore`, read
through docker-py's own resolver), reads the pushed manifest digest from the stream's
`aux.Digest` so the cluster runs exactly what was pushed, and turns every failure into one line
that names the registry and what to do. A quick `/v2/` probe first tells an unreachable registry
or an untrusted certificate apart in a second, instead of after the engine's retries.
"""

from __future__ import annotations

import ipaddress
import socket
import ssl
import threading
import time
import urllib.error
import urllib.request
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker
import docker.auth
import docker.errors

from devloop.text import one_line

DOCKER_HUB = "docker.io"
CERTS_D = Path("/etc/docker/certs.d")
# How long a registry may stay silent while the engine retries a layer: a restart blip is left to
# the engine (its own retries span ~50 s, in silence), a longer outage ends the push so that
# devloop says so and `watch` retries with its back-off.
OUTAGE_GRACE_S = 10.0


class RegistryError(Exception):
    """One line: the registry, what went wrong, what to do."""


class RegistryUnreachable(RegistryError):
    """Nothing answered at the registry (refused, reset, timed out): not the image's fault and
    usually brief, so `watch` retries the delivery by itself."""


class PushCancelled(RegistryError):
    """The stop event was set during the push."""


@dataclass(frozen=True)
class PushResult:
    """What one push did. `ref` is `repo:tag@sha256:...` (as Skaffold deploys): the runtime
    pulls by the digest the registry stored, so a node never runs a stale tag, and the `dl-`
    tag beside it keeps devloop's identity readable (patch.Deployed, status)."""

    ref: str
    digest: str
    layers_pushed: int
    layers_present: int
    bytes_pushed: int


def registry_host(repository: str) -> str:
    """The registry part of a repository (no tag), as docker reads it: docker.io when there is
    none. A bare `default_repo` such as `127.0.0.1:5000` is a host too."""
    first = repository.partition("/")[0]
    if "." in first or ":" in first or first == "localhost":
        return first
    return DOCKER_HUB


def is_loopback(host: str) -> bool:
    """127.0.0.0/8, ::1 or a name that resolves only to them (what Docker treats as insecure)."""
    if host.startswith("["):  # [::1]:5000
        name = host[1:host.find("]")]
    else:
        name = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(name, None)
    except OSError:
        return False
    return bool(infos) and all(ipaddress.ip_address(i[4][0]).is_loopback for i in infos)


def insecure(host: str, configured: Iterable[str] = ()) -> bool:
    """Plain HTTP / unverified TLS is allowed only on loopback or when devloop.yaml says so."""
    return host in set(configured) or is_loopback(host)


def credentials(host: str, config_dir: str | None = None) -> dict[str, Any] | None:
    """The credentials docker would send to `host`, or None (anonymous).

    `config_dir` defaults to $DOCKER_CONFIG or ~/.docker, as docker's. A credential helper that
    is missing or fails is an error, since pushing anonymously would only fail later with 401."""
    path = str(Path(config_dir) / "config.json") if config_dir else None
    try:
        with warnings.catch_warnings():  # docker-py warns of a missing helper; we say it below
            warnings.simplefilter("ignore")
            config = docker.auth.load_config(config_path=path)
            found = config.resolve_authconfig(host)
    except docker.errors.DockerException as exc:
        raise RegistryError(one_line(
            f"cannot read the Docker credentials for registry {host} ({exc}); fix"
            " ~/.docker/config.json or its credential helper, or run `docker login"
            f" {host}`")) from None
    except Exception as exc:  # docker.credentials.StoreError and friends
        raise RegistryError(one_line(
            f"the Docker credential helper for registry {host} failed ({exc}); check that"
            f" it is installed and on PATH, or run `docker login {host}`")) from None
    return dict(found) if found else None


def _ca_context(host: str) -> ssl.SSLContext:
    """System CAs plus the engine's per-registry CA (/etc/docker/certs.d/HOST/ca.crt)."""
    context = ssl.create_default_context()
    ca = CERTS_D / host / "ca.crt"
    if ca.is_file():
        context.load_verify_locations(cafile=str(ca))
    return context


def unreachable(host: str, detail: object) -> RegistryUnreachable:
    """The one line for a registry that does not answer."""
    return RegistryUnreachable(one_line(
        f"registry {host} is unreachable ({detail}); start it or fix default_repo in"
        " devloop.yaml; the running image stays (devloop watch retries by itself)"))


def probe(host: str, configured_insecure: Iterable[str] = (), timeout: float = 5.0) -> None:
    """Raise RegistryError when `host` cannot take a push at all: nothing listens, or its TLS
    certificate is not trusted (and it is not insecure). 401 is fine here: the push sends the
    credentials."""
    allow_plain = insecure(host, configured_insecure)
    context = _ca_context(host)
    if allow_plain:
        context = ssl._create_unverified_context()
    for scheme in ("https", "http") if allow_plain else ("https",):
        request = urllib.request.Request(f"{scheme}://{host}/v2/", method="GET")
        try:
            with urllib.request.urlopen(request, timeout=timeout,
                                        context=context if scheme == "https" else None):
                return
        except urllib.error.HTTPError:
            return  # it answered: 401 asks for the credentials the push brings
        except urllib.error.URLError as exc:
            reason = exc.reason
            if isinstance(reason, ssl.SSLCertVerificationError):
                raise RegistryError(one_line(
                    f"registry {host}: its TLS certificate is not trusted ({reason.verify_message})"
                    f"; put its CA in {CERTS_D / host / 'ca.crt'} (the Docker Engine reads it"
                    " too), or list it under insecure_registries in devloop.yaml")) from None
            if isinstance(reason, (ssl.SSLError, ConnectionResetError)) and scheme == "https":
                if allow_plain:
                    continue  # a plain-HTTP registry, allowed here
                raise RegistryError(one_line(
                    f"registry {host} does not speak TLS ({reason}); serve it over TLS or list"
                    " it under insecure_registries in devloop.yaml (and the engine's"
                    " insecure-registries)")) from None
            raise unreachable(host, reason) from None
        except (OSError, ValueError) as exc:
            raise unreachable(host, exc) from None


_UNREACHABLE_WORDS = ("connection refused", "no such host", "i/o timeout", " eof",
                      "connection reset", "dial tcp", "unreachable", "broken pipe")


def explain(host: str, message: str) -> RegistryError:
    """The engine's push error as one line naming the registry and what to do (a
    RegistryUnreachable when the registry did not answer)."""
    low = message.lower()
    if any(w in low for w in ("unauthorized", "authentication required", "denied",
                              "401", "403", "forbidden")):
        what = f"run `docker login {host}` (devloop uses docker's credentials)"
        return RegistryError(one_line(f"registry {host} refused the push: {message}; {what}"))
    if "413" in low or "entity too large" in low:
        return RegistryError(one_line(
            f"registry {host} refused a layer as too large: {message}; raise the body size"
            " limit of the registry or of the proxy in front of it"))
    if "no space left" in low or "disk quota" in low or "insufficient storage" in low:
        return RegistryError(one_line(
            f"registry {host} is out of disk space: {message}; free space there (or"
            " garbage-collect old dl- tags)"))
    if "x509" in low or "certificate" in low:
        return RegistryError(one_line(
            f"registry {host}: TLS certificate problem: {message}; put its CA in"
            f" {CERTS_D / host / 'ca.crt'}"))
    if any(w in low for w in _UNREACHABLE_WORDS):
        return unreachable(host, message)
    return RegistryError(one_line(f"push to registry {host} failed: {message}"))


class Progress:
    """Folds the push stream: per layer, pushed or already there, and bytes sent."""

    def __init__(self) -> None:
        self.sent: dict[str, int] = {}
        self.pushed: set[str] = set()
        self.present: set[str] = set()
        self.digest = ""

    def add(self, event: dict[str, Any]) -> str | None:
        """Record one stream event; return the error message it carries, if any."""
        error = (event.get("errorDetail") or {}).get("message") or event.get("error")
        if error:
            return str(error)
        aux = event.get("aux") or {}
        if aux.get("Digest"):
            self.digest = str(aux["Digest"])
        layer, status = str(event.get("id") or ""), str(event.get("status") or "")
        if status == "Pushing":
            current = int((event.get("progressDetail") or {}).get("current") or 0)
            self.sent[layer] = max(self.sent.get(layer, 0), current)
        elif status == "Pushed":
            self.pushed.add(layer)
        elif status == "Layer already exists" or status.startswith("Mounted from"):
            self.present.add(layer)
        return None


@dataclass
class Outage:
    """The registry's answers while the engine retries a layer, on a clock the caller reads: a
    blip shorter than `grace` is left to the engine; a longer silence ends the push."""

    grace: float = OUTAGE_GRACE_S
    down_since: float | None = None
    asked: float = float("-inf")

    def due(self, now: float) -> bool:
        """Time to ask the registry again (about once a second while the engine retries)."""
        return now - self.asked >= 1.0

    def answered(self, ok: bool, now: float) -> bool:
        """Record an answer (or none); True when the registry has been silent for `grace`."""
        self.asked = now
        if ok:
            self.down_since = None
            return False
        if self.down_since is None:
            self.down_since = now
        return now - self.down_since >= self.grace


def push(client: docker.DockerClient, repository: str, tag: str,
         auth: dict[str, Any] | None, stop: threading.Event | None = None,
         configured_insecure: Iterable[str] = ()) -> PushResult:
    """`docker push repository:tag`; the engine sends only missing layers.

    While the engine says it will retry a layer ("Retrying in 5 seconds", counted down), the
    registry is asked about once a second; when nothing has answered there for
    OUTAGE_GRACE_S, the push ends as RegistryUnreachable and `watch`'s back-off takes over."""
    host = registry_host(repository)
    progress = Progress()
    outage = Outage()
    try:
        stream = client.images.push(repository, tag=tag, auth_config=auth, stream=True,
                                    decode=True)
        for event in stream:
            if stop is not None and stop.is_set():
                raise PushCancelled(f"push of {repository}:{tag} cancelled")
            error = progress.add(event)
            if error:
                raise explain(host, error)
            now = time.monotonic()
            if str(event.get("status") or "").startswith("Retrying in") and outage.due(now):
                try:
                    probe(host, configured_insecure, timeout=2.0)
                    outage.answered(True, now)
                except RegistryUnreachable:
                    if outage.answered(False, now):
                        raise
    except docker.errors.APIError as exc:
        raise explain(host, str(exc.explanation or exc)) from None
    except docker.errors.DockerException as exc:
        raise RegistryError(one_line(f"push to registry {host}: the Docker Engine failed"
                                     f" ({exc})")) from None
    if not progress.digest.startswith("sha256:"):
        raise RegistryError(f"push of {repository}:{tag} to registry {host} reported no"
                            " digest; is the engine older than Docker 1.10?")
    return PushResult(f"{repository}:{tag}@{progress.digest}", progress.digest,
                      len(progress.pushed), len(progress.present),
                      sum(progress.sent[layer] for layer in progress.pushed
                          if layer in progress.sent))

"""Real processes for registry tests: the CNCF Distribution registry and a private Docker Engine.

Both are the programs users run (Debian's `docker-registry`, `dockerd`), started on 127.0.0.1 or a
Unix socket in a temporary directory and stopped by PID, so a test can take a registry away
mid-push and bring it back on the same port with the same storage.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from tests.ports import free_port

REPO = Path(__file__).resolve().parents[2]
CERTS_D = Path("/etc/docker/certs.d")


def make_tls(directory: Path) -> tuple[Path, Path, Path]:
    """A CA and a server certificate for 127.0.0.1 signed by it: (ca.crt, server.crt, key)."""
    directory.mkdir(parents=True, exist_ok=True)
    ca_key, ca_crt = directory / "ca.key", directory / "ca.crt"
    key, csr, crt = directory / "server.key", directory / "server.csr", directory / "server.crt"
    ext = directory / "san.ext"
    ext.write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True)

    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj",
            "/CN=devloop test CA", "-keyout", str(ca_key), "-out", str(ca_crt))
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1",
            "-keyout", str(key), "-out", str(csr))
    openssl("x509", "-req", "-in", str(csr), "-CA", str(ca_crt), "-CAkey", str(ca_key),
            "-CAcreateserial", "-days", "2", "-extfile", str(ext), "-out", str(crt))
    return ca_crt, crt, key


def htpasswd_file(path: Path, user: str, password: str) -> Path:
    """bcrypt entries, the only kind Distribution accepts (`htpasswd -B`, apache2-utils)."""
    subprocess.run(["htpasswd", "-B", "-b", "-c", str(path), user, password], check=True,
                   capture_output=True)
    return path


@dataclass
class Registry:
    """`docker-registry serve` on 127.0.0.1:port; plain HTTP unless `tls` is given."""

    directory: Path
    port: int = field(default_factory=free_port)
    tls: tuple[Path, Path] | None = None  # (certificate, key)
    htpasswd: Path | None = None
    proc: subprocess.Popen[bytes] | None = None

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://{self.host}"

    def config(self) -> Path:
        lines = ["version: 0.1", "log:", "  level: warn", "storage:", "  filesystem:",
                 f"    rootdirectory: {self.directory / 'storage'}", "  delete:",
                 "    enabled: true", "http:", f"  addr: {self.host}"]
        if self.tls:
            lines += ["  tls:", f"    certificate: {self.tls[0]}", f"    key: {self.tls[1]}"]
        if self.htpasswd:
            lines += ["auth:", "  htpasswd:", "    realm: devloop-test",
                      f"    path: {self.htpasswd}"]
        path = self.directory / "config.yml"
        path.write_text("\n".join(lines) + "\n")
        return path

    def start(self, timeout: float = 20.0) -> Registry:
        self.directory.mkdir(parents=True, exist_ok=True)
        log = open(self.directory / "registry.log", "ab")  # noqa: SIM115 - the child keeps it
        self.proc = subprocess.Popen(["docker-registry", "serve", str(self.config())],
                                     stdout=log, stderr=log, stdin=subprocess.DEVNULL)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"docker-registry exited ({self.proc.returncode}); see"
                                   f" {self.directory / 'registry.log'}")
            if self.answers():
                return self
            time.sleep(0.1)
        raise RuntimeError(f"docker-registry did not answer on {self.host} in {timeout:.0f}s")

    def answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                return True
        except OSError:
            return False

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.proc = None

    def kill(self) -> None:
        """The registry dies at once (SIGKILL): connections in flight are cut, as when its host
        goes away; start() brings it back on the same port with the same storage."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self.proc = None

    def uploading(self, repository: str) -> bool:
        """A blob upload into `repository` has begun and not finished (Distribution keeps
        each one under `_uploads/` until its last byte is committed)."""
        uploads = (self.directory / "storage/docker/registry/v2/repositories" / repository
                   / "_uploads")
        try:
            return any(uploads.iterdir())
        except OSError:
            return False

    def manifest_digest(self, repository: str, reference: str) -> str | None:
        """What the registry serves for repository:reference (plain HTTP registries only)."""
        request = urllib.request.Request(
            f"{self.url}/v2/{repository}/manifests/{reference}", method="HEAD",
            headers={"Accept": "application/vnd.docker.distribution.manifest.v2+json"})
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                return response.headers.get("Docker-Content-Digest")
        except urllib.error.HTTPError:
            return None


def trust_ca(host: str, ca: Path) -> Path:
    """Make the Docker Engines on this machine trust `ca` for `host` (per host:port, read on
    every connection: no restart). Returns the directory to remove afterwards."""
    target = CERTS_D / host
    target.mkdir(parents=True, exist_ok=True)
    shutil.copy(ca, target / "ca.crt")
    return target


@dataclass
class PrivateEngine:
    """A second dockerd with its own socket, data and exec roots (scripts/start-dockerd): the
    node of a cluster that does not share devloop's engine. It gets images only by pulling."""

    directory: Path
    pid: int | None = None

    @property
    def socket(self) -> Path:
        return self.directory / "docker.sock"

    @property
    def url(self) -> str:
        return f"unix://{self.socket}"

    def start(self) -> PrivateEngine:
        self.directory.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "DEVLOOP_DOCKER_SOCK": str(self.socket),
               "DEVLOOP_DOCKER_ROOT": str(self.directory / "root"),
               "DEVLOOP_DOCKER_LOG": str(self.directory / "dockerd.log")}
        done = subprocess.run([str(REPO / "scripts" / "start-dockerd")], env=env,
                              capture_output=True, text=True, timeout=60)
        if done.returncode != 0 or not done.stdout.strip():
            raise RuntimeError(f"the private dockerd did not start: {done.stderr.strip()}")
        self.pid = int(done.stdout.strip())
        return self

    def stop(self) -> None:
        if self.pid is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGTERM)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                os.kill(self.pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.2)
        else:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)
        self.pid = None

"""A self-signed certificate for 127.0.0.1, so kubectl and helm (which never send a bearer token
over plain HTTP) can talk to the stand-in. Made with the `openssl` CLI: no extra dependency.

openssl runs once per process: every stand-in started by it gets a copy of the same key pair
(they all serve 127.0.0.1, and a test suite starts dozens of them)."""

from __future__ import annotations

import shutil
import ssl
import subprocess
import tempfile
import threading
from pathlib import Path

_lock = threading.Lock()
_material: tuple[bytes, bytes] | None = None


def _make_material(openssl: str) -> tuple[bytes, bytes]:
    """(cert PEM, key PEM), made by openssl on the first call and kept for the process."""
    global _material
    with _lock:
        if _material is None:
            with tempfile.TemporaryDirectory(prefix="standin-tls-") as tmp:
                cert, key = Path(tmp) / "tls.crt", Path(tmp) / "tls.key"
                subprocess.run(
                    [openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt",
                     "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", str(key),
                     "-out", str(cert), "-days", "3650", "-subj", "/CN=devloop-standin",
                     "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"],
                    check=True, capture_output=True,
                )
                _material = cert.read_bytes(), key.read_bytes()
        return _material


def ensure_certificate(directory: Path) -> tuple[Path, Path] | None:
    """(cert, key) in `directory`, created once; None when openssl is not installed."""
    cert, key = directory / "tls.crt", directory / "tls.key"
    if cert.exists() and key.exists():
        return cert, key
    openssl = shutil.which("openssl")
    if openssl is None:
        return None
    cert_pem, key_pem = _make_material(openssl)
    key.touch(mode=0o600)
    key.write_bytes(key_pem)
    cert.write_bytes(cert_pem)
    return cert, key


def server_context(cert: Path, key: Path) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(str(cert), str(key))
    context.set_alpn_protocols(["http/1.1"])
    return context

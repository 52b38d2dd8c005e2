"""A self-signed certificate for 127.0.0.1, so kubectl and helm (which never send a bearer token
over plain HTTP) can talk to the stand-in. Made with the `openssl` CLI: no extra dependency."""

from __future__ import annotations

import shutil
import ssl
import subprocess
from pathlib import Path


def ensure_certificate(directory: Path) -> tuple[Path, Path] | None:
    """(cert, key) in `directory`, created once; None when openssl is not installed."""
    cert, key = directory / "tls.crt", directory / "tls.key"
    if cert.exists() and key.exists():
        return cert, key
    openssl = shutil.which("openssl")
    if openssl is None:
        return None
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "3650",
         "-subj", "/CN=devloop-standin",
         "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"],
        check=True, capture_output=True,
    )
    key.chmod(0o600)
    return cert, key


def server_context(cert: Path, key: Path) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(str(cert), str(key))
    context.set_alpn_protocols(["http/1.1"])
    return context

"""Timestamps and names in the formats the Kubernetes API uses."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import secrets
from typing import Any

# The alphabet Kubernetes uses for generated name suffixes and pod-template hashes (no vowels,
# no look-alike characters), so generated names look like the real ones.
SAFE_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def rfc3339(when: dt.datetime | None = None) -> str:
    """Second-precision UTC time, as `metav1.Time` serialises."""
    return (when or now()).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text: str) -> dt.datetime:
    """Parses RFC 3339 (with optional fraction, nanoseconds included) into an aware datetime."""
    text = text.strip()
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    if "." in text:
        head, rest = text.split(".", 1)
        digits = ""
        while rest and rest[0].isdigit():
            digits, rest = digits + rest[0], rest[1:]
        text = f"{head}.{(digits + '000000')[:6]}{rest}"
    return dt.datetime.fromisoformat(text).astimezone(dt.UTC)


def random_suffix(length: int = 5) -> str:
    return "".join(secrets.choice(SAFE_ALPHABET) for _ in range(length))


def template_hash(template: dict[str, Any]) -> str:
    """A stable short hash of a pod template (the `pod-template-hash` label)."""
    digest = hashlib.sha256(json.dumps(template, sort_keys=True).encode()).digest()
    value = int.from_bytes(digest[:8], "big")
    chars = []
    for _ in range(10):
        value, index = divmod(value, len(SAFE_ALPHABET))
        chars.append(SAFE_ALPHABET[index])
    return "".join(chars)

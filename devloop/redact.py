"""Keep secrets out of everything devloop prints or emits.

A secret is any value of an environment variable or values-file entry whose name says it is one
(…SECRET…, …TOKEN…, …PASS…, …API_KEY…); its text is replaced by `***` wherever it appears, in
devloop's own events, build output and pod log lines alike.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Mapping
from typing import Any

_SECRET_NAME = re.compile(r"(secret|token|passw|pass$|_pass|apikey|api_key|private_key|credential)",
                          re.IGNORECASE)
MASK = "***"
_MIN_LEN = 4  # shorter values would mask ordinary words


def looks_secret(name: str) -> bool:
    return bool(_SECRET_NAME.search(name))


class Redactor:
    """Replaces known secret values in strings and nested event data."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._secrets: set[str] = set()
        self._pattern: re.Pattern[str] | None = None
        self.add(secrets)

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Redactor:
        return cls(v for k, v in env.items() if looks_secret(k))

    def add(self, secrets: Iterable[str]) -> None:
        new = {s for s in secrets if s and len(s) >= _MIN_LEN}
        if new - self._secrets:
            self._secrets |= new
            alternatives = sorted(self._secrets, key=len, reverse=True)
            self._pattern = re.compile("|".join(re.escape(s) for s in alternatives))

    def add_from_values(self, values: Any, path: str = "") -> None:
        """Collect secrets from a Helm values tree: leaves under a `secrets` key or with a
        secret-looking name."""
        if isinstance(values, Mapping):
            for k, v in values.items():
                key = f"{path}.{k}" if path else str(k)
                if isinstance(v, str) and ("secrets." in key + "." or looks_secret(str(k))):
                    self.add([v])
                else:
                    self.add_from_values(v, key)

    def text(self, value: str) -> str:
        if self._pattern is None or not value:
            return value
        return self._pattern.sub(MASK, value)

    def value(self, value: Any) -> Any:
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, Mapping):
            return {k: self.value(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self.value(v) for v in value]
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            # an events.Event handed whole to a renderer (the console formats it itself)
            return dataclasses.replace(value, **{
                f.name: self.value(getattr(value, f.name)) for f in dataclasses.fields(value)
                if f.init})
        return value

    def __call__(self, _logger: Any, _method: str, event_dict: dict[str, Any]) -> dict[str, Any]:
        """structlog processor."""
        return {k: self.value(v) for k, v in event_dict.items()}

"""Keep secrets out of everything devloop prints or emits.

A secret is a value devloop was given as one: an environment variable or values entry whose name
says so (…SECRET…, …TOKEN, …PASSWORD, …PWD, …_KEY, …DSN, …PAT…), every value of a values file
whose name says so (k8s/secrets.yaml), and the data of the Secret objects devloop renders. Its
text, and its URL-encoded and base64 forms, are replaced by `***` wherever they appear, in
devloop's own events, build output, pod log lines and `status` alike; so is the password of any
`scheme://user:password@host` URL, known or not. Booleans and values shorter than
MIN_SECRET_LEN are never secrets: masking them would mask ordinary words ("false") everywhere.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import re
import threading
import urllib.parse
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

MASK = "***"
MIN_SECRET_LEN = 6
_NOT_SECRET = {"true", "false", "yes", "no", "on", "off", "0", "1", "null", "none"}

# Name words that mark a secret (after camelCase -> WORDS): exact words, then word endings.
_SECRET_WORDS = {"PASS", "PWD", "PASSPHRASE", "DSN", "PAT", "CREDENTIALS", "CREDENTIAL"}
_SECRET_ENDINGS = ("SECRET", "SECRETS", "TOKEN", "TOKENS", "PASSWORD", "PASSWD", "APIKEY")
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")
_URL_PASSWORD = re.compile(r"\b([a-zA-Z][a-zA-Z0-9+.-]*://[^\s/:@]*:)([^\s/@]+)(@)")


def looks_secret(name: str) -> bool:
    """Whether a variable or values key named `name` holds a secret (OPENAI_KEY, jwtSecretKey,
    MYSQL_PWD, SENTRY_DSN, GITHUB_PAT; not TOKENIZERS_PARALLELISM, not KEYBOARD)."""
    words = [w for w in re.split(r"[^A-Za-z0-9]+", _CAMEL.sub("_", name).upper()) if w]
    if not words:
        return False
    if words[-1] in ("KEY", "PWD") and len(words) > 1:  # API_KEY, MYSQL_PWD; not a bare KEY,
        return True  # and not PWD: every shell sets it to the working directory
    if words == ["PWD"]:
        return False
    return any(w in _SECRET_WORDS or w.endswith(_SECRET_ENDINGS) for w in words)


def can_be_secret(value: str) -> bool:
    """Long enough and not a boolean: anything else would mask ordinary words."""
    return len(value) >= MIN_SECRET_LEN and value.strip().lower() not in _NOT_SECRET


def url_passwords(text: str) -> list[str]:
    """The passwords of the `scheme://user:password@host` URLs in `text`."""
    if "://" not in text:
        return []
    return [urllib.parse.unquote(m.group(2)) for m in _URL_PASSWORD.finditer(text)]


def _forms(secret: str) -> set[str]:
    """The secret, and how it shows up when encoded: URL-encoded (a query string, a URL's
    password) and base64 (a Secret's data, a Basic auth header)."""
    forms = {secret, urllib.parse.quote(secret, safe=""), urllib.parse.quote_plus(secret)}
    encoded = base64.b64encode(secret.encode()).decode()
    forms.add(encoded)
    forms.add(encoded.rstrip("="))
    return {f for f in forms if len(f) >= MIN_SECRET_LEN}


class Redactor:
    """Replaces known secret values (and URL passwords) in strings and nested event data.

    Sources are added through small explicit calls, so whatever renders manifests can feed it:
    `add` (literal values), `add_env`, `add_values` (a Helm values tree), `add_values_file`,
    `add_secret_objects` (rendered Secret manifests)."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._secrets: set[str] = set()
        self._pattern: re.Pattern[str] | None = None  # replaced whole: readers take no lock
        self._adding = threading.Lock()  # sources arrive from worker threads (a render)
        self.add(secrets)

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Redactor:
        redactor = cls()
        redactor.add_env(env)
        return redactor

    def add(self, secrets: Iterable[str]) -> None:
        """Literal secret values (too short and boolean values are ignored)."""
        new: set[str] = set()
        for secret in secrets:
            if isinstance(secret, str) and can_be_secret(secret):
                new |= _forms(secret)
        with self._adding:
            if new - self._secrets:
                self._secrets |= new
                alternatives = sorted(self._secrets, key=len, reverse=True)
                self._pattern = re.compile("|".join(re.escape(s) for s in alternatives))

    def add_env(self, env: Mapping[str, str]) -> None:
        """Variables with a secret-looking name, and the password of any URL in any value
        (DATABASE_URL=postgres://app:password@db/app)."""
        self.add(v for k, v in env.items() if looks_secret(k))
        self.add(p for v in env.values() for p in url_passwords(v))

    def add_values(self, values: Any, everything: bool = False, path: str = "") -> None:
        """Collect secrets from a Helm values tree (or a `chart.set` mapping of dotted keys):
        leaves under a `secrets` key or with a secret-looking name; with `everything`, every
        string leaf (a values file that holds only secrets). URL passwords always."""
        if isinstance(values, Mapping):
            for k, v in values.items():
                key = f"{path}.{k}" if path else str(k)
                secret = (everything or "secrets." in key + "."
                          or looks_secret(str(k).split(".")[-1]))
                if isinstance(v, str | int | float) and not isinstance(v, bool) and secret:
                    self.add([str(v)])
                self.add_values(v, everything, key)
        elif isinstance(values, list):
            for item in values:
                self.add_values(item, everything, path)
        elif isinstance(values, str):
            if everything:
                self.add([values])
            self.add(url_passwords(values))

    add_from_values = add_values  # the name cli.py has used

    def add_values_file(self, path: Path) -> None:
        """A Helm values file: every value when its name says it holds secrets
        (k8s/secrets.yaml), else the secret-looking entries. Unreadable or invalid YAML adds
        nothing here (helm reports it, naming the file)."""
        try:
            values = yaml.safe_load(Path(path).read_text(encoding="utf-8", errors="replace"))
        except (OSError, yaml.YAMLError):
            return
        self.add_values(values, everything=looks_secret(Path(path).stem))

    def add_chart(self, chart: Any) -> None:
        """A chart's values (devloop.yaml `chart:`, None: nothing): its values files and
        `chart.set`. Called at start and again when devloop.yaml is read again."""
        if chart is None:
            return
        for path in chart.values_files:
            self.add_values_file(path)
        self.add_values(chart.set_values)

    def add_secret_objects(self, objects: Iterable[Mapping[str, Any]]) -> None:
        """Every value of the Secret manifests among `objects` (`data` is base64-decoded;
        `stringData` as is)."""
        for obj in objects:
            if obj.get("kind") != "Secret":
                continue
            for value in (obj.get("stringData") or {}).values():
                self.add([str(value)])
            for value in (obj.get("data") or {}).values():
                try:
                    decoded = base64.b64decode(str(value), validate=True).decode("utf-8")
                except (binascii.Error, ValueError):
                    continue  # not text: it cannot show up in a log line as such
                self.add([decoded])
                self.add(url_passwords(decoded))

    def text(self, value: str) -> str:
        if not value:
            return value
        if self._pattern is not None:
            value = self._pattern.sub(MASK, value)
        if "://" in value:
            value = _URL_PASSWORD.sub(lambda m: m.group(1) + MASK + m.group(3), value)
        return value

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

"""What the redactor treats as a secret and how it masks it (issue 17, part 6). The outputs
themselves (console, JSON, dashboard, status) are tested in tests/faults/test_secrets_outputs.py."""

from __future__ import annotations

import base64
import urllib.parse

import pytest

from devloop.redact import Redactor, looks_secret

ENV = {
    "OPENAI_KEY": "sk-openai-0123456789",
    "SENTRY_DSN": "https://4f2a9c8e1b@o12345.ingest.sentry.io/678",
    "GITHUB_PAT": "ghp_abcdefghijklmnop",
    "JWT_SIGNING_KEY": "jwt-signing-material",
    "MYSQL_PWD": "mysql-root-pw",
    "DATABASE_URL": "postgres://app:db-pa55word@db:5432/app",
    "TOKENIZERS_PARALLELISM": "false",
    "DEBUG_TOKEN": "on",
    "SHORT_SECRET": "abc12",
    "HOME": "/root",
}


@pytest.mark.parametrize("name", ["OPENAI_KEY", "SENTRY_DSN", "GITHUB_PAT", "JWT_SIGNING_KEY",
                                  "MYSQL_PWD", "jwtSecretKey", "openrouterApiKey", "smtpPass",
                                  "DB_PASSWORD", "AWS_SECRET_ACCESS_KEY", "SLACK_BOT_TOKEN"])
def test_secret_names(name):
    assert looks_secret(name)


@pytest.mark.parametrize("name", ["TOKENIZERS_PARALLELISM", "KEYBOARD", "HOME", "smtpUser",
                                  "MONKEY", "BYPASS_CACHE", "KEY", "DATABASE_URL", "PWD",
                                  "OLDPWD"])
def test_names_that_are_not_secrets(name):
    assert not looks_secret(name)


def test_every_named_secret_is_masked_and_ordinary_words_are_not():
    redactor = Redactor.from_env(ENV)
    line = " ".join(f"{k}={v}" for k, v in ENV.items())
    out = redactor.text(line)
    for name in ("OPENAI_KEY", "SENTRY_DSN", "GITHUB_PAT", "JWT_SIGNING_KEY", "MYSQL_PWD"):
        assert ENV[name] not in out and f"{name}=***" in out, out
    assert "db-pa55word" not in out and "postgres://app:***@db:5432/app" in out
    # booleans and short values are never secrets: "false" stays readable everywhere
    assert "TOKENIZERS_PARALLELISM=false" in out and "DEBUG_TOKEN=on" in out
    assert redactor.text("reload=false cache on") == "reload=false cache on"
    assert "SHORT_SECRET=abc12" in out and "HOME=/root" in out


def test_the_working_directory_of_the_shell_is_not_a_secret():
    """Every shell exports PWD: devloop printed its own config path as ***/devloop.yaml."""
    redactor = Redactor.from_env({"PWD": "/home/ann/proj", "OLDPWD": "/home/ann/other",
                                  "MYSQL_PWD": "mysql-root-pw"})
    out = redactor.text("config loaded: /home/ann/proj/devloop.yaml from /home/ann/other;"
                        " mysql-root-pw")
    assert out == "config loaded: /home/ann/proj/devloop.yaml from /home/ann/other; ***"


def test_a_password_in_any_url_is_masked_even_when_unknown():
    redactor = Redactor()
    assert redactor.text("connecting to redis://:hunter2hunter@cache:6379/0 ok") == \
        "connecting to redis://:***@cache:6379/0 ok"
    assert redactor.text("GET http://localhost:8000/api/todos?x=1 200") == \
        "GET http://localhost:8000/api/todos?x=1 200"


def test_encoded_forms_of_a_secret_are_masked():
    secret = "p@ss word/with+chars"
    redactor = Redactor([secret])
    quoted = urllib.parse.quote(secret, safe="")
    plus = urllib.parse.quote_plus(secret)
    b64 = base64.b64encode(secret.encode()).decode()
    out = redactor.text(f"url ?k={quoted} form k={plus} basic {b64}")
    assert out == "url ?k=*** form k=*** basic ***"


def test_values_trees_files_and_secret_objects_are_sources(tmp_path):
    redactor = Redactor()
    redactor.add_values({"backend": {"secrets": {"jwtSecretKey": "from-values-tree"},
                                     "replicas": "1", "image": "lumina-backend"},
                         "frontend.apiToken": "dotted-set-token"})
    secrets_file = tmp_path / "secrets.yaml"
    secrets_file.write_text("backend:\n  smtp:\n    relayHost: smtp-relay-9f3k.example\n")
    redactor.add_values_file(secrets_file)  # its name says secrets: every value
    plain_file = tmp_path / "values-dev.yaml"
    plain_file.write_text("backend:\n  logLevel: verbose\n  dbPassword: from-plain-file\n")
    redactor.add_values_file(plain_file)  # only the secret-looking entries
    redactor.add_secret_objects([
        {"kind": "Secret", "data": {"K": base64.b64encode(b"from-secret-data").decode()},
         "stringData": {"S": "from-string-data"}},
        {"kind": "ConfigMap", "data": {"MODE": "production"}},
    ])
    text = ("from-values-tree dotted-set-token smtp-relay-9f3k.example from-plain-file"
            " from-secret-data from-string-data | lumina-backend verbose production 1")
    assert redactor.text(text) == "*** *** *** *** *** *** | lumina-backend verbose production 1"

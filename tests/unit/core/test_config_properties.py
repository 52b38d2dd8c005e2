"""Property tests (Hypothesis) of the devloop.yaml loader: whatever the file holds (any bytes,
any text, any value under any key of the schema), the answer is a valid Config or a ConfigError
whose every problem starts with `devloop.yaml:LINE:`, never another exception."""

from __future__ import annotations

import re
from pathlib import Path

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from devloop.config import loader as cfg
from devloop.config.loader import Config, ConfigError, load_config

_SETTINGS = settings(max_examples=150, deadline=None,
                     suppress_health_check=[HealthCheck.function_scoped_fixture,
                                            HealthCheck.too_slow])
_WHERE = re.compile(r"^(.*/)?devloop\.yaml:\d+: \S")


def _project(root: Path) -> Path:
    (root / "svc").mkdir(exist_ok=True)
    (root / "svc/Dockerfile").write_text("FROM scratch\nCOPY app /app\n")
    (root / "chart").mkdir(exist_ok=True)
    (root / "chart/Chart.yaml").write_text("apiVersion: v2\nname: demo\nversion: 0.1.0\n")
    return root / "devloop.yaml"


def _check(path: Path, data: bytes) -> None:
    path.write_bytes(data)
    try:
        result = load_config(path)
    except ConfigError as exc:
        assert exc.problems, "a ConfigError lists at least one problem"
        for problem in exc.problems:
            text = str(problem)
            assert _WHERE.match(text), text
            assert "\n" not in text, text
        return
    assert isinstance(result, Config)


# --- arbitrary bytes and text --------------------------------------------------------------------

_ENCODINGS = st.sampled_from(["utf-8", "utf-8-sig", "utf-16", "utf-32", "latin-1", "cp1252"])


@_SETTINGS
@given(data=st.binary(max_size=300))
def test_any_bytes_give_a_config_or_a_located_error(tmp_path, data):
    _check(_project(tmp_path), data)


@_SETTINGS
@given(text=st.text(max_size=300), encoding=_ENCODINGS)
def test_any_text_in_any_encoding_gives_a_config_or_a_located_error(tmp_path, text, encoding):
    _check(_project(tmp_path), text.encode(encoding, errors="replace"))


# --- structured: the schema's keys, arbitrary values ---------------------------------------------

_SCALARS = (st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True)
            | st.text(max_size=20) | st.sampled_from(
                ["8000:²", "0", "65536", "1:2:3", "../..", "/abs", "a\x00b", "x" * 5000,
                 "${UNSET}", "${HOME:-x}", "[", "(?P<", "a{99999999999}", "**", "!x",
                 "0.0.0.0", "::1", "localhost", "svc", "Dockerfile", "k8s", "chart"]))
_VALUES = st.recursive(_SCALARS, lambda inner: st.lists(inner, max_size=3)
                       | st.dictionaries(st.text(max_size=8) | st.sampled_from(
                           ["src", "dest", "cmd", "trigger", "port", "address", "include",
                            "exclude", "sync", "run", "fall_back_on"]), inner, max_size=3),
                       max_leaves=8)


def _service(values: st.DrawFn) -> dict:
    keys = sorted(cfg._SERVICE_KEYS)
    svc = {"context": "svc", "image": "demo"}
    for key in values(st.lists(st.sampled_from(keys), max_size=4, unique=True)):
        svc[key] = values(_VALUES)
    return svc


@st.composite
def _documents(draw: st.DrawFn) -> dict:
    doc: dict = {"version": 1, "services": {draw(st.sampled_from(["svc", "Bad_Name", "a"])):
                                            _service(draw)}}
    for key in draw(st.lists(st.sampled_from(sorted(cfg._TOP_KEYS)), max_size=4, unique=True)):
        doc[key] = draw(_VALUES)
    return doc


@_SETTINGS
@given(doc=_documents())
def test_the_schemas_keys_with_any_values_give_a_config_or_a_located_error(tmp_path, doc):
    _check(_project(tmp_path), yaml.safe_dump(doc, allow_unicode=True).encode())


@_SETTINGS
@given(tag=st.sampled_from(["!!int", "!!float", "!!timestamp", "!!binary", "!!python/name:os",
                            "!custom", "!!set", "!!omap", "!!bool", "!!null"]),
       value=_SCALARS.filter(lambda v: isinstance(v, str)),
       key=st.sampled_from(["quiet_period_ms", "namespace", "rollout_timeout_s", "context",
                            "kubeconfig", "delivery"]))
def test_tagged_values_give_a_config_or_a_located_error(tmp_path, tag, value, key):
    dumped = yaml.safe_dump(value, allow_unicode=True).split("\n...")[0].strip()
    text = (f"version: 1\n{key}: {tag} {dumped}\n"
            "services:\n  svc:\n    context: svc\n    image: demo\n")
    _check(_project(tmp_path), text.encode())


def _refusal(path: Path) -> str:
    """The ConfigError's text for the config at `path` (which must be refused)."""
    try:
        load_config(path)
    except ConfigError as exc:
        return str(exc)
    raise AssertionError(f"{path.read_bytes()[:200]!r} was accepted")


def test_known_bad_inputs_are_one_located_line(tmp_path, monkeypatch):
    """The cases issue 17 names, each with its message (and a good file as the control)."""
    monkeypatch.chdir(tmp_path)
    path = _project(tmp_path)
    base = "version: 1\nservices:\n  svc:\n    context: svc\n    image: demo\n"
    cases = {
        "é: 1\n".encode("latin-1") + base.encode(): "devloop.yaml:1: not UTF-8 text",
        b"\x89PNG\r\n\x1a\n\x00\x00": "devloop.yaml:1: not UTF-8 text",
        (base + "    port_forwards: ['8000:\u00b2']\n").encode():
            "devloop.yaml:6: services.svc.port_forwards[0]: '8000:\u00b2' is not PORT",
        (base + "    context: \"a\\0b\"\n").encode(): "devloop.yaml:",
    }
    for data, start in cases.items():
        path.write_bytes(data)
        assert _refusal(path).startswith(start)
    for good in (base.encode("utf-16"), base.encode("utf-8-sig"), base.encode("utf-32")):
        path.write_bytes(good)
        assert load_config(path).services["svc"].image == "demo"


def test_a_dockerignore_that_is_not_utf8_is_one_line_naming_it(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = _project(tmp_path)
    path.write_text("version: 1\nservices:\n  svc:\n    context: svc\n    image: demo\n")
    for data, want in (("# notes\ncaf\u00e9/\n".encode("latin-1"),
                        "svc/.dockerignore:2: not UTF-8 text"),
                       (b"\xff\xfe\x00\xd8", "svc/.dockerignore:1: not UTF-16-LE text"),
                       (b"ok\n[z-a]\n", "svc/.dockerignore:2: '[z-a]' is not a valid pattern")):
        (tmp_path / "svc/.dockerignore").write_bytes(data)
        assert _refusal(path).startswith(want)
    # the same patterns saved as UTF-16 (with its BOM) are read
    (tmp_path / "svc/.dockerignore").write_bytes("# notes\ncaf\u00e9/\n".encode("utf-16"))
    assert load_config(path).services["svc"].image == "demo"
    from devloop.inputs.ignore import read_dockerignore
    assert read_dockerignore(tmp_path / "svc") == ["caf\u00e9/"]


def test_a_fifo_or_a_directory_given_as_config_is_one_line_not_a_hang(tmp_path, monkeypatch):
    import os

    monkeypatch.chdir(tmp_path)
    os.mkfifo(tmp_path / "fifo.yaml")  # reading it would block until a writer came
    assert _refusal(tmp_path / "fifo.yaml") == (
        "fifo.yaml: is not a regular file (pass the devloop.yaml file with --config PATH)")
    (tmp_path / "dir.yaml").mkdir()
    assert _refusal(tmp_path / "dir.yaml").startswith("dir.yaml: is not a regular file")


def test_a_chart_yaml_that_is_not_utf8_is_one_line(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = _project(tmp_path)
    (tmp_path / "chart/Chart.yaml").write_bytes("name: d\u00e9mo\n".encode("latin-1"))
    path.write_text("version: 1\nchart: {path: chart}\nservices:\n  svc:\n    context: svc\n"
                    "    image: demo\n")
    assert _refusal(path) == ("devloop.yaml:2: chart.path: chart/Chart.yaml cannot be read: "
                              "line 1: not UTF-8 text (byte e9 at offset 7); save the file as "
                              "UTF-8")

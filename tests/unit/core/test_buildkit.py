"""BuildKit builds, the pure parts: which CLI is chosen, the command line, and reading BuildKit's
plain progress back into steps, cache hits and the failing Dockerfile line. The CLI probes are
faked here (a runner answering as /usr/local/bin/docker 28.x without buildx and Debian's 20.10
do on this machine); tests/images/test_buildkit_builds.py runs the real ones."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from devloop.config.loader import BuildSecret, ServiceConfig, load_config
from devloop.config.logfilter import BuildTally
from devloop.image import buildkit as bk
from devloop.image.errors import BuildFailed

# What /usr/bin/docker 20.10 printed for a failing two-stage build (digests shortened).
FAILED_20_10 = """\
#1 [internal] load remote build context
#1 DONE 0.0s

#3 [internal] load metadata for docker.io/library/python:3.11-slim-bookworm
#3 DONE 0.0s

#4 [deps 1/3] FROM docker.io/library/python:3.11-slim-bookworm
#4 sha256:952df0ccbe7dd6076e0f963a0e6647c3f46d47509f5c87ecf7ee9d4f44297c17
#4 DONE 0.1s

#5 [deps 2/3] RUN --mount=type=cache,target=/c echo hi > /c/x
#5 CACHED

#6 [deps 3/3] RUN echo second   && false
#6 0.396 second
#6 ERROR: executor failed running [/bin/sh -c echo second   && false]: exit code: 1
------
 > [deps 3/3] RUN echo second   && false:
------
executor failed running [/bin/sh -c echo second   && false]: exit code: 1
"""

DOCKERFILE = """\
# syntax comment
FROM python:3.11-slim-bookworm AS deps
ENV A=1
ARG X=1
RUN --mount=type=cache,target=/c echo hi > /c/x
RUN echo second \\
  && false

FROM deps
RUN echo ${X}
"""

# BuildKit >= 0.11 (Docker 23+) names the line itself.
FAILED_NEW = """\
#7 [stage-1 2/2] RUN echo 7
#7 0.2 boom
#7 ERROR: process "/bin/sh -c echo 7" did not complete successfully: exit code: 3
------
Dockerfile:10
--------------------
   9 |     FROM deps
  10 | >>> RUN echo ${X}
--------------------
ERROR: failed to solve: process "/bin/sh -c echo 7" did not complete successfully: exit code: 3
"""


def _feed(text: str, name: str = "Dockerfile") -> tuple[bk.Progress, list[str]]:
    progress = bk.Progress(dockerfile_name=name)
    shown = [s for line in text.splitlines() if (s := progress.feed(line)) is not None]
    return progress, shown


def test_a_failed_step_of_buildkit_20_10_points_at_its_dockerfile_line() -> None:
    progress, shown = _feed(FAILED_20_10)
    assert progress.step_label() == "step [deps 3/3] (RUN echo second   && false)"
    assert progress.reason.startswith("executor failed running [/bin/sh -c echo second")
    assert bk.locate(DOCKERFILE, progress.failed, progress.source_line) == 6
    assert not any("sha256:" in s for s in shown)  # digests are noise in the build output
    assert "#6 0.396 second" in shown


def test_buildkit_s_own_dockerfile_line_wins_and_failed_to_solve_is_the_reason() -> None:
    progress, _ = _feed(FAILED_NEW)
    assert progress.source_line == 10
    assert progress.reason.startswith('process "/bin/sh -c echo 7" did not complete')
    assert bk.locate(DOCKERFILE, progress.failed, progress.source_line) == 10


def test_an_arg_substituted_step_is_found_by_its_index_in_an_unnamed_stage() -> None:
    # the vertex shows `echo 7`, the Dockerfile `echo ${X}`: the text differs, the index holds
    progress, _ = _feed("#7 [stage-1 2/2] RUN echo 7\n#7 ERROR: exit code: 3\n")
    assert bk.locate(DOCKERFILE, progress.failed, None) == 10


def test_a_single_stage_build_names_steps_without_a_stage() -> None:
    text = "FROM busybox\nWORKDIR /app\nENV A=1\nCOPY x /x\nRUN false\n"
    progress, _ = _feed("#5 [4/4] RUN false\n#5 ERROR: executor failed running: exit 1\n")
    assert bk.locate(text, progress.failed, None) == 5
    assert bk.locate(text, None, None) is None  # nothing failed at a step: no line


def test_the_console_summary_counts_buildkit_steps_and_cache_hits() -> None:
    tally = BuildTally()
    for line in _feed(FAILED_20_10)[1]:
        tally.add(line)
    assert tally.summary() == "3 steps, 1 cached"


class FakeRunner:
    """Answers CLI probes as the two CLIs of this machine do: keyed by the executable."""

    def __init__(self, answers: dict[str, dict[str, tuple[int, str]]]) -> None:
        self.answers = answers
        self.calls: list[list[str]] = []

    def __call__(self, argv: list[str], env: object) -> subprocess.CompletedProcess[str]:
        self.calls.append(argv)
        key = " ".join(argv[1:3])
        code, out = self.answers[argv[0]].get(key, (1, "unknown"))
        return subprocess.CompletedProcess(argv, code, out, "" if code == 0 else out)


def _fake_docker(folder: Path) -> str:
    folder.mkdir(parents=True)
    exe = folder / "docker"
    exe.write_text("#!/bin/sh\nexit 1\n")
    exe.chmod(0o755)
    return str(exe)


NO_BUILDX = {"buildx version": (1, "docker: 'buildx' is not a docker command."),
             "--version": (0, "Docker version 28.2.2, build e6534b4\n"),
             "build --help": (1, "ERROR: BuildKit is enabled but the buildx component is"
                                 " missing or broken.")}
BUILTIN = {"buildx version": (1, "not a docker command"),
           "--version": (0, "Docker version 20.10.24+dfsg1, build 297e128\n"),
           "build --help": (0, "Usage: docker build")}


def test_auto_skips_a_cli_without_buildx_for_a_later_one_with_buildkit_built_in(
        tmp_path: Path) -> None:
    first, second = _fake_docker(tmp_path / "a"), _fake_docker(tmp_path / "b")
    runner = FakeRunner({first: NO_BUILDX, second: BUILTIN})
    choice = bk.choose("auto", {"PATH": f"{tmp_path / 'a'}:{tmp_path / 'b'}"}, runner)
    assert choice.name == "buildkit"
    assert choice.cli == bk.BuildkitCli(second, "20.10.24+dfsg1", buildx=False)
    assert choice.cli.argv == [second, "build"]


def test_buildx_is_preferred_when_it_answers(tmp_path: Path) -> None:
    exe = _fake_docker(tmp_path / "a")
    runner = FakeRunner({exe: {"buildx version": (0, "github.com/docker/buildx v0.14.0 x")}})
    choice = bk.choose("auto", {"PATH": str(tmp_path / "a")}, runner)
    assert choice.cli is not None and choice.cli.argv == [exe, "buildx", "build", "--load"]


def test_without_a_buildkit_cli_the_legacy_builder_is_chosen_and_the_reason_says_why(
        tmp_path: Path) -> None:
    exe = _fake_docker(tmp_path / "a")
    old = {"buildx version": (1, "no"),
           "--version": (0, "Docker version 18.06.1-ce, build e68fc7a\n")}
    choice = bk.choose("auto", {"PATH": str(tmp_path / "a")}, FakeRunner({exe: old}))
    assert choice.name == "legacy" and "18.06.1-ce has no BuildKit" in choice.reason
    choice = bk.choose("buildkit", {"PATH": str(tmp_path / "a")},
                       FakeRunner({exe: NO_BUILDX}))
    assert choice.name == "legacy" and "missing or broken" in choice.reason
    assert bk.choose("auto", {"PATH": str(tmp_path / "none")}, FakeRunner({})).reason.startswith(
        "no Docker CLI with BuildKit (no docker CLI on PATH)")


def test_builder_legacy_asks_no_cli(tmp_path: Path) -> None:
    runner = FakeRunner({})
    assert bk.choose("legacy", {"PATH": "/usr/bin"}, runner).name == "legacy"
    assert runner.calls == []


def test_the_cli_talks_to_the_engine_devloop_talks_to() -> None:
    base = {"PATH": "/usr/bin", "DOCKER_HOST": "unix:///mine.sock", "DOCKER_CERT_PATH": "/c"}
    env = bk.docker_env({"DOCKER_HOST": "tcp://127.0.0.1:2376", "DOCKER_TLS_VERIFY": "1"}, base)
    assert env["DOCKER_HOST"] == "tcp://127.0.0.1:2376" and env["DOCKER_TLS_VERIFY"] == "1"
    assert "DOCKER_CERT_PATH" not in env  # minikube's docker-env replaces the whole set
    assert env["DOCKER_BUILDKIT"] == "1" and env["PATH"] == "/usr/bin"
    assert bk.docker_env(None, base)["DOCKER_HOST"] == "unix:///mine.sock"


def _service(tmp_path: Path, **kw: object) -> ServiceConfig:
    (tmp_path / "Dockerfile").write_text("FROM scratch\n")
    return ServiceConfig(name="api", context=tmp_path, dockerfile=tmp_path / "Dockerfile",
                         image="api", deployment="api", container="api", **kw)  # type: ignore


def test_the_command_carries_args_target_platform_labels_network_and_secret_names(
        tmp_path: Path) -> None:
    secret_file = tmp_path / "npmrc"
    secret_file.write_text("//registry/:_authToken=abcdef123")
    svc = _service(tmp_path, build_args={"B": "2", "A": "1"}, target="dev",
                   platform="linux/amd64",
                   build_secrets={"npmrc": BuildSecret(file=secret_file),
                                  "token": BuildSecret(env="GH_TOKEN")})
    kit = bk.KitBuilder(bk.BuildkitCli("/usr/bin/docker", "20.10.24", False),
                        host_network=True, base_env={"GH_TOKEN": "ghp_supersecret1"})
    argv = kit.command(svc, "api:dl-abc", "Dockerfile", {"devloop.service": "api"},
                       Path("/tmp/iid"))
    text = " ".join(argv)
    assert argv[:2] == ["/usr/bin/docker", "build"] and argv[-1] == "-"
    assert "--build-arg A=1 --build-arg B=2" in text and "--target dev" in text
    assert "--platform linux/amd64" in text and "--label devloop.service=api" in text
    assert "--network host" in text and "-t api:dl-abc" in text
    assert f"--secret id=npmrc,src={secret_file}" in text and "--secret id=token,env=GH_TOKEN" \
        in text
    assert "ghp_supersecret1" not in text and "abcdef123" not in text  # names, never values
    kit.host_network = False
    assert "--network" not in kit.command(svc, "t", "Dockerfile", {}, Path("/tmp/iid"))


def test_a_missing_secret_source_is_one_line_naming_service_and_variable(tmp_path: Path) -> None:
    svc = _service(tmp_path, build_secrets={"token": BuildSecret(env="GH_TOKEN")})
    kit = bk.KitBuilder(bk.BuildkitCli("/bin/false", "20.10.24", False), host_network=False,
                        base_env={})
    with pytest.raises(BuildFailed) as err, open(tmp_path / "Dockerfile", "rb") as context:
        kit.build(context, "Dockerfile", svc, "api:dl-1", {}, lambda _line: None)
    assert "build secret token of api: environment variable GH_TOKEN is not set" in str(err.value)
    assert "\n" not in str(err.value)


def test_secret_values_feed_the_redactor_whole_and_line_by_line(tmp_path: Path) -> None:
    f = tmp_path / "s"
    f.write_text("user=me\npassword=hunter2hunter\n")
    svc = _service(tmp_path, build_secrets={"a": BuildSecret(file=f),
                                            "b": BuildSecret(env="TOK")})
    values = bk.secret_values({"api": svc}, {"TOK": "tok-123456"})
    assert "tok-123456" in values and "password=hunter2hunter" in values


def test_devloop_yaml_takes_builder_platform_and_build_secrets(tmp_path: Path) -> None:
    (tmp_path / "svc").mkdir()
    (tmp_path / "svc" / "Dockerfile").write_text("FROM scratch\n")
    (tmp_path / "npmrc").write_text("x")
    (tmp_path / "devloop.yaml").write_text(
        "version: 1\nnamespace: ns\nbuilder: buildkit\nservices:\n  api:\n    context: svc\n"
        "    image: api\n    platform: linux/arm64\n    build_secrets:\n"
        "      npmrc: {file: npmrc}\n      token: {env: GH_TOKEN}\n")
    config = load_config(tmp_path / "devloop.yaml", env={})
    svc = config.services["api"]
    assert config.builder == "buildkit" and svc.platform == "linux/arm64"
    assert svc.build_secrets == {"npmrc": BuildSecret(file=tmp_path / "npmrc"),
                                 "token": BuildSecret(env="GH_TOKEN")}


@pytest.mark.parametrize("snippet, message", [
    ("builder: kit", "'kit' is not one of auto, buildkit, legacy"),
    ("services:\n  api:\n    context: svc\n    image: api\n    platform: amd64",
     "is not a valid platform"),
    ("services:\n  api:\n    context: svc\n    image: api\n    build_secrets:\n"
     "      t: {env: A, file: b}", "needs exactly one of file:"),
    ("services:\n  api:\n    context: svc\n    image: api\n    build_secrets:\n"
     "      t: {file: nothere}", "is not a readable file"),
])
def test_bad_builder_settings_are_located_one_line_problems(tmp_path: Path, snippet: str,
                                                            message: str) -> None:
    from devloop.config.loader import ConfigError
    (tmp_path / "svc").mkdir()
    (tmp_path / "svc" / "Dockerfile").write_text("FROM scratch\n")
    body = snippet if snippet.startswith("services") else \
        f"{snippet}\nservices:\n  api:\n    context: svc\n    image: api"
    (tmp_path / "devloop.yaml").write_text(f"version: 1\nnamespace: ns\n{body}\n")
    with pytest.raises(ConfigError) as err:
        load_config(tmp_path / "devloop.yaml", env={})
    assert message in str(err.value)


def test_a_dockerfile_buildkit_cannot_parse_points_at_the_line_it_names() -> None:
    # /usr/bin/docker 20.10 on a heredoc (its built-in frontend predates them)
    progress, _ = _feed("#2 DONE 0.1s\nfailed to solve with frontend dockerfile.v0: failed to"
                        " create LLB definition: dockerfile parse error line 4: unknown"
                        " instruction: ECHO\n")
    assert progress.source_line == 4
    assert progress.reason.endswith("dockerfile parse error line 4: unknown instruction: ECHO")
    assert bk.locate("", None, progress.source_line) == 4


def test_each_build_tells_the_redactor_its_secret_values_first(tmp_path: Path) -> None:
    # a secret added while watching (or a rotated file) is masked in that build's output too
    secret_file = tmp_path / "npmrc"
    secret_file.write_text("token-from-file-1")
    svc = _service(tmp_path, build_secrets={"token": BuildSecret(env="GH_TOKEN"),
                                            "npmrc": BuildSecret(file=secret_file)})
    told: list[str] = []
    kit = bk.KitBuilder(bk.BuildkitCli("/bin/false", "20.10.24", False), host_network=False,
                        base_env={"GH_TOKEN": "ghp_rotated_42"}, redact=told.extend)
    with pytest.raises(BuildFailed), open(tmp_path / "Dockerfile", "rb") as context:
        kit.build(context, "Dockerfile", svc, "api:dl-1", {}, lambda _line: None)
    assert {"ghp_rotated_42", "token-from-file-1"} <= set(told)


def test_a_cli_that_vanished_since_it_was_chosen_is_one_line(tmp_path: Path) -> None:
    svc = _service(tmp_path)
    kit = bk.KitBuilder(bk.BuildkitCli(str(tmp_path / "gone" / "docker"), "20.10.24", False),
                        host_network=False, base_env={})
    with pytest.raises(BuildFailed) as err, open(tmp_path / "Dockerfile", "rb") as context:
        kit.build(context, "Dockerfile", svc, "api:dl-1", {}, lambda _line: None)
    assert "cannot run" in str(err.value) and "builder: legacy" in str(err.value)
    assert "\n" not in str(err.value)

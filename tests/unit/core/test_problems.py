"""Container paths in tracebacks map back to repository files (COPY lines or path_map)."""

from __future__ import annotations

from pathlib import Path

from devloop.config.loader import ServiceConfig
from devloop.image.dockerfile import parse
from devloop.image.problems import traceback_problem

TRACEBACK = """\
Traceback (most recent call last):
  File "/opt/venv/lib/python3.11/site-packages/uvicorn/main.py", line 410, in main
    run()
  File "/app/app/main.py", line 7, in <module>
    from app.routes import health
  File "/app/app/routes/health.py", line 31
    def broken(:
               ^
SyntaxError: invalid syntax
""".splitlines()


def _service(root: Path, dockerfile: str, **kw) -> ServiceConfig:
    ctx = root / "services/backend"
    (ctx / "app/routes").mkdir(parents=True)
    (ctx / "app/main.py").write_text("x\n")
    (ctx / "app/routes/health.py").write_text("x\n")
    (ctx / "Dockerfile").write_text(dockerfile)
    return ServiceConfig(name="backend", context=ctx, dockerfile=ctx / "Dockerfile",
                         image="b", deployment="backend", container="backend", **kw)


def test_copy_lines_map_the_innermost_repo_frame(tmp_path):
    svc = _service(tmp_path, "FROM python:3.11-slim-bookworm AS deps\nCOPY requirements.txt /t/\n"
                             "FROM python:3.11-slim-bookworm\nWORKDIR /app\n"
                             "COPY --from=deps /opt/venv /opt/venv\nCOPY app/ app/\n")
    problem = traceback_problem(TRACEBACK, svc, tmp_path)
    assert problem == {"file": "services/backend/app/routes/health.py", "line": 31,
                       "message": "SyntaxError: invalid syntax", "kind": "crash"}


def test_path_map_overrides_the_dockerfile(tmp_path):
    svc = _service(tmp_path, "FROM scratch\nADD bundle.tar /srv/\n",
                   path_map={"/app/app": tmp_path / "services/backend/app"})
    problem = traceback_problem(TRACEBACK, svc, tmp_path)
    assert problem is not None and problem["file"] == "services/backend/app/routes/health.py"


def test_frames_outside_the_repo_are_not_problems(tmp_path):
    svc = _service(tmp_path, "FROM scratch\nCOPY app/ /app/app/\n")
    lines = ['  File "/usr/lib/python3.11/json/decoder.py", line 3, in decode', "ValueError: x"]
    assert traceback_problem(lines, svc, tmp_path) is None


def test_dockerfile_steps_count_instructions_across_continuations_and_comments():
    text = ("# syntax comment\nFROM scratch\n\n# a comment\nRUN a \\\n  && b \\\n"
            "  # inner comment\n  && c\nCOPY x /x\n")
    steps = parse(text)
    assert [(s.line, s.keyword) for s in steps] == [(2, "FROM"), (5, "RUN"), (9, "COPY")]
    assert steps[1].args == "a && b && c"

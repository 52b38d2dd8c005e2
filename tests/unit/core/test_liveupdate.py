"""Live update decisions: rules inferred from real-world Dockerfiles, and per-container plans
(what is copied, deleted and run, or the one-line reason a rebuild is needed)."""

from __future__ import annotations

from pathlib import Path

import pytest

from devloop.config.loader import LiveUpdateConfig, RunStep, SyncRule
from devloop.live.plan import (
    FileCopy,
    LivePlan,
    LiveRules,
    Rebuild,
    SyncTarget,
    dest_for,
    not_writable_hint,
    plan,
    rules_for,
    unconfirmed_holds,
)

REPO = Path(__file__).resolve().parents[3]
ON = LiveUpdateConfig()


def _rules(dockerfile: str, target: str | None = None, config: LiveUpdateConfig = ON,
           rel: str | None = "Dockerfile", **kw: object) -> LiveRules:
    rules = rules_for(dockerfile, rel, target, config, **kw)
    assert isinstance(rules, LiveRules), rules
    return rules


def _where(rules: LiveRules, rel: str) -> str | None:
    """Where a context file lands in the container (None: no rule copies it)."""
    rule = dest_for(rules, rel)
    return rule.container_path(rel) if rule is not None else None


def _triggers(rules: LiveRules, rel: str) -> bool:
    """Whether a change to `rel` forces a rebuild because it is a trigger."""
    files = {rel: "1"}
    result = plan(rules, files, {rel: "2"}, files, ())
    return isinstance(result, Rebuild) and "rebuild trigger" in result.reason


# --- inference from Dockerfiles -----------------------------------------------------------------

BACKEND_DEV = """\
FROM python:3.11-slim AS deps
COPY requirements.txt /tmp/requirements.txt
COPY wheels/ /wheels/
RUN python3 -m venv /opt/venv && /opt/venv/bin/pip install -r /tmp/requirements.txt

FROM python:3.11-slim AS base
RUN useradd --uid 10001 app && mkdir -p /app/data
WORKDIR /app
COPY --from=deps /opt/venv /opt/venv

FROM base AS dev
COPY requirements-dev.txt /tmp/requirements-dev.txt
RUN /opt/venv/bin/pip install -r /tmp/requirements-dev.txt
COPY --chown=10001:10001 gunicorn.conf.py /app/gunicorn.conf.py
COPY --chown=10001:10001 app/ /app/app/
USER 10001:10001
CMD ["gunicorn", "app.main:app"]

FROM base
COPY app/ /app/app/
USER 10001:10001
"""


def test_the_target_stage_copies_after_its_last_run_are_synced_with_their_line_and_owner():
    rules = _rules(BACKEND_DEV, target="dev")
    assert _where(rules, "app/main.py") == "/app/app/main.py"
    assert _where(rules, "app/routers/todos.py") == "/app/app/routers/todos.py"
    assert _where(rules, "gunicorn.conf.py") == "/app/gunicorn.conf.py"
    assert _where(rules, "README.md") is None
    rule = dest_for(rules, "app/main.py")
    assert rule is not None and (rule.line, rule.chown) == (15, "10001:10001")
    # what a RUN of the image (or of a stage it copies from) read forces a rebuild
    assert _triggers(rules, "requirements-dev.txt") and _triggers(rules, "wheels/x.whl")
    assert _triggers(rules, "requirements.txt") and _triggers(rules, "Dockerfile")
    assert not _triggers(rules, "app/main.py")


def test_without_target_the_last_stage_is_the_image():
    rules = _rules(BACKEND_DEV)
    rule = dest_for(rules, "app/main.py")
    assert rule is not None and (rule.line, rule.chown) == (20, None)
    assert _where(rules, "gunicorn.conf.py") is None  # only the dev stage copies it
    assert "no stage named 'prod'" in rules_for(BACKEND_DEV, "Dockerfile", "prod", ON)


def test_copies_before_a_run_are_triggers_and_copies_after_it_are_synced():
    node = """\
FROM node:20-slim
WORKDIR /app
COPY package.json package-lock.json ./
COPY patches ./patches
RUN npm ci
COPY . .
CMD ["npm", "run", "dev"]
"""
    rules = _rules(node)
    assert _where(rules, "app/page.tsx") == "/app/app/page.tsx"
    assert _where(rules, "next.config.mjs") == "/app/next.config.mjs"
    result = plan(rules, {"patches/a.patch": "1"}, {"patches/a.patch": "2"},
                  {"patches/a.patch": "1"}, ())
    assert result == Rebuild("patches/a.patch changed (a rebuild trigger: read by the RUN at "
                             "Dockerfile:5)")


def test_a_build_step_over_the_whole_context_leaves_nothing_to_sync():
    built = """\
FROM node:20-slim AS builder
WORKDIR /app
COPY . .
RUN npm run build

FROM node:20-slim
WORKDIR /app
COPY --from=builder /app/.next/standalone ./
CMD ["node", "server.js"]
"""
    assert "copies no source file from the context" in rules_for(built, "Dockerfile", None, ON)
    # the same build step in the image itself: every source is a trigger
    rules = _rules(built.replace("FROM node:20-slim\n", "FROM builder AS dev\nCOPY app ./app\n"
                                 "FROM node:20-slim\n"), target="dev")
    assert _triggers(rules, "app/page.tsx") and _triggers(rules, "lib/x.ts")


def test_frontend_dev_stage_copying_source_directories():
    frontend = """\
FROM node:20-bookworm-slim AS deps
WORKDIR /app
COPY package.json package-lock.json ./
COPY offline/ /tmp/offline/
RUN npm ci --cache /tmp/offline/npm-cache

FROM deps AS dev
ENV NODE_ENV=development
COPY --chown=10001:10001 next.config.mjs tsconfig.json next-env.d.ts ./
COPY --chown=10001:10001 public ./public
COPY --chown=10001:10001 lib ./lib
COPY --chown=10001:10001 components ./components
COPY --chown=10001:10001 app ./app
USER 10001:10001
CMD ["npx", "next", "dev"]
"""
    rules = _rules(frontend, target="dev")
    assert _where(rules, "components/TodoList.tsx") == "/app/components/TodoList.tsx"
    assert _where(rules, "app/page.tsx") == "/app/app/page.tsx"
    assert _where(rules, "tsconfig.json") == "/app/tsconfig.json"
    assert _where(rules, "public/favicon.ico") == "/app/public/favicon.ico"
    assert _triggers(rules, "package.json") and _triggers(rules, "offline/npm-cache/x")
    assert _where(rules, "offline/npm-cache/x") is None


def test_workdir_wildcards_and_file_destinations():
    text = """\
FROM python:3.11-slim
WORKDIR /srv
WORKDIR app
COPY *.py ./
COPY conf/*.toml /etc/svc/
COPY settings.ini /etc/svc/svc.ini
COPY main.py .
COPY VERSION /srv/app
COPY ["static dir", "/srv/static/"]
"""
    rules = _rules(text)
    assert _where(rules, "main.py") == "/srv/app/main.py"
    assert _where(rules, "util.py") == "/srv/app/util.py"
    assert _where(rules, "pkg/util.py") is None  # a wildcard matches one path segment
    assert _where(rules, "conf/a.toml") == "/etc/svc/a.toml"
    assert _where(rules, "settings.ini") == "/etc/svc/svc.ini"
    assert _where(rules, "VERSION") == "/srv/app/VERSION"  # the WORKDIR is a directory
    assert _where(rules, "static dir/logo.png") == "/srv/static/logo.png"


def test_variables_and_build_args_in_paths():
    text = """\
ARG APP=api
FROM python:3.11-slim
ARG APP
ARG ROOT=/opt
ENV HOME_DIR=${ROOT}/$APP
WORKDIR $HOME_DIR
COPY src/${APP}/ ./code/
"""
    assert _where(_rules(text), "src/api/x.py") == "/opt/api/code/x.py"
    assert _where(_rules(text, build_args={"APP": "web"}), "src/web/x.py") == "/opt/web/code/x.py"


def test_add_of_urls_and_archives_is_not_synced_and_an_archive_is_a_trigger():
    text = """\
FROM debian:bookworm-slim
WORKDIR /app
ADD https://example.com/tool.tar.gz /opt/
ADD vendor.tar.gz /opt/vendor/
ADD src/ /app/src/
COPY <<EOF /app/VERSION
1.0
EOF
"""
    rules = _rules(text)
    assert _where(rules, "src/x.sh") == "/app/src/x.sh"
    assert _where(rules, "vendor.tar.gz") is None
    assert _triggers(rules, "vendor.tar.gz")
    assert all("example.com" not in r.src for r in rules.sync)


def test_copy_from_another_image_and_bind_mounts_of_the_context():
    text = """\
FROM golang:1.22 AS build
WORKDIR /src
RUN --mount=type=bind,source=go.work,target=/src/go.work \\
    --mount=type=cache,target=/root/.cache go build
FROM alpine
COPY --from=build /out/app /usr/bin/app
COPY --from=busybox:latest /bin/busybox /bin/busybox
COPY templates/ /templates/
"""
    rules = _rules(text)
    assert _where(rules, "templates/a.html") == "/templates/a.html"
    assert _triggers(rules, "go.work")
    assert not _triggers(rules, "templates/a.html")


def test_devloop_yaml_rules_replace_inference_and_fall_back_on_adds_triggers():
    config = LiveUpdateConfig(sync=(SyncRule("app", "/srv/code"), SyncRule("", "/mirror"),
                                    SyncRule("VERSION", "/etc/")),
                              fall_back_on=("*.cfg", "!package.json"))
    rules = _rules(BACKEND_DEV, target="dev", config=config)
    assert [c for c in rules.sync] == [SyncTarget("app", "/srv/code", None, None),
                                       SyncTarget("", "/mirror", None, None),
                                       SyncTarget("VERSION", "/etc", None, None, into_dir=True)]
    assert _where(rules, "README.md") == "/mirror/README.md"
    assert _where(rules, "VERSION") == "/etc/VERSION"
    assert _triggers(rules, "setup.cfg") and _triggers(rules, "requirements-dev.txt")
    assert not _triggers(rules, "package.json")  # an exception pattern lifts a default
    result = plan(rules, {"app/a.py": "1"}, {"app/a.py": "2"}, {"app/a.py": "1"}, ())
    assert isinstance(result, LivePlan)
    assert result.copies == (FileCopy("app/a.py", "/mirror/app/a.py"),
                             FileCopy("app/a.py", "/srv/code/a.py"))


def test_disabled_and_dependency_manifests_at_any_depth():
    assert "live_update: false" in rules_for(BACKEND_DEV, "Dockerfile", "dev",
                                             LiveUpdateConfig(enabled=False))
    rules = _rules("FROM node:20\nWORKDIR /app\nCOPY . .\n", rel=None)
    for manifest in ("package.json", "web/package.json", "a/b/yarn.lock", "pnpm-lock.yaml",
                     "svc/requirements-test.txt", "pyproject.toml", "tools/go.sum",
                     "Pipfile.lock", "uv.lock", "Cargo.toml", ".dockerignore"):
        assert _triggers(rules, manifest), manifest
    assert not _triggers(rules, "src/package.ts")
    # a Dockerfile inside the context, wherever it is, is one too
    rules = _rules("FROM node:20\nWORKDIR /app\nCOPY . .\n", rel="docker/Dockerfile.dev")
    assert _triggers(rules, "docker/Dockerfile.dev") and not _triggers(rules, "docker/x.sh")


def test_the_lumina_dockerfiles_infer_rules():
    """The repo's own Dockerfiles: the backend and chatbot source packages are synced."""
    for svc, pkg in (("backend", "app"), ("chatbot", "chatbot")):
        text = (REPO / "services" / svc / "Dockerfile").read_text()
        for target in (None, "dev") if "AS dev" in text else (None,):
            rules = _rules(text, target=target)
            assert _where(rules, f"{pkg}/main.py") == f"/app/{pkg}/main.py", (svc, target)
            assert _triggers(rules, "requirements.txt")


# --- plans --------------------------------------------------------------------------------------

APP = """\
FROM python:3.11-slim
WORKDIR /app
COPY requirements.txt .
RUN pip install -r requirements.txt
COPY . /app
"""
IMAGE = {"app/main.py": "m1", "app/db.py": "d1", "requirements.txt": "r1", "README.md": "x1",
         "data/seed.db": "s1"}


def _plan(current: dict[str, str], container: dict[str, str] | None = None,
          mounts: tuple[str, ...] = ("/app/data",), run: tuple[RunStep, ...] = ()
          ) -> LivePlan | Rebuild:
    rules = _rules(APP, config=LiveUpdateConfig(run=run))
    return plan(rules, IMAGE, current, IMAGE if container is None else container, mounts)


def test_a_changed_file_is_copied_and_the_plan_records_what_the_container_holds():
    current = {**IMAGE, "app/main.py": "m2"}
    result = _plan(current)
    assert result == LivePlan((FileCopy("app/main.py", "/app/app/main.py"),), (), (), current)


def test_delete_rename_and_add_in_one_plan_in_a_stable_order():
    current = {k: v for k, v in IMAGE.items() if k != "app/db.py"}
    current |= {"app/store.py": "d1", "app/new/a.py": "a1", "app/b.py": "b1"}
    result = _plan(current)
    assert isinstance(result, LivePlan)
    assert [c.dest for c in result.copies] == ["/app/app/b.py", "/app/app/new/a.py",
                                               "/app/app/store.py"]
    assert result.deletes == ("/app/app/db.py",)
    assert result.files == current


def test_only_what_the_container_lacks_is_copied_content_not_time():
    synced = {**IMAGE, "app/main.py": "m2"}  # an earlier sync already brought main.py
    current = {**synced, "app/db.py": "d2"}
    result = _plan(current, container=synced)
    assert isinstance(result, LivePlan)
    assert result.copies == (FileCopy("app/db.py", "/app/app/db.py"),)
    # a file edited and then restored to what the container holds needs nothing
    assert _plan(synced, container=synced) == LivePlan((), (), (), synced)
    # a container restarted from the image (it lost the sync) gets everything again
    result = _plan(current, container=IMAGE)
    assert isinstance(result, LivePlan) and len(result.copies) == 2


def test_nothing_changed_is_an_empty_plan_and_runs_nothing():
    assert _plan(dict(IMAGE), run=(RunStep("kill -HUP 1"),)) == LivePlan((), (), (), IMAGE)


def test_a_trigger_hit_rebuilds_naming_the_path_even_beside_syncable_changes():
    result = _plan({**IMAGE, "app/main.py": "m2", "requirements.txt": "r2"})
    assert result == Rebuild("requirements.txt changed (a rebuild trigger: read by the RUN at "
                             "Dockerfile:4)")
    result = _plan({k: v for k, v in IMAGE.items() if k != "requirements.txt"})
    assert isinstance(result, Rebuild) and result.reason.startswith("requirements.txt was "
                                                                    "deleted")


def test_a_path_no_rule_copies_rebuilds():
    rules = _rules("FROM python:3.11-slim\nWORKDIR /app\nCOPY app/ /app/app/\n")
    image = {"app/main.py": "1", "README.md": "1", "docs/a.md": "1"}
    result = plan(rules, image, {**image, "README.md": "2", "docs/a.md": "2"}, image, ())
    assert result == Rebuild("README.md is not copied into the image by a sync rule "
                             "(and 1 more)")


def test_a_dest_inside_a_volume_mount_is_refused_naming_the_mount():
    result = _plan({**IMAGE, "data/seed.db": "s2"})
    assert result == Rebuild("dest /app/data/seed.db is inside volume mount /app/data "
                             "(devloop never writes into a volume)")
    # deleting there is refused too; a sync to /app that leaves the mount alone is fine
    result = _plan({k: v for k, v in IMAGE.items() if k != "data/seed.db"})
    assert isinstance(result, Rebuild) and "volume mount /app/data" in result.reason
    result = _plan({**IMAGE, "app/main.py": "m2"}, mounts=("/app/data/",))
    assert isinstance(result, LivePlan) and len(result.copies) == 1
    assert isinstance(_plan({**IMAGE, "app/main.py": "m2"}, mounts=("/app",)), Rebuild)


def test_run_steps_run_after_a_copy_when_untriggered_or_their_trigger_matches():
    steps = (RunStep("kill -HUP 1", ("app/**",)), RunStep("touch /tmp/reload"),
             RunStep("make docs", ("docs/**", "*.md")))
    result = _plan({**IMAGE, "app/main.py": "m2"}, run=steps)
    assert isinstance(result, LivePlan)
    assert result.run == ("kill -HUP 1", "touch /tmp/reload")
    result = _plan({**IMAGE, "README.md": "x2"}, run=steps)
    assert isinstance(result, LivePlan) and result.run == ("touch /tmp/reload", "make docs")
    # a delete triggers too
    result = _plan({k: v for k, v in IMAGE.items() if k != "app/db.py"}, run=steps)
    assert isinstance(result, LivePlan) and result.run[0] == "kill -HUP 1"


def test_a_later_copy_to_the_same_place_wins_as_in_the_image():
    rules = _rules("FROM alpine\nCOPY defaults/ /etc/app/\nCOPY site/ /etc/app/\n")
    image = {"defaults/a.conf": "1", "site/a.conf": "2"}
    assert dest_for(rules, "site/a.conf") is not None
    result = plan(rules, image, {"defaults/a.conf": "1", "site/a.conf": "3"}, image, ())
    assert isinstance(result, LivePlan)
    assert result.copies == (FileCopy("site/a.conf", "/etc/app/a.conf"),)


@pytest.mark.parametrize("uid, expected", [
    (10001, "services/backend/Dockerfile:3: COPY app/ /app/app/ leaves /app/app owned by root;"
            " the container runs as 10001: use COPY --chown=10001:10001 app/ /app/app/"),
    (None, "use COPY --chown=<uid>:<gid> app/ /app/app/"),
])
def test_not_writable_hint_names_the_line_to_change(uid, expected):
    rules = _rules("FROM python:3.11-slim\nWORKDIR /app\nCOPY app/ /app/app/\n")
    rule = dest_for(rules, "app/main.py")
    assert rule is not None
    assert not_writable_hint(rule, "services/backend/Dockerfile", uid).endswith(expected)
    config_rule = SyncTarget("app", "/srv", None, None)
    assert "live_update.sync app -> /srv" in not_writable_hint(config_rule, "x", 10001)


# --- after a sync that was interrupted (intent on the pod, never confirmed) --------------------


def test_an_interrupted_sync_then_a_revert_copies_the_reverted_file_back():
    """The known bug: main.py m2 was being synced when devloop died; the edit was reverted.
    The sources equal the image, yet the container may hold m2: the plan must copy m1 back."""
    rules = _rules(APP)
    holds = unconfirmed_holds(rules, IMAGE, dict(IMAGE), prior=IMAGE, pending=["app/main.py"])
    result = plan(rules, IMAGE, dict(IMAGE), holds, ("/app/data",))
    assert isinstance(result, LivePlan)
    assert result.copies == (FileCopy("app/main.py", "/app/app/main.py"),)
    # positive control: without the intent, the same container needs nothing
    assert plan(rules, IMAGE, dict(IMAGE), IMAGE, ("/app/data",)).copies == ()


def test_a_file_added_by_an_interrupted_sync_and_deleted_since_is_deleted():
    rules = _rules(APP)
    holds = unconfirmed_holds(rules, IMAGE, dict(IMAGE), prior=IMAGE, pending=["app/new.py"])
    result = plan(rules, IMAGE, dict(IMAGE), holds, ())
    assert isinstance(result, LivePlan)
    assert result.deletes == ("/app/app/new.py",) and result.copies == ()


def test_without_the_prior_content_every_synced_file_is_copied_again_but_no_trigger():
    rules = _rules(APP)
    current = {**IMAGE, "app/main.py": "m2"}
    holds = unconfirmed_holds(rules, IMAGE, current, prior=None, pending=["app/main.py"],
                              volume_mounts=("/app/data",))
    result = plan(rules, IMAGE, current, holds, ("/app/data",))
    # neither requirements.txt (a trigger) nor data/seed.db (in a volume) is unknown
    assert isinstance(result, LivePlan), result
    assert [c.rel for c in result.copies] == ["README.md", "app/db.py", "app/main.py"]
    assert set(result.changed) == {"README.md", "app/db.py", "app/main.py"}

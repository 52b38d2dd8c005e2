"""The layer-caching promise: editing only source code reuses the dependency install layer.

Each service is rebuilt (legacy builder, same offline build args) from a copy of its context in
which one source file changed; the pip/npm install step must come from the cache and the first
step that runs again must be a COPY of source that follows it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import pytest

# one worker builds the session's :imagetest images (a fixed tag) for all of these
pytestmark = pytest.mark.xdist_group("images")

INSTALL = re.compile(r"\b(pip install|npm ci|npm install)\b")


@dataclass
class Step:
    number: int
    instruction: str
    cached: bool


def build_steps(log: str) -> list[Step]:
    """The `Step N/M : INSTRUCTION` entries of a legacy-builder log and whether each was cached."""
    steps: list[Step] = []
    for line in log.splitlines():
        head = re.match(r"Step (\d+)/\d+ : (.*)", line)
        if head:
            steps.append(Step(int(head[1]), head[2], cached=False))
        elif steps and line.strip() == "---> Using cache":
            steps[-1].cached = True
    return steps


def test_step_parser_reads_legacy_builder_output() -> None:
    log = (
        "Step 1/3 : FROM base\n ---> 1a\nStep 2/3 : RUN pip install -r r.txt\n"
        " ---> Using cache\n ---> 2b\nStep 3/3 : COPY app/ /app/\n ---> 3c\n"
    )
    assert build_steps(log) == [
        Step(1, "FROM base", False),
        Step(2, "RUN pip install -r r.txt", True),
        Step(3, "COPY app/ /app/", False),
    ]


@pytest.mark.docker
@pytest.mark.parametrize("service", ["backend", "chatbot", "frontend"])
def test_source_edit_reuses_the_dependency_layer(service, rebuild_with_source_edit) -> None:
    steps = build_steps(rebuild_with_source_edit(service))
    installs = [s for s in steps if INSTALL.search(s.instruction)]
    assert installs, f"{service}: no pip/npm install step in the build:\n{steps}"
    assert all(s.cached for s in installs), f"{service}: install step rebuilt: {installs}"
    rerun = next((s for s in steps if not s.cached and not s.instruction.startswith("FROM")), None)
    assert rerun is not None, f"{service}: the edited source file did not reach the image"
    assert rerun.number > installs[-1].number, f"{service}: {rerun} runs before the install"
    assert rerun.instruction.startswith(("COPY", "ADD")), f"{service}: first rerun is {rerun}"

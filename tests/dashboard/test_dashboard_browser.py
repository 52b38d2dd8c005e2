"""The dashboard (issue 14) in a real headless Chromium against a real `devloop watch`.

The service is the busybox box of tests/live (its process prints /app/message.txt every 0.2 s),
deployed on the Kubernetes API stand-in with pods as Docker containers. Nothing is mocked: the
page, its event stream and its buttons go through the real HTTP server in the watch process.
Screenshots of each state are saved under .devloop/screenshots/ for a person to look at.
"""

from __future__ import annotations

import re
import time

import pytest

from tests.dashboard.dashboard_page import Page, start_watch
from tests.kube_standin.fixtures import wait_for
from tests.live.test_live_watch import make_box

pytestmark = pytest.mark.docker


@pytest.fixture
def box(standin, tmp_path, image_prefix):
    return make_box(standin, tmp_path, image_prefix)


@pytest.fixture
def running(standin, box):
    """A watch whose box is deployed and Ready: (root, watch, dashboard url)."""
    watch, url = start_watch(box, standin.kubeconfig)
    try:
        watch.wait("rollout.ready", timeout=180)
        yield box, watch, url
    finally:
        watch.stop()


def test_an_edit_goes_through_the_card_live_and_new_output_shows(running, browser):
    root, watch, url = running
    page = Page(browser, url)
    page.wait_state("box", "ready", 30)
    page.wait(lambda: any("v1 " in line for line in page.log_lines()), 30, "the pod's output")
    card = page.card("box")
    assert re.search(r"image\s+dl-[0-9a-f]{12}", card), card
    assert "restarts 0" in page.wait(lambda: "restarts" in page.card("box") and page.card("box"),
                                     30, "the pod row")
    page.shot("01-ready")

    # a synced file: syncing -> ready, new output in the log view, pods ahead of the image
    mark = watch.mark()
    (root / "services/box/src/message.txt").write_text("v2\n")
    watch.wait("reload.finished", after=mark, outcome="synced", timeout=60)
    page.wait_state("box", "ready", 30)
    assert "syncing" in page.states_seen("box")
    page.wait(lambda: any(" v2 " in f" {line}" for line in page.log_lines()), 30,
              "the new output in the log view")
    page.wait(lambda: "1 file ahead of the image" in page.card("box"), 30, "live state")
    page.shot("02-synced-live")

    # a rebuild trigger: building -> deploying -> ready, build output apart from pod output
    mark = watch.mark()
    (root / "services/box/requirements.txt").write_text("nothing==2\n")
    page.wait_state("box", "building", 60)
    page.shot("03-building")
    watch.wait("reload.finished", after=mark, ok=True, timeout=180)
    page.wait_state("box", "ready", 30)
    seen = page.states_seen("box")
    assert seen.index("building") < seen.index("deploying") < len(seen) - 1, seen
    assert page.same_page()  # everything above came in without reloading the page
    assert page.js("return document.querySelectorAll('#log .l.build').length") > 0
    phases = page.card("box")
    assert re.search(r"last reload\s+ok in \d+\.\d\ds", phases), phases
    assert "build " in phases and "rollout " in phases, phases

    # the search box filters lines in the page
    browser.find_element("id", "search").send_keys("v2")
    lines = page.wait(page.log_lines, 10, "filtered lines")
    assert lines and all("v2" in line for line in lines), lines[:5]
    page.shot("04-ready-after-rebuild-search")


def test_a_failed_build_shows_failed_with_the_dockerfile_line(running, browser):
    root, watch, url = running
    page = Page(browser, url)
    page.wait_state("box", "ready", 30)
    dockerfile = root / "services/box/Dockerfile"
    good = dockerfile.read_text()
    lines = good.splitlines()
    lines.insert(3, 'RUN ["/bin/sh","-c","echo broken step >&2; exit 3"]')
    dockerfile.write_text("\n".join(lines) + "\n")
    problem = watch.wait("problem", timeout=120)
    assert problem["file"] == "services/box/Dockerfile" and problem["line"] == 4
    page.wait_state("box", "failed", 60)
    text = page.js("return document.querySelector('.card[data-service=box] .ptext').innerText")
    assert text.startswith("services/box/Dockerfile:4: "), text
    assert page.js("return !document.querySelector('.card[data-service=box] button.copy')"
                   ".disabled")
    page.shot("05-build-failed")

    mark = watch.mark()
    dockerfile.write_text(good)
    watch.wait("reload.finished", after=mark, ok=True, timeout=180)
    page.wait_state("box", "ready", 30)
    assert "resolved: services/box/Dockerfile:4" in page.card("box")
    page.shot("06-fixed")


def test_the_rebuild_button_reloads_the_service(running, browser):
    _root, watch, url = running
    page = Page(browser, url)
    page.wait_state("box", "ready", 30)
    mark = watch.mark()
    page.click("box", "trigger")
    started = watch.wait("reload.started", after=mark, timeout=60)
    assert started["mode"] == "build"  # a full reload, although nothing changed
    watch.wait("rollout.ready", after=mark, timeout=180)
    page.wait_state("box", "ready", 30)
    assert "building" in page.states_seen("box")
    assert watch.since(mark, "deploy.patched"), "the trigger did not redeploy"
    page.shot("07-after-rebuild-button")


def test_pause_and_resume_from_the_page(running, browser):
    root, watch, url = running
    page = Page(browser, url)
    page.wait_state("box", "ready", 30)
    mark = watch.mark()
    page.click("box", "pause")
    watch.wait("service.paused", after=mark, timeout=30)
    page.wait_state("box", "paused", 30)
    page.shot("08-paused")
    (root / "services/box/src/message.txt").write_text("while paused\n")
    time.sleep(1.5)  # 30 quiet periods
    assert watch.since(mark, "reload.started") == []
    page.click("box", "pause")  # now labelled Resume
    watch.wait("service.resumed", after=mark, timeout=30)
    # the change kept while paused is reloaded on resume (positive control: the loop is alive)
    watch.wait("reload.finished", after=mark, ok=True, timeout=120)
    page.wait_state("box", "ready", 30)
    wait_for(lambda: any("while paused" in line for line in page.log_lines()), 30,
             what="the change made while paused")

"""Fixtures for the frontend: its production build, its standalone server, stand-in upstreams."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.options import Options as ChromeOptions
from selenium.webdriver.chrome.service import Service as ChromeService
from selenium.webdriver.remote.webdriver import WebDriver

from tests.ports import free_port
from tests.services.frontend.frontend_harness import (
    BACKEND_DIR,
    NODE_ENV_BASE,
    VENV_PYTHON,
    FakeChatbot,
    FrontendBuild,
    FrontendServer,
    LuminaStack,
    ManagedProcess,
    StubUpstream,
    backend_import_error,
    ensure_frontend_build,
    start_real_backend,
)

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
# Without the background/component/sync switches Chromium contacts Google hosts on its own;
# the tests must stay on loopback, so every host name except loopback also fails to resolve.
CHROMIUM_FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--no-default-browser-check", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--disable-domain-reliability",
    "--disable-client-side-phishing-detection", "--disable-default-apps",
    "--disable-features=OptimizationHints,MediaRouter,Translate",
    "--disable-dev-shm-usage", "--window-size=1280,900", "--lang=en-US",
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE localhost, EXCLUDE 127.0.0.1",
)


@pytest.fixture(scope="session")
def frontend_build() -> FrontendBuild:
    return ensure_frontend_build()


@pytest.fixture(scope="session")
def run_dir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="lumina-frontend-tests-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def start_frontend(frontend_build: FrontendBuild,
                   run_dir: Path) -> Iterator[Callable[[str | None], FrontendServer]]:
    """Start the built standalone server against a backend URL (None leaves it unset).

    Servers live until the end of the test that started them.
    """
    started: list[ManagedProcess] = []

    def start(api_url: str | None) -> FrontendServer:
        port = free_port()
        env = {**os.environ, **NODE_ENV_BASE, "NODE_ENV": "production", "PORT": str(port),
               "HOSTNAME": "127.0.0.1"}
        env.pop("NEXT_PUBLIC_API_URL", None)
        if api_url is not None:
            env["NEXT_PUBLIC_API_URL"] = api_url
        proc = ManagedProcess(f"frontend-{port}", ["node", "server.js"],
                              cwd=frontend_build.standalone_dir, env=env, log_dir=run_dir)
        started.append(proc)
        url = f"http://127.0.0.1:{port}"
        proc.wait_http_ok(f"{url}/", timeout=60)
        return FrontendServer(url=url, process=proc)

    yield start
    for proc in started:
        proc.stop()


@pytest.fixture
def stub_upstream() -> Iterator[Callable[[str], StubUpstream]]:
    made: list[StubUpstream] = []

    def make(name: str) -> StubUpstream:
        upstream = StubUpstream(name).start()
        made.append(upstream)
        return upstream

    yield make
    for upstream in made:
        upstream.stop()


@pytest.fixture(scope="session")
def lumina_stack(frontend_build: FrontendBuild, run_dir: Path) -> Iterator[LuminaStack]:
    problem = backend_import_error()
    if problem:
        raise AssertionError(
            f"the real backend cannot start from {BACKEND_DIR} with {VENV_PYTHON}: {problem}. "
            "Install it with: .venv/bin/pip install -r services/backend/requirements.txt"
        )
    chatbot = FakeChatbot().start()
    data_dir = run_dir / "backend-data"
    data_dir.mkdir()
    processes: list[ManagedProcess] = []
    try:
        backend_url, backend = start_real_backend(chatbot.url, data_dir, run_dir)
        processes.append(backend)
        chatbot.backend_url = backend_url
        port = free_port()
        env = {**os.environ, **NODE_ENV_BASE, "NODE_ENV": "production", "PORT": str(port),
               "HOSTNAME": "127.0.0.1", "NEXT_PUBLIC_API_URL": backend_url}
        frontend = ManagedProcess("frontend-stack", ["node", "server.js"],
                                  cwd=frontend_build.standalone_dir, env=env, log_dir=run_dir)
        processes.append(frontend)
        frontend_url = f"http://127.0.0.1:{port}"
        frontend.wait_http_ok(f"{frontend_url}/", timeout=60)
        yield LuminaStack(frontend_url, backend_url, chatbot)
    finally:
        for proc in reversed(processes):
            proc.stop()
        chatbot.stop()


@pytest.fixture(scope="session")
def browser(run_dir: Path) -> Iterator[WebDriver]:
    """Debian's headless Chromium driven through its chromedriver (no Selenium Manager)."""
    for binary in (CHROMIUM, CHROMEDRIVER):
        if not Path(binary).is_file():
            raise AssertionError(
                f"{binary} is missing: apt-get install -y chromium chromium-driver"
            )
    options = ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tempfile.mkdtemp(prefix='chromium-', dir=run_dir)}")
    service = ChromeService(executable_path=CHROMEDRIVER,
                            log_output=str(run_dir / "chromedriver.log"))
    driver = webdriver.Chrome(options=options, service=service)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()

from tests.services.frontend.conftest import browser, run_dir  # noqa: F401

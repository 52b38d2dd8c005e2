from tests.kube_standin.fixtures import busybox_image, standin, standin_docker, standin_factory  # noqa: F401
from tests.services.frontend.conftest import browser, run_dir  # noqa: F401

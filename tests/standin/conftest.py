from tests.kube_standin.fixtures import (  # noqa: F401
    busybox_image,
    standin,
    standin_docker,
    standin_factory,
)

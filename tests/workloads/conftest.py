from tests.kube_standin.fixtures import busybox_image, standin, standin_docker, standin_factory  # noqa: F401

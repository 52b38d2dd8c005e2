from tests.kube_standin.fixtures import standin, standin_docker, standin_factory  # noqa: F401

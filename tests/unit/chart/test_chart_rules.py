"""The seed's validation rules and the dev-loop safety settings, as the chart enforces them."""

from __future__ import annotations

import pytest

DEPLOYMENTS = ["frontend", "backend", "chatbot"]
SERVICES = {
    "frontend-service": "frontend",
    "backend-service": "backend",
    "chatbot-service": "chatbot",
}
JWT = "--set=backend.secrets.jwtSecretKey=test-only-jwt-key"


def pod_spec(rendered, deployment: str) -> dict:
    return rendered.get("Deployment", deployment)["spec"]["template"]["spec"]


# --- Rules that hold in the default render ------------------------------------------------------


@pytest.mark.parametrize("deployment", DEPLOYMENTS)
def test_every_container_runs_as_non_root_10001(rendered, deployment: str) -> None:
    pod = pod_spec(rendered, deployment)["securityContext"]
    assert pod["runAsNonRoot"] is True
    assert (pod["runAsUser"], pod["runAsGroup"], pod["fsGroup"]) == (10001, 10001, 10001)
    container = rendered.container(deployment)["securityContext"]
    assert container["runAsNonRoot"] is True
    assert (container["runAsUser"], container["runAsGroup"]) == (10001, 10001)
    assert container["allowPrivilegeEscalation"] is False


@pytest.mark.parametrize("deployment", DEPLOYMENTS)
def test_every_container_has_cpu_and_memory_limits(rendered, deployment: str) -> None:
    limits = rendered.container(deployment)["resources"]["limits"]
    assert limits.get("cpu") and limits.get("memory")


def test_only_the_frontend_service_is_a_node_port(rendered) -> None:
    types = {svc["metadata"]["name"]: svc["spec"]["type"] for svc in rendered.of_kind("Service")}
    assert types == {
        "frontend-service": "NodePort",
        "backend-service": "ClusterIP",
        "chatbot-service": "ClusterIP",
    }


@pytest.mark.parametrize("service", sorted(SERVICES))
def test_service_selects_only_its_own_pods(rendered, service: str) -> None:
    """The seed's name+instance selector would match all three Deployments' pods."""
    selector = rendered.get("Service", service)["spec"]["selector"]
    assert set(selector) == {
        "app.kubernetes.io/name",
        "app.kubernetes.io/instance",
        "app.kubernetes.io/component",
    }
    selected = [
        deployment
        for deployment in DEPLOYMENTS
        if selector.items()
        <= rendered.get("Deployment", deployment)["spec"]["template"]["metadata"]["labels"].items()
    ]
    assert selected == [SERVICES[service]]


@pytest.mark.parametrize("deployment", DEPLOYMENTS)
def test_deployment_selector_is_name_instance_component(rendered, deployment: str) -> None:
    spec = rendered.get("Deployment", deployment)["spec"]
    assert spec["selector"]["matchLabels"] == {
        "app.kubernetes.io/name": "lumina-todo",
        "app.kubernetes.io/instance": "lumina",
        "app.kubernetes.io/component": deployment,
    }


def test_backend_uses_recreate_so_two_pods_never_share_the_sqlite_claim(rendered) -> None:
    assert rendered.get("Deployment", "backend")["spec"]["strategy"] == {"type": "Recreate"}


def test_pvc_survives_helm_uninstall(rendered) -> None:
    pvc = rendered.get("PersistentVolumeClaim", "backend-sqlite-pvc")
    assert pvc["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"


@pytest.mark.parametrize("deployment", DEPLOYMENTS)
def test_images_are_pulled_only_if_not_present(rendered, deployment: str) -> None:
    assert rendered.container(deployment)["imagePullPolicy"] == "IfNotPresent"


# --- Values a user (or devloop) changes ---------------------------------------------------------


def test_image_repository_and_tag_are_values(helm) -> None:
    manifests = helm.render(
        "--set", "backend.image.tag=dl-0123abcd", "--set", "chatbot.image.repository=reg/bot"
    )
    assert manifests.container("backend")["image"] == "lumina-backend:dl-0123abcd"
    assert manifests.container("chatbot")["image"] == "reg/bot:latest"
    assert manifests.container("frontend")["image"] == "lumina-frontend:latest"


def test_namespace_object_can_be_left_to_helm_create_namespace(helm) -> None:
    manifests = helm.render("--set", "namespace.create=false")
    assert manifests.of_kind("Namespace") == []
    assert {obj["metadata"]["namespace"] for obj in manifests} == {"lumina"}


def test_storage_class_is_a_value_and_empty_means_cluster_default(helm) -> None:
    fast = helm.render("--set", "backend.persistence.storageClassName=fast")
    assert fast.get("PersistentVolumeClaim", "backend-sqlite-pvc")["spec"]["storageClassName"] == (
        "fast"
    )
    default = helm.render("--set", "backend.persistence.storageClassName=")
    assert (
        "storageClassName" not in default.get("PersistentVolumeClaim", "backend-sqlite-pvc")["spec"]
    )


def test_changing_config_rolls_the_pods(helm, rendered) -> None:
    changed = helm.render("--set", "backend.config.environment=staging")

    def checksum(manifests) -> str:
        template = manifests.get("Deployment", "backend")["spec"]["template"]
        return template["metadata"]["annotations"]["checksum/config"]

    assert checksum(changed) != checksum(rendered)


# --- Failures: helm exits non-zero with a message that says what to do --------------------------

FAILURES = {
    "backend-replicas-2": (
        [JWT, "--set=backend.replicas=2"],
        ["backend.replicas must be 1", "SQLite", "got 2"],
    ),
    "backend-replicas-0": ([JWT, "--set=backend.replicas=0"], ["backend.replicas must be 1"]),
    "missing-jwt-secret": (
        [],
        [
            "backend.secrets.jwtSecretKey is required",
            "--set backend.secrets.jwtSecretKey=...",
            "-f secrets.yaml",
            "never commit",
        ],
    ),
    "empty-jwt-secret": (
        ["--set=backend.secrets.jwtSecretKey="],
        ["backend.secrets.jwtSecretKey is required"],
    ),
    "placeholder-jwt-secret": (
        ["--set=backend.secrets.jwtSecretKey=REPLACE_ME"],
        ["still the REPLACE_ME placeholder"],
    ),
    "root-user": (
        [JWT, "--set=securityContext.runAsUser=0"],
        ["securityContext.runAsUser must be a non-root id"],
    ),
    "root-fsgroup": (
        [JWT, "--set=securityContext.fsGroup=0"],
        ["securityContext.fsGroup must be a non-root id"],
    ),
    "frontend-no-cpu-limit": (
        [JWT, "--set=frontend.resources.limits.cpu=null"],
        ["frontend.resources.limits.cpu is required", "resource limits"],
    ),
    "backend-no-memory-limit": (
        [JWT, "--set=backend.resources.limits.memory=null"],
        ["backend.resources.limits.memory is required"],
    ),
    "chatbot-no-resources": (
        [JWT, "--set=chatbot.resources=null"],
        ["chatbot.resources.limits.cpu is required"],
    ),
    "backend-nodeport": (
        [JWT, "--set=backend.service.type=NodePort"],
        ["backend.service.type must be ClusterIP", "only the frontend"],
    ),
    "chatbot-loadbalancer": (
        [JWT, "--set=chatbot.service.type=LoadBalancer"],
        ["chatbot.service.type must be ClusterIP"],
    ),
    "frontend-loadbalancer": (
        [JWT, "--set=frontend.service.type=LoadBalancer"],
        ["frontend.service.type must be NodePort or ClusterIP"],
    ),
    "misspelled-value": ([JWT, "--set=backend.replica=2"], ["'replica' not allowed"]),
}


@pytest.mark.parametrize(("args", "messages"), FAILURES.values(), ids=FAILURES.keys())
def test_invalid_values_fail_rendering_with_a_clear_message(
    helm, args: list[str], messages: list[str]
) -> None:
    result = helm.template(*args)
    assert result.returncode != 0
    assert result.stdout == ""
    for message in messages:
        assert message in result.stderr


def test_other_namespace_fails_because_the_service_urls_name_lumina(helm) -> None:
    result = helm.template(JWT, namespace="default")
    assert result.returncode != 0
    assert 'installs into namespace "lumina" only' in result.stderr
    assert "--namespace lumina" in result.stderr


def test_the_frontend_compiling_its_first_page_is_not_killed_by_liveness(rendered) -> None:
    """`next dev` compiles / on its first request; under the 500m CPU limit on a busy machine
    that outlasted liveness (3 misses, killed at 75 s: CrashLoopBackOff, exit 0, forever). A
    startup probe on the same path holds liveness and readiness for longer than that."""
    container = rendered.container("frontend")
    startup, liveness = container["startupProbe"], container["livenessProbe"]
    assert startup["httpGet"] == liveness["httpGet"]
    liveness_kill = liveness["initialDelaySeconds"] + 2 * liveness["periodSeconds"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 2 * liveness_kill
    # the others answer at once: the seed's two probes only
    for deployment in ("backend", "chatbot"):
        assert "startupProbe" not in rendered.container(deployment)

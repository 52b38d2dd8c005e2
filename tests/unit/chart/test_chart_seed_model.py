"""Every row of the seed's data model tables, asserted against the rendered chart.

The tables below are copied literally from the seed (shared/seed/000_30aefd1b4f05e2e5.txt,
"Data Model: Kubernetes Resources"); the seed lives outside the repo, so it is not read here.
"""

from __future__ import annotations

import base64

import pytest

# --- Seed tables (copied literally) ------------------------------------------------------------

NAMESPACE_LABELS = {
    "app.kubernetes.io/name": "lumina-todo",
    "app.kubernetes.io/managed-by": "helm",
}

# "#### Deployment" tables: (deployment, field, value).
DEPLOYMENT_ROWS = [
    ("frontend", "name", "frontend"),
    ("frontend", "replicas", 1),
    ("frontend", "image", "lumina-frontend:latest"),
    ("frontend", "containerPort", 3000),
    ("frontend", "resources.requests.cpu", "250m"),
    ("frontend", "resources.requests.memory", "256Mi"),
    ("frontend", "resources.limits.cpu", "500m"),
    ("frontend", "resources.limits.memory", "512Mi"),
    ("backend", "name", "backend"),
    ("backend", "replicas", 1),
    ("backend", "image", "lumina-backend:latest"),
    ("backend", "containerPort", 8000),
    ("backend", "resources.requests.cpu", "250m"),
    ("backend", "resources.requests.memory", "256Mi"),
    ("backend", "resources.limits.cpu", "500m"),
    ("backend", "resources.limits.memory", "512Mi"),
    ("chatbot", "name", "chatbot"),
    ("chatbot", "replicas", 1),
    ("chatbot", "image", "lumina-chatbot:latest"),
    ("chatbot", "containerPort", 8001),
    ("chatbot", "resources.requests.cpu", "250m"),
    ("chatbot", "resources.requests.memory", "256Mi"),
    ("chatbot", "resources.limits.cpu", "500m"),
    ("chatbot", "resources.limits.memory", "512Mi"),
]

# "**Environment Variables**" tables: (deployment, name, source).
ENV_ROWS = [
    ("frontend", "NEXT_PUBLIC_API_URL", "ConfigMap"),
    ("frontend", "NODE_ENV", "ConfigMap"),
    ("backend", "DATABASE_URL", "ConfigMap"),
    ("backend", "CHATBOT_URL", "ConfigMap"),
    ("backend", "ENVIRONMENT", "ConfigMap"),
    ("backend", "CORS_ORIGINS", "ConfigMap"),
    ("backend", "JWT_SECRET_KEY", "Secret"),
    ("backend", "SMTP_USER", "Secret"),
    ("backend", "SMTP_PASS", "Secret"),
    ("chatbot", "MCP_SERVER_PORT", "ConfigMap"),
    ("chatbot", "MCP_SERVER_HOST", "ConfigMap"),
    ("chatbot", "ENVIRONMENT", "ConfigMap"),
    ("chatbot", "BACKEND_URL", "ConfigMap"),
    ("chatbot", "OPENROUTER_API_KEY", "Secret"),
]

# "**Probes**" tables: (deployment, probe, path, port, initial delay s, period s).
PROBE_ROWS = [
    ("frontend", "liveness", "/", 3000, 15, 30),
    ("frontend", "readiness", "/", 3000, 5, 10),
    ("backend", "liveness", "/api/health", 8000, 15, 30),
    ("backend", "readiness", "/api/health", 8000, 5, 10),
    ("chatbot", "liveness", "/health", 8001, 15, 30),
    ("chatbot", "readiness", "/health", 8001, 5, 10),
]

# "**Volume Mounts**" table: (deployment, volume name, mount path).
VOLUME_MOUNT_ROWS = [
    ("backend", "sqlite-data", "/app/data"),
]

# "#### Service" tables: (service, field, value).
SERVICE_ROWS = [
    ("frontend-service", "name", "frontend-service"),
    ("frontend-service", "type", "NodePort"),
    ("frontend-service", "port", 3000),
    ("frontend-service", "targetPort", 3000),
    ("frontend-service", "nodePort", 30080),
    ("backend-service", "name", "backend-service"),
    ("backend-service", "type", "ClusterIP"),
    ("backend-service", "port", 8000),
    ("backend-service", "targetPort", 8000),
    ("chatbot-service", "name", "chatbot-service"),
    ("chatbot-service", "type", "ClusterIP"),
    ("chatbot-service", "port", 8001),
    ("chatbot-service", "targetPort", 8001),
]

# "#### ConfigMap" tables: (configmap, key, value).
CONFIGMAP_ROWS = [
    (
        "frontend-config",
        "NEXT_PUBLIC_API_URL",
        "http://backend-service.lumina.svc.cluster.local:8000",
    ),
    ("frontend-config", "NODE_ENV", "production"),
    ("backend-config", "DATABASE_URL", "sqlite:///app/data/lumina.db"),
    ("backend-config", "CHATBOT_URL", "http://chatbot-service.lumina.svc.cluster.local:8001"),
    ("backend-config", "ENVIRONMENT", "production"),
    ("backend-config", "CORS_ORIGINS", "http://frontend-service.lumina.svc.cluster.local:3000"),
    ("chatbot-config", "MCP_SERVER_PORT", "8001"),
    ("chatbot-config", "MCP_SERVER_HOST", "0.0.0.0"),
    ("chatbot-config", "ENVIRONMENT", "production"),
    ("chatbot-config", "BACKEND_URL", "http://backend-service.lumina.svc.cluster.local:8000"),
]

# "#### Secret" tables: (secret, key, template value path).
SECRET_ROWS = [
    ("backend-secrets", "JWT_SECRET_KEY", ".Values.backend.secrets.jwtSecretKey"),
    ("backend-secrets", "SMTP_USER", ".Values.backend.secrets.smtpUser"),
    ("backend-secrets", "SMTP_PASS", ".Values.backend.secrets.smtpPass"),
    ("chatbot-secrets", "OPENROUTER_API_KEY", ".Values.chatbot.secrets.openrouterApiKey"),
]

# "#### PersistentVolumeClaim" table: (field, value).
PVC_ROWS = [
    ("name", "backend-sqlite-pvc"),
    ("accessModes", "ReadWriteOnce"),
    ("storage", "1Gi"),
    ("storageClassName", "standard"),
]

# "Labels and Selectors": the labels every resource carries (component filled per object).
LABELS = {
    "app.kubernetes.io/name": "lumina-todo",  # {{ .Chart.Name }}
    "app.kubernetes.io/instance": "lumina",  # {{ .Release.Name }}
    "app.kubernetes.io/version": "0.1.0",  # {{ .Chart.AppVersion }}
    "app.kubernetes.io/part-of": "lumina-todo",
    "app.kubernetes.io/managed-by": "helm",
}

# The resource relationship diagram: every object of the namespace, with its component.
OBJECTS = {
    ("Deployment", "frontend"): "frontend",
    ("Deployment", "backend"): "backend",
    ("Deployment", "chatbot"): "chatbot",
    ("Service", "frontend-service"): "frontend",
    ("Service", "backend-service"): "backend",
    ("Service", "chatbot-service"): "chatbot",
    ("ConfigMap", "frontend-config"): "frontend",
    ("ConfigMap", "backend-config"): "backend",
    ("ConfigMap", "chatbot-config"): "chatbot",
    ("Secret", "backend-secrets"): "backend",
    ("Secret", "chatbot-secrets"): "chatbot",
    ("PersistentVolumeClaim", "backend-sqlite-pvc"): "backend",
}

COMPONENT_OF_DEPLOYMENT = {"frontend": "frontend", "backend": "backend", "chatbot": "chatbot"}

# --- Helpers -----------------------------------------------------------------------------------


def dig(obj: dict, dotted: str) -> object:
    for part in dotted.split("."):
        obj = obj[part]
    return obj


def row_ids(rows: list[tuple]) -> list[str]:
    """Readable test ids: the first three cells of each seed row."""
    return ["-".join(str(cell) for cell in row[:3]) for row in rows]


# --- Tests -------------------------------------------------------------------------------------


def test_renders_exactly_the_seed_objects(rendered) -> None:
    found = {(obj["kind"], obj["metadata"]["name"]) for obj in rendered}
    assert found == {("Namespace", "lumina"), *OBJECTS}


def test_namespace_has_the_seed_labels(rendered) -> None:
    namespace = rendered.get("Namespace", "lumina")
    assert namespace["apiVersion"] == "v1"
    assert namespace["metadata"]["labels"] == NAMESPACE_LABELS


@pytest.mark.parametrize(("kind", "name"), sorted(OBJECTS))
def test_object_is_explicitly_in_namespace_lumina(rendered, kind: str, name: str) -> None:
    assert rendered.get(kind, name)["metadata"]["namespace"] == "lumina"


@pytest.mark.parametrize(("kind", "name"), sorted(OBJECTS))
def test_object_carries_the_seed_labels(rendered, kind: str, name: str) -> None:
    expected = {**LABELS, "app.kubernetes.io/component": OBJECTS[(kind, name)]}
    assert rendered.get(kind, name)["metadata"]["labels"] == expected


@pytest.mark.parametrize(
    ("deployment", "field", "value"), DEPLOYMENT_ROWS, ids=row_ids(DEPLOYMENT_ROWS)
)
def test_deployment_row(rendered, deployment: str, field: str, value: object) -> None:
    obj = rendered.get("Deployment", deployment)
    container = rendered.container(deployment)
    if field == "name":
        actual = obj["metadata"]["name"]
    elif field == "replicas":
        actual = obj["spec"]["replicas"]
    elif field == "image":
        actual = container["image"]
    elif field == "containerPort":
        (port,) = container["ports"]
        actual = port["containerPort"]
    else:
        actual = dig(container, field)
    assert actual == value


@pytest.mark.parametrize("deployment", sorted(COMPONENT_OF_DEPLOYMENT))
def test_container_is_named_like_its_deployment(rendered, deployment: str) -> None:
    assert rendered.container(deployment)["name"] == deployment


@pytest.mark.parametrize("deployment", sorted(COMPONENT_OF_DEPLOYMENT))
def test_pod_template_carries_the_seed_labels(rendered, deployment: str) -> None:
    template = rendered.get("Deployment", deployment)["spec"]["template"]
    expected = {**LABELS, "app.kubernetes.io/component": COMPONENT_OF_DEPLOYMENT[deployment]}
    assert template["metadata"]["labels"] == expected


@pytest.mark.parametrize(("deployment", "name", "source"), ENV_ROWS, ids=row_ids(ENV_ROWS))
def test_env_row(rendered, deployment: str, name: str, source: str) -> None:
    env = {entry["name"]: entry for entry in rendered.container(deployment).get("env", [])}
    assert name in env, f"{deployment} has no env var {name}"
    if source == "ConfigMap":
        ref = env[name]["valueFrom"]["configMapKeyRef"]
        assert ref == {"name": f"{deployment}-config", "key": name}
    else:
        ref = env[name]["valueFrom"]["secretKeyRef"]
        assert ref == {"name": f"{deployment}-secrets", "key": name}


@pytest.mark.parametrize("deployment", sorted(COMPONENT_OF_DEPLOYMENT))
def test_env_is_exactly_the_seed_variables(rendered, deployment: str) -> None:
    names = [entry["name"] for entry in rendered.container(deployment)["env"]]
    assert sorted(names) == sorted(row[1] for row in ENV_ROWS if row[0] == deployment)


@pytest.mark.parametrize(
    ("deployment", "probe", "path", "port", "delay", "period"), PROBE_ROWS, ids=row_ids(PROBE_ROWS)
)
def test_probe_row(
    rendered, deployment: str, probe: str, path: str, port: int, delay: int, period: int
) -> None:
    spec = rendered.container(deployment)[f"{probe}Probe"]
    assert spec["httpGet"] == {"path": path, "port": port}
    assert spec["initialDelaySeconds"] == delay
    assert spec["periodSeconds"] == period


@pytest.mark.parametrize(
    ("deployment", "volume", "path"), VOLUME_MOUNT_ROWS, ids=row_ids(VOLUME_MOUNT_ROWS)
)
def test_volume_mount_row(rendered, deployment: str, volume: str, path: str) -> None:
    mounts = rendered.container(deployment)["volumeMounts"]
    assert {"name": volume, "mountPath": path} in mounts
    volumes = rendered.get("Deployment", deployment)["spec"]["template"]["spec"]["volumes"]
    assert {"name": volume, "persistentVolumeClaim": {"claimName": "backend-sqlite-pvc"}} in volumes


@pytest.mark.parametrize(("service", "field", "value"), SERVICE_ROWS, ids=row_ids(SERVICE_ROWS))
def test_service_row(rendered, service: str, field: str, value: object) -> None:
    obj = rendered.get("Service", service)
    if field == "name":
        actual = obj["metadata"]["name"]
    elif field == "type":
        actual = obj["spec"]["type"]
    else:
        (port,) = obj["spec"]["ports"]
        actual = port.get(field)
    assert actual == value


@pytest.mark.parametrize(("configmap", "key", "value"), CONFIGMAP_ROWS, ids=row_ids(CONFIGMAP_ROWS))
def test_configmap_row(rendered, configmap: str, key: str, value: str) -> None:
    assert rendered.get("ConfigMap", configmap)["data"][key] == value


@pytest.mark.parametrize("configmap", ["frontend-config", "backend-config", "chatbot-config"])
def test_configmap_has_exactly_the_seed_keys(rendered, configmap: str) -> None:
    keys = set(rendered.get("ConfigMap", configmap)["data"])
    assert keys == {row[1] for row in CONFIGMAP_ROWS if row[0] == configmap}


@pytest.fixture(scope="module")
def rendered_with_secrets(helm):
    """A render with a distinct value at each of the seed's secret value paths."""
    args = []
    for _, key, path in SECRET_ROWS:
        args += ["--set", f"{path.removeprefix('.Values.')}=value-of-{key}"]
    return helm.render(*args)


@pytest.mark.parametrize(("secret", "key", "path"), SECRET_ROWS, ids=row_ids(SECRET_ROWS))
def test_secret_row(rendered_with_secrets, secret: str, key: str, path: str) -> None:
    obj = rendered_with_secrets.get("Secret", secret)
    assert obj["type"] == "Opaque"
    assert base64.b64decode(obj["data"][key]).decode() == f"value-of-{key}"


@pytest.mark.parametrize("secret", ["backend-secrets", "chatbot-secrets"])
def test_secret_has_exactly_the_seed_keys(rendered, secret: str) -> None:
    assert set(rendered.get("Secret", secret)["data"]) == {
        row[1] for row in SECRET_ROWS if row[0] == secret
    }


@pytest.mark.parametrize(("field", "value"), PVC_ROWS, ids=[row[0] for row in PVC_ROWS])
def test_pvc_row(rendered, field: str, value: str) -> None:
    obj = rendered.get("PersistentVolumeClaim", "backend-sqlite-pvc")
    actual = {
        "name": obj["metadata"]["name"],
        "accessModes": obj["spec"]["accessModes"],
        "storage": obj["spec"]["resources"]["requests"]["storage"],
        "storageClassName": obj["spec"].get("storageClassName"),
    }[field]
    assert actual == ([value] if field == "accessModes" else value)

"""`devloop down` (issue 13) on the stand-in: it removes what devloop installed or patched,
keeps every PersistentVolumeClaim (and its data, read again after `down` then `watch`) and
leaves alone what it did not create.

The project is a one-service chart in the test's own directory: a busybox Deployment mounting a
claim at /data, its ConfigMap, Secret and Service. Real `devloop` processes, real helm.
"""

from __future__ import annotations

import json
import subprocess
import sys
from importlib import resources
from pathlib import Path

import jsonschema
import pytest
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException
from kubernetes.stream import stream

from tests.conftest import busybox_context, devloop_env
from tests.kube_standin.fixtures import wait_for
from tests.watchproc import Watch

REPO = Path(__file__).resolve().parents[2]
NS = "lumina"
CHART = {
    "Chart.yaml": "apiVersion: v2\nname: data\nversion: 0.1.0\n",
    "values.yaml": "claim: true\n",
    "templates/config.yaml": (
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: data-config}\ndata: {MODE: dev}\n"
        "---\napiVersion: v1\nkind: Secret\nmetadata: {name: data-secret}\n"
        "stringData: {TOKEN: not-a-real-one}\n"),
    "templates/claim.yaml": (
        "{{- if eq (toString .Values.claim) \"true\" }}\n"
        "apiVersion: v1\nkind: PersistentVolumeClaim\n"
        "metadata: {name: data-claim}\nspec:\n  accessModes: [ReadWriteOnce]\n"
        "  resources: {requests: {storage: 1Mi}}\n{{- end }}\n"),
    "templates/extra.yaml": (  # kinds that belong to no service: down removes them too
        "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {name: data}\nspec:\n"
        "  rules: [{http: {paths: [{path: /, pathType: Prefix,"
        " backend: {service: {name: data, port: {number: 80}}}}]}}]\n"
        "---\napiVersion: rbac.authorization.k8s.io/v1\nkind: Role\n"
        "metadata: {name: data-reader}\n"
        "rules: [{apiGroups: [''], resources: [configmaps], verbs: [get]}]\n"),
    "templates/service.yaml": (
        "apiVersion: v1\nkind: Service\nmetadata: {name: data}\nspec:\n"
        "  selector: {app: data}\n  ports: [{port: 80, targetPort: 8080}]\n"),
    "templates/deployment.yaml": """\
apiVersion: apps/v1
kind: Deployment
metadata: {name: data}
spec:
  replicas: 1
  strategy: {type: Recreate}
  selector: {matchLabels: {app: data}}
  template:
    metadata: {labels: {app: data}}
    spec:
      containers:
        - name: data
          image: placeholder:none
          envFrom: [{configMapRef: {name: data-config}}]
          env: [{name: TOKEN, valueFrom: {secretKeyRef: {name: data-secret, key: TOKEN}}}]
          {{- if eq (toString .Values.claim) \"true\" }}
          volumeMounts: [{name: db, mountPath: /data}]
          {{- end }}
      {{- if eq (toString .Values.claim) \"true\" }}
      volumes: [{name: db, persistentVolumeClaim: {claimName: data-claim}}]
      {{- end }}
""",
}


def make_project(root: Path, image_prefix: str, claim: bool = True) -> Path:
    busybox_context(root / "services/data", {"src/app.txt": "v1\n"},
                    cmd='["/bin/sh","-c","echo started; while true; do sleep 1; done"]')
    for name, text in CHART.items():
        (root / "chart" / name).parent.mkdir(parents=True, exist_ok=True)
        (root / "chart" / name).write_text(text)
    (root / "devloop.yaml").write_text(
        f"version: 1\nnamespace: {NS}\nrollout_timeout_s: 90\n"
        f"chart: {{path: chart, release: data, set: {{claim: '{str(claim).lower()}'}}}}\n"
        f"services:\n  data:\n    context: services/data\n    image: {image_prefix}-data\n"
        "    live_update: false\n")
    return root


def devloop(root: Path, kubeconfig: Path, *args: str) -> tuple[int, list[dict]]:
    env = devloop_env(KUBECONFIG=str(kubeconfig), XDG_CACHE_HOME=str(root.parent / "cache"),
                      HOME=str(root.parent), DEVLOOP_HELM=str(REPO / ".tools/bin/helm"))
    done = subprocess.run([sys.executable, "-m", "devloop.cli", *args, "-o", "json"], cwd=root,
                          env=env, capture_output=True, text=True, timeout=300)
    events = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    if done.stderr.strip():  # shown by the assertions that print the events
        events.append({"type": "stderr", "text": done.stderr[-3000:]})
    return done.returncode, events


def the_pod(core: k8s.CoreV1Api) -> str:
    def running() -> str | None:
        pods = [p for p in core.list_namespaced_pod(NS, label_selector="app=data").items
                if p.metadata.deletion_timestamp is None and p.status.phase == "Running"]
        return pods[0].metadata.name if len(pods) == 1 else None

    return wait_for(running, 90, what="one running pod")


def sh(core: k8s.CoreV1Api, pod: str, command: str) -> str:
    return stream(core.connect_get_namespaced_pod_exec, pod, NS, command=["sh", "-c", command],
                  stderr=True, stdin=False, stdout=True, tty=False)


def exists(read, name: str) -> bool:
    try:
        read(name, NS)
        return True
    except ApiException as exc:
        if exc.status == 404:
            return False
        raise


def synced_project(standin, root: Path, image_prefix: str) -> Path:
    """A project without a claim, installed by `devloop sync`."""
    make_project(root, image_prefix, claim=False)
    code, events = devloop(root, standin.kubeconfig, "sync")
    assert code == 0, [e for e in events if e["type"] in ("error", "rollout.failed")]
    return root


@pytest.fixture
def project(tmp_path, image_prefix) -> Path:
    return make_project(tmp_path / "repo", image_prefix)


def test_down_keeps_the_claim_and_its_data_and_what_it_did_not_create(standin, project):
    core, apps = standin.core(), standin.apps()
    standin.create_namespace(NS)
    # made by hand before devloop: the chart's ConfigMap (devloop applies the chart's values to
    # it, which does not make it devloop's) and unrelated objects
    core.create_namespaced_config_map(NS, {"metadata": {"name": "data-config",
                                                        "labels": {"mine": "yes"}},
                                           "data": {"MODE": "dev"}})
    core.create_namespaced_config_map(NS, {"metadata": {"name": "user-notes"}})
    code, events = devloop(project, standin.kubeconfig, "sync")
    assert code == 0, [e for e in events if e["type"] in ("error", "rollout.failed",
                                                          "manifests.failed")]
    # another workload (not devloop's) uses the chart's Secret
    apps.create_namespaced_deployment(NS, {
        "metadata": {"name": "other"},
        "spec": {"selector": {"matchLabels": {"app": "other"}}, "replicas": 0,
                 "template": {"metadata": {"labels": {"app": "other"}}, "spec": {"containers": [{
                     "name": "other", "image": "none:none", "env": [{"name": "T", "valueFrom": {
                         "secretKeyRef": {"name": "data-secret", "key": "TOKEN"}}}]}]}}}})
    sh(core, the_pod(core), "echo 'todo: keep me' > /data/db.txt")
    claim_uid = core.read_namespaced_persistent_volume_claim("data-claim", NS).metadata.uid

    code, events = devloop(project, standin.kubeconfig, "down", "--namespace")
    assert code == 0, events[-3:]
    deleted = {e["object"] for e in events if e["type"] == "down.deleted"}
    kept = {e["object"]: e for e in events if e["type"] == "down.kept"}
    assert deleted == {"Deployment/data", "Service/data", "Ingress/data", "Role/data-reader"}
    assert kept["PersistentVolumeClaim/data-claim"]["command"] == (
        "kubectl --context devloop-standin --namespace lumina delete persistentvolumeclaim"
        " data-claim")
    assert kept["ConfigMap/data-config"]["reason"] == "not created by devloop"
    assert kept["Secret/data-secret"]["reason"] == "still used by deployment/other"
    assert "PersistentVolumeClaim/data-claim" in kept["Namespace/lumina"]["reason"]
    finished = next(e for e in events if e["type"] == "down.finished")
    assert finished["exit_code"] == 0
    schema = json.loads(resources.files("devloop").joinpath("schemas/event-v1.json").read_text())
    for event in events:
        jsonschema.validate(event, schema)
    assert not exists(apps.read_namespaced_deployment, "data")
    assert not exists(core.read_namespaced_service, "data")
    for read, name in ((core.read_namespaced_config_map, "data-config"),
                       (core.read_namespaced_config_map, "user-notes"),
                       (core.read_namespaced_secret, "data-secret"),
                       (apps.read_namespaced_deployment, "other"),
                       (core.read_namespaced_persistent_volume_claim, "data-claim")):
        assert exists(read, name), name
    assert core.read_namespaced_config_map("data-config", NS).metadata.labels == {"mine": "yes"}
    assert core.read_namespace(NS).status.phase == "Active"

    # after `down`, `watch` installs again and the new pod reads the old data
    watch = Watch(project, standin.kubeconfig,
                  extra_env={"DEVLOOP_HELM": str(REPO / ".tools/bin/helm")})
    try:
        watch.wait("rollout.ready", timeout=180, service="data")
        assert exists(standin.apps().read_namespaced_deployment, "data")
        assert exists(core.read_namespaced_service, "data")
        assert sh(core, the_pod(core), "cat /data/db.txt") == "todo: keep me\n"
        assert core.read_namespaced_persistent_volume_claim("data-claim", NS) \
            .metadata.uid == claim_uid
    finally:
        watch.stop()


def test_down_namespace_removes_a_namespace_holding_only_what_devloop_installed(
        standin, tmp_path, image_prefix):
    root = synced_project(standin, tmp_path / "repo", image_prefix)
    core = standin.core()
    assert core.read_namespace(NS).status.phase == "Active"

    code, events = devloop(root, standin.kubeconfig, "down", "-s", "data", "--namespace")
    assert code == 0, events
    assert [(e["object"], e["reason"]) for e in events if e["type"] == "down.kept"] == []
    deleted = [e["object"] for e in events if e["type"] == "down.deleted"]
    assert deleted == ["Deployment/data", "Ingress/data", "Role/data-reader", "Service/data",
                       "Secret/data-secret", "ConfigMap/data-config", "Namespace/lumina"]
    wait_for(lambda: not exists(lambda name, _ns: core.read_namespace(name), NS), 60,
             what="namespace gone")
    # positive control: without --namespace a second project's namespace stays
    root2 = synced_project(standin, tmp_path / "again", image_prefix)
    code, events = devloop(root2, standin.kubeconfig, "down")
    assert code == 0
    assert "Namespace/lumina" not in {e["object"] for e in events if e["type"] == "down.deleted"}
    assert core.read_namespace(NS).status.phase == "Active"


def test_down_exit_codes_follow_sync(tmp_path, image_prefix):
    root = make_project(tmp_path / "repo", image_prefix)
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: gone\n"
        "clusters: [{name: gone, cluster: {server: 'http://127.0.0.1:9'}}]\n"
        "contexts: [{name: gone, context: {cluster: gone, user: u}}]\n"
        "users: [{name: u, user: {}}]\n")
    code, events = devloop(root, kubeconfig, "down")
    assert code == 4
    assert any("127.0.0.1:9" in e.get("message", "") for e in events)
    code, _ = devloop(root, kubeconfig, "down", "-s", "nope")
    assert code == 2


WIDGETS = {  # a custom resource kind: devloop's code knows nothing of it
    "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
    "metadata": {"name": "widgets.example.com"},
    "spec": {"group": "example.com", "scope": "Namespaced",
             "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
             "versions": [{"name": "v1", "served": True, "storage": True,
                           "schema": {"openAPIV3Schema": {
                               "type": "object", "x-kubernetes-preserve-unknown-fields": True}}}]},
}


def test_down_namespace_keeps_a_namespace_holding_any_kind_devloop_did_not_make(
        standin, tmp_path, image_prefix):
    root = synced_project(standin, tmp_path / "repo", image_prefix)
    api = standin.api_client()
    # a person's objects of kinds the old fixed list of 13 kinds never looked at
    k8s.NetworkingV1Api(api).create_namespaced_ingress(NS, {
        "metadata": {"name": "web"}, "spec": {"rules": [{"host": "web.example", "http": {
            "paths": [{"path": "/", "pathType": "Prefix", "backend": {
                "service": {"name": "data", "port": {"number": 80}}}}]}}]}})
    k8s.RbacAuthorizationV1Api(api).create_namespaced_role(NS, {
        "metadata": {"name": "reader"},
        "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}]})
    k8s.AutoscalingV2Api(api).create_namespaced_horizontal_pod_autoscaler(NS, {
        "metadata": {"name": "data"}, "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "data"},
            "minReplicas": 1, "maxReplicas": 2}})
    k8s.ApiextensionsV1Api(api).create_custom_resource_definition(WIDGETS)
    custom = k8s.CustomObjectsApi(api)
    custom.create_namespaced_custom_object("example.com", "v1", NS, "widgets", {
        "apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w1"}})

    code, events = devloop(root, standin.kubeconfig, "down", "--namespace")
    assert code == 0, events
    deleted = {e["object"] for e in events if e["type"] == "down.deleted"}
    assert "Namespace/lumina" not in deleted and "Deployment/data" in deleted
    reason = next(e["reason"] for e in events
                  if e["type"] == "down.kept" and e["object"] == "Namespace/lumina")
    for ident in ("HorizontalPodAutoscaler/data", "Ingress/web", "Role/reader", "Widget/w1"):
        assert ident in reason, reason
    assert k8s.CoreV1Api(api).read_namespace(NS).status.phase == "Active"
    assert custom.get_namespaced_custom_object("example.com", "v1", NS, "widgets", "w1")
    assert k8s.NetworkingV1Api(api).read_namespaced_ingress("web", NS)

    # positive control: once the person's objects are gone, the namespace goes too
    custom.delete_namespaced_custom_object("example.com", "v1", NS, "widgets", "w1")
    k8s.NetworkingV1Api(api).delete_namespaced_ingress("web", NS)
    k8s.RbacAuthorizationV1Api(api).delete_namespaced_role("reader", NS)
    k8s.AutoscalingV2Api(api).delete_namespaced_horizontal_pod_autoscaler("data", NS)
    code, events = devloop(root, standin.kubeconfig, "down", "--namespace")
    assert code == 0, events
    assert "Namespace/lumina" in {e["object"] for e in events if e["type"] == "down.deleted"}, [
        e for e in events if e["type"].startswith("down")]


def test_down_namespace_keeps_the_namespace_when_discovery_of_a_group_fails(
        standin, tmp_path, image_prefix):
    root = synced_project(standin, tmp_path / "repo", image_prefix)
    k8s.ApiextensionsV1Api(standin.api_client()).create_custom_resource_definition(WIDGETS)
    # an aggregated API that is down hides what it serves: the namespace may hold anything
    standin.standin.faults.fail("GET", r"^/apis/example\.com/v1$", status=503, count=1000)

    code, events = devloop(root, standin.kubeconfig, "down", "--namespace")
    assert code == 0, events
    kept = {e["object"]: e["reason"] for e in events if e["type"] == "down.kept"}
    assert "cannot see everything" in kept["Namespace/lumina"]
    assert "/apis/example.com/v1" in kept["Namespace/lumina"]
    assert "Deployment/data" in {e["object"] for e in events if e["type"] == "down.deleted"}
    assert standin.core().read_namespace(NS).status.phase == "Active"


def test_down_leaves_a_persons_own_helm_install_of_the_same_release(standin, project):
    """`helm install` sets Helm's release annotation too: only devloop's own mark counts."""
    standin.create_namespace(NS)
    helm = subprocess.run(
        [str(REPO / ".tools/bin/helm"), "install", "data", str(project / "chart"), "-n", NS,
         "--kubeconfig", str(standin.kubeconfig), "--set", "claim=false"],
        capture_output=True, text=True, timeout=120)
    assert helm.returncode == 0, helm.stderr
    apps, core = standin.apps(), standin.core()
    assert apps.read_namespaced_deployment("data", NS).metadata.annotations[
        "meta.helm.sh/release-name"] == "data"

    code, events = devloop(project, standin.kubeconfig, "down", "--namespace")
    assert code == 0, events
    assert [e["object"] for e in events if e["type"] == "down.deleted"] == []
    kept = {e["object"]: e["reason"] for e in events if e["type"] == "down.kept"}
    for ident in ("Deployment/data", "Service/data", "ConfigMap/data-config",
                  "Secret/data-secret", "Ingress/data", "Role/data-reader"):
        assert kept[ident] == "not created by devloop", kept
    assert "Deployment/data" in kept["Namespace/lumina"]  # positive control: down looked
    assert exists(apps.read_namespaced_deployment, "data")
    assert exists(core.read_namespaced_secret, "data-secret")

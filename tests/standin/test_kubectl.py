"""kubectl against the stand-in: the everyday commands, every kind of the groups clients expect
(core, apps, batch, networking, autoscaling, policy, rbac), access reviews, PersistentVolumes
bound to claims, and 404s that tell a missing object from an unknown resource."""

from __future__ import annotations

import json
import secrets
import urllib.request

import pytest
import yaml

from tests.kube_standin.fixtures import wait_for
from tests.standin.clis import attempt, run, tool

pytestmark = [pytest.mark.docker, pytest.mark.own_standin]  # lists with -A, ClusterRoles

STACK = """apiVersion: v1
kind: ConfigMap
metadata: {name: web-config}
data: {greeting: hello}
---
apiVersion: v1
kind: Secret
metadata: {name: web-secret}
stringData: {token: not-a-real-secret}
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: web-data}
spec:
  accessModes: [ReadWriteOnce]
  resources: {requests: {storage: 2Gi}}
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  selector: {app: web}
  ports: [{port: 80, targetPort: 8080}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
        - name: web
          image: IMAGE
          imagePullPolicy: IfNotPresent
          command: ["sh", "-c",
                    "echo serving; echo saved > /data/note; exec httpd -f -p 8080 -h /www"]
          readinessProbe: {httpGet: {path: /, port: 8080}, periodSeconds: 1}
          volumeMounts: [{name: data, mountPath: /data}]
      volumes: [{name: data, persistentVolumeClaim: {claimName: web-data}}]
"""

# One object of every kind added for standard clients (apart from the kinds devloop uses);
# SUFFIX keeps the cluster-scoped names apart between tests.
KINDS = """apiVersion: v1
kind: PodTemplate
metadata: {name: tpl}
template:
  metadata: {labels: {app: tpl}}
  spec: {containers: [{name: c, image: IMAGE}]}
---
apiVersion: v1
kind: ReplicationController
metadata: {name: rc}
spec:
  replicas: 0
  selector: {app: rc}
  template:
    metadata: {labels: {app: rc}}
    spec: {containers: [{name: c, image: IMAGE}]}
---
apiVersion: v1
kind: LimitRange
metadata: {name: limits}
spec: {limits: [{type: Container, default: {cpu: 500m}}]}
---
apiVersion: v1
kind: ResourceQuota
metadata: {name: quota}
spec: {hard: {pods: "10"}}
---
apiVersion: v1
kind: PersistentVolume
metadata: {name: pv-SUFFIX}
spec:
  capacity: {storage: 1Gi}
  accessModes: [ReadWriteOnce]
  hostPath: {path: /tmp/pv-SUFFIX}
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: sts}
spec:
  serviceName: sts
  replicas: 0
  selector: {matchLabels: {app: sts}}
  template:
    metadata: {labels: {app: sts}}
    spec: {containers: [{name: c, image: IMAGE}]}
---
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: ds}
spec:
  selector: {matchLabels: {app: ds}}
  template:
    metadata: {labels: {app: ds}}
    spec: {nodeSelector: {no-such-node: "true"}, containers: [{name: c, image: IMAGE}]}
---
apiVersion: apps/v1
kind: ControllerRevision
metadata: {name: rev}
revision: 1
data: {spec: {template: {}}}
---
apiVersion: batch/v1
kind: Job
metadata: {name: job}
spec:
  suspend: true
  template:
    spec: {restartPolicy: Never, containers: [{name: c, image: IMAGE}]}
---
apiVersion: batch/v1
kind: CronJob
metadata: {name: cron}
spec:
  schedule: "*/5 * * * *"
  suspend: true
  jobTemplate:
    spec:
      template:
        spec: {restartPolicy: OnFailure, containers: [{name: c, image: IMAGE}]}
---
apiVersion: networking.k8s.io/v1
kind: IngressClass
metadata: {name: ic-SUFFIX}
spec: {controller: example.com/ingress}
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: ing}
spec:
  ingressClassName: ic-SUFFIX
  rules:
    - host: web.example
      http:
        paths:
          - {path: /, pathType: Prefix, backend: {service: {name: web, port: {number: 80}}}}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: deny-all}
spec: {podSelector: {}}
---
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata: {name: hpa}
spec:
  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: web}
  minReplicas: 1
  maxReplicas: 3
  metrics:
    - type: Resource
      resource: {name: cpu, target: {type: Utilization, averageUtilization: 80}}
---
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata: {name: pdb}
spec: {minAvailable: 1, selector: {matchLabels: {app: web}}}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: reader}
rules: [{apiGroups: [""], resources: [pods], verbs: [get, list]}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: reader}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: reader}
subjects: [{kind: ServiceAccount, name: default}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: reader-SUFFIX}
rules: [{apiGroups: [apps], resources: [deployments], verbs: [get]}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: reader-SUFFIX}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: reader-SUFFIX}
subjects: [{kind: ServiceAccount, name: default, namespace: default}]
"""


def test_everyday_commands_and_the_kinds_other_tools_list(standin, busybox_image, tmp_path):
    """The 22 commands that always worked and the 6 that failed before (issue 13)."""
    kubectl = tool("kubectl")
    ns = standin.create_namespace()
    manifest = tmp_path / "stack.yaml"
    manifest.write_text(STACK.replace("IMAGE", busybox_image))
    run(standin, kubectl, "apply", "-n", ns, "-f", str(manifest))
    run(standin, kubectl, "rollout", "status", "-n", ns, "deployment/web", "--timeout=90s")

    def k(*args: str) -> str:
        return run(standin, kubectl, *args)

    everyday = {
        ("get", "pods", "-n", ns): "Running",
        ("get", "pods", "-A", "-o", "wide"): "Running",
        ("get", "deployments", "-n", ns): "1/1",
        ("get", "replicasets", "-n", ns): "web-",
        ("get", "services", "-n", ns): "ClusterIP",
        ("get", "configmaps", "-n", ns): "web-config",
        ("get", "secrets", "-n", ns): "web-secret",
        ("get", "serviceaccounts", "-n", ns): "",
        ("get", "events", "-n", ns): "Started",
        ("get", "nodes"): "Ready",
        ("get", "namespaces"): ns,
        ("describe", "service", "web", "-n", ns): "app=web",
        ("describe", "deployment", "web", "-n", ns): "Replicas:",
        ("describe", "pod", "-n", ns, "-l", "app=web"): "Ready",
        ("logs", "-n", ns, "deployment/web"): "serving",
        ("exec", "-n", ns, "deployment/web", "--", "cat", "/data/note"): "saved",
        ("get", "deployment", "web", "-n", ns, "-o", "yaml"): "readyReplicas: 1",
        ("api-resources",): "statefulsets",
        ("api-versions",): "rbac.authorization.k8s.io/v1",
        ("version",): "Server Version",
        ("cluster-info",): "is running at",
        ("get", "all", "-n", ns): "deployment.apps/web",
    }
    for args, expected in everyday.items():
        assert expected in k(*args), f"kubectl {' '.join(args)}: {expected!r} missing"

    for kinds in ("statefulsets,daemonsets,jobs,cronjobs", "ingress", "networkpolicies", "hpa"):
        done = attempt(standin, kubectl, "get", kinds, "-A")
        assert (done.returncode, done.stdout) == (0, ""), done.stderr
        assert "No resources found" in done.stderr
    assert k("auth", "can-i", "get", "pods").strip() == "yes"

    claims = k("get", "pvc,pv", "-A")
    volume = k("get", "pvc", "web-data", "-n", ns, "-o", "jsonpath={.spec.volumeName}")
    assert volume.startswith("pvc-")
    assert f"persistentvolume/{volume}" in claims and f"{ns}/web-data" in claims
    assert claims.count("Bound") == 2, claims
    pv = json.loads(k("get", "pv", volume, "-o", "json"))
    assert pv["status"]["phase"] == "Bound"
    assert pv["spec"]["claimRef"]["name"] == "web-data"
    assert pv["spec"]["claimRef"]["namespace"] == ns
    assert pv["spec"]["capacity"] == {"storage": "2Gi"}
    assert pv["spec"]["accessModes"] == ["ReadWriteOnce"]
    assert pv["spec"]["persistentVolumeReclaimPolicy"] == "Delete"
    assert pv["spec"]["storageClassName"] == "standard"
    assert pv["spec"]["csi"]["volumeHandle"] == standin.claim_volume_name(ns, "web-data")


def test_create_get_and_delete_one_object_of_each_new_kind(standin, busybox_image, tmp_path):
    kubectl = tool("kubectl")
    ns = standin.create_namespace()
    suffix = secrets.token_hex(3)
    text = KINDS.replace("IMAGE", busybox_image).replace("SUFFIX", suffix)
    manifest = tmp_path / "kinds.yaml"
    manifest.write_text(text)
    docs = list(yaml.safe_load_all(text))

    run(standin, kubectl, "create", "-n", ns, "-f", str(manifest))
    listed = json.loads(run(standin, kubectl, "get", "-n", ns, "-f", str(manifest), "-o", "json"))
    assert [(i["kind"], i["metadata"]["name"]) for i in listed["items"]] == \
        [(d["kind"], d["metadata"]["name"]) for d in docs]
    assert all(i["metadata"]["uid"] for i in listed["items"])
    by_kind = {i["kind"]: i for i in listed["items"]}
    assert by_kind["Job"]["spec"]["backoffLimit"] == 6  # defaulted like the real server
    assert by_kind["StatefulSet"]["status"]["replicas"] == 0
    assert by_kind["PersistentVolume"]["status"]["phase"] == "Available"
    assert by_kind["NetworkPolicy"]["spec"]["policyTypes"] == ["Ingress"]

    table = run(standin, kubectl, "get", "-n", ns,
                "sts,ds,jobs,cronjobs,ingress,netpol,hpa,pdb,rc,roles,rolebindings")
    for name in ("statefulset.apps/sts", "daemonset.apps/ds", "job.batch/job",
                 "cronjob.batch/cron", "ingress.networking.k8s.io/ing",
                 "networkpolicy.networking.k8s.io/deny-all",
                 "horizontalpodautoscaler.autoscaling/hpa", "poddisruptionbudget.policy/pdb",
                 "replicationcontroller/rc", "role.rbac.authorization.k8s.io/reader",
                 "rolebinding.rbac.authorization.k8s.io/reader"):
        assert name in table, f"{name} missing from kubectl get:\n{table}"
    assert "*/5 * * * *" in table and "web.example" in table

    run(standin, kubectl, "scale", "-n", ns, "statefulset/sts", "replicationcontroller/rc",
        "--replicas=2")
    assert run(standin, kubectl, "get", "-n", ns, "sts/sts", "rc/rc", "-o",
               "jsonpath={.items[*].spec.replicas}") == "2 2"
    scale = json.loads(run(standin, kubectl, "get", "--raw",
                           f"/api/v1/namespaces/{ns}/replicationcontrollers/rc/scale"))
    assert scale["status"]["selector"] == "app=rc"

    run(standin, kubectl, "delete", "-n", ns, "-f", str(manifest), "--wait=false")
    gone = attempt(standin, kubectl, "get", "-n", ns, "-f", str(manifest))
    assert gone.returncode != 0
    for doc in docs:
        res = _plural(doc)
        assert f'{res} "{doc["metadata"]["name"]}" not found' in gone.stderr, gone.stderr


def _plural(doc: dict) -> str:
    plural = {"PodTemplate": "podtemplates", "ReplicationController": "replicationcontrollers",
              "LimitRange": "limitranges", "ResourceQuota": "resourcequotas",
              "PersistentVolume": "persistentvolumes", "StatefulSet": "statefulsets",
              "DaemonSet": "daemonsets", "ControllerRevision": "controllerrevisions",
              "Job": "jobs", "CronJob": "cronjobs", "IngressClass": "ingressclasses",
              "Ingress": "ingresses", "NetworkPolicy": "networkpolicies",
              "HorizontalPodAutoscaler": "horizontalpodautoscalers",
              "PodDisruptionBudget": "poddisruptionbudgets", "Role": "roles",
              "RoleBinding": "rolebindings", "ClusterRole": "clusterroles",
              "ClusterRoleBinding": "clusterrolebindings"}[doc["kind"]]
    group = doc["apiVersion"].rpartition("/")[0]
    return f"{plural}.{group}" if group else plural


def test_invalid_objects_of_new_kinds_are_rejected(standin, tmp_path):
    """Validated against the Kubernetes schemas like the kinds devloop uses."""
    kubectl = tool("kubectl")
    ns = standin.create_namespace()
    manifest = tmp_path / "bad.yaml"
    manifest.write_text("apiVersion: batch/v1\nkind: CronJob\nmetadata: {name: bad}\n"
                        "spec: {schedule: 5, jobTemplate: {spec: {template: {spec: "
                        "{restartPolicy: Never, containers: [{name: c, image: x}]}}}},"
                        " sechdule: typo}\n")
    done = attempt(standin, kubectl, "create", "-n", ns, "-f", str(manifest))
    assert done.returncode != 0
    assert "sechdule" in done.stderr
    manifest.write_text("apiVersion: batch/v1\nkind: Job\nmetadata: {name: bad}\n"
                        "spec: {template: {spec: {containers: [{name: c, image: x}]}}}\n")
    done = attempt(standin, kubectl, "create", "-n", ns, "-f", str(manifest))
    assert done.returncode != 0 and "restartPolicy" in done.stderr
    manifest.write_text(manifest.read_text().replace("{containers", "{restartPolicy: Never, "
                                                     "containers"))
    run(standin, kubectl, "create", "-n", ns, "-f", str(manifest))  # positive control


def test_access_reviews_allow_the_standin_token(standin):
    """AlwaysAllow: what `kubectl auth` and the Python client ask gets the real response shape."""
    from kubernetes import client

    kubectl = tool("kubectl")
    assert run(standin, kubectl, "auth", "can-i", "delete", "statefulsets", "-n",
               "kube-system").strip() == "yes"
    assert "*.*" in run(standin, kubectl, "auth", "can-i", "--list")
    assert "devloop-standin" in run(standin, kubectl, "auth", "whoami")
    review = client.AuthorizationV1Api(standin.api_client()).create_self_subject_access_review(
        client.V1SelfSubjectAccessReview(spec=client.V1SelfSubjectAccessReviewSpec(
            resource_attributes=client.V1ResourceAttributes(verb="get", resource="pods"))))
    assert review.kind == "SelfSubjectAccessReview" and review.status.allowed is True
    assert review.spec.resource_attributes.resource == "pods"
    with pytest.raises(client.ApiException) as empty:
        client.AuthorizationV1Api(standin.api_client()).create_self_subject_access_review(
            client.V1SelfSubjectAccessReview(spec=client.V1SelfSubjectAccessReviewSpec()))
    assert empty.value.status == 422


def test_missing_object_is_not_found_while_unknown_resource_is_unknown(standin):
    kubectl = tool("kubectl")
    ns = standin.create_namespace()
    missing = attempt(standin, kubectl, "get", "statefulset", "nope", "-n", ns)
    assert missing.returncode != 0
    assert 'statefulsets.apps "nope" not found' in missing.stderr
    unknown = attempt(standin, kubectl, "get", "frobnicators")
    assert unknown.returncode != 0
    assert "the server doesn't have a resource type" in unknown.stderr

    def raw(path: str) -> tuple[int, dict]:
        request = urllib.request.Request(f"{standin.http_url}{path}",
                                         headers={"Authorization": f"Bearer {standin.token}"})
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, json.load(response)
        except urllib.error.HTTPError as exc:
            return exc.code, json.load(exc)

    code, body = raw(f"/apis/batch/v1/namespaces/{ns}/jobs/nope")
    assert (code, body["reason"], body["details"]["kind"]) == (404, "NotFound", "jobs")
    code, body = raw(f"/apis/batch/v1/namespaces/{ns}/frobnicators/nope")
    assert (code, body["message"]) == (404, "the server could not find the requested resource")
    assert "details" not in body or "kind" not in body["details"]
    code, body = raw(f"/apis/batch/v1/namespaces/{ns}/jobs")  # positive control
    assert (code, body["kind"], body["items"]) == (200, "JobList", [])


def test_a_deleted_claim_takes_its_volume_with_it(standin):
    """Reclaim policy Delete, as with a dynamic provisioner."""
    from kubernetes import client

    ns = standin.create_namespace()
    core = standin.core()
    for name in ("keep", "drop"):
        core.create_namespaced_persistent_volume_claim(ns, client.V1PersistentVolumeClaim(
            metadata=client.V1ObjectMeta(name=name),
            spec=client.V1PersistentVolumeClaimSpec(
                access_modes=["ReadWriteOnce"],
                resources=client.V1VolumeResourceRequirements(requests={"storage": "1Gi"}))))
    bound = wait_for(lambda: all(
        core.read_namespaced_persistent_volume_claim(n, ns).status.phase == "Bound"
        for n in ("keep", "drop")), what="claims bound")
    assert bound
    keep = core.read_namespaced_persistent_volume_claim("keep", ns).spec.volume_name
    drop = core.read_namespaced_persistent_volume_claim("drop", ns).spec.volume_name
    assert core.read_persistent_volume(drop).spec.claim_ref.name == "drop"
    core.delete_namespaced_persistent_volume_claim("drop", ns)
    wait_for(lambda: drop not in {v.metadata.name for v in core.list_persistent_volume().items},
             what="the volume of the deleted claim to go")
    assert core.read_persistent_volume(keep).status.phase == "Bound"  # positive control

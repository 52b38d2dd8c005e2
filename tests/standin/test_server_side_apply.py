"""Server-side apply and field ownership, driven by the real `kubernetes` client and kubectl.

What devloop relies on: create-on-apply, `managedFields` shaped as the API server writes them,
409 conflicts naming the other manager and field, force, and removal of fields a manager no
longer applies (while fields another manager owns stay)."""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request

import pytest
import yaml
from kubernetes import client
from kubernetes.dynamic import DynamicClient

from tests.standin.clis import attempt, run, tool

pytestmark = pytest.mark.docker

APPLY = "application/apply-patch+yaml"


def deployment(name: str, replicas: int | None = 1, env: dict[str, str] | None = None,
               labels: dict[str, str] | None = None) -> dict:
    spec: dict = {
        "selector": {"matchLabels": {"app": name}},
        "template": {"metadata": {"labels": {"app": name}}, "spec": {"containers": [{
            "name": "app", "image": "registry.local/app:1",
            "env": [{"name": k, "value": v} for k, v in (env or {}).items()],
        }]}},
    }
    if replicas is not None:
        spec["replicas"] = replicas
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": name, "labels": labels or {"tier": "web"}}, "spec": spec}


def raw_apply(standin, ns: str, body: str, manager: str | None = "devloop",
              force: bool = False, name: str = "web") -> tuple[int, dict]:
    """PATCH with the apply content type and exactly these bytes (YAML or JSON), as any HTTP
    client would send it: (status code, the object or the Status)."""
    query = {"fieldManager": manager} if manager else {}
    if force:
        query["force"] = "true"
    request = urllib.request.Request(
        f"{standin.http_url}/apis/apps/v1/namespaces/{ns}/deployments/{name}?"
        f"{urllib.parse.urlencode(query)}", data=body.encode(), method="PATCH",
        headers={"Content-Type": APPLY, "Authorization": f"Bearer {standin.token}"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def applied(standin, ns: str, body: str, force: bool = False) -> dict:
    code, doc = raw_apply(standin, ns, body, force=force)
    assert code in (200, 201), doc
    return doc


def entries(obj: dict) -> dict[tuple[str, str], dict]:
    return {(e["manager"], e["operation"]): e for e in obj["metadata"].get("managedFields") or []}



@pytest.fixture
def api(standin_factory):
    return standin_factory(run_pods=False)


def test_apply_creates_then_owns_fields_and_removes_what_it_stops_applying(api):
    ns = api.create_namespace()
    dyn = DynamicClient(api.api_client()).resources.get(api_version="apps/v1",
                                                        kind="Deployment")
    created = dyn.server_side_apply(
        body=deployment("web", env={"A": "1", "B": "2"}), namespace=ns,
        field_manager="devloop").to_dict()
    assert created["metadata"]["uid"]
    mine = entries(created)[("devloop", "Apply")]
    assert mine["apiVersion"] == "apps/v1" and mine["fieldsType"] == "FieldsV1"
    container = mine["fieldsV1"]["f:spec"]["f:template"]["f:spec"]["f:containers"][
        'k:{"name":"app"}']
    assert "." in container and "f:image" in container
    assert set(container["f:env"]) == {'k:{"name":"A"}', 'k:{"name":"B"}'}
    # Defaults are the server's, not the applier's.
    assert "f:progressDeadlineSeconds" not in mine["fieldsV1"]["f:spec"]

    # Another manager labels the object with an ordinary patch (an Update).
    apps = client.AppsV1Api(api.api_client())
    apps.patch_namespaced_deployment("web", ns, {"metadata": {"labels": {"team": "blue"}}},
                                     field_manager="labeller")
    # Re-apply without env B and without the tier label: both were devloop's alone -> removed;
    # the labeller's label stays.
    again = applied(api, ns, json.dumps(deployment("web", env={"A": "1"}, labels={"x": "1"})))
    env = again["spec"]["template"]["spec"]["containers"][0]["env"]
    assert env == [{"name": "A", "value": "1"}]
    assert again["metadata"]["labels"] == {"team": "blue", "x": "1"}
    assert ("labeller", "Update") in entries(again)
    assert again["metadata"]["generation"] == 2


def test_conflict_names_the_other_manager_and_field_and_force_takes_it(api):
    ns = api.create_namespace()
    applied(api, ns, yaml.safe_dump(deployment("web", replicas=1)))  # the YAML form
    apps = client.AppsV1Api(api.api_client())
    apps.patch_namespaced_deployment("web", ns, {"spec": {"replicas": 3}},
                                     field_manager="kubectl-edit")
    code, status = raw_apply(api, ns, json.dumps(deployment("web", replicas=1)))
    assert code == 409 and status["reason"] == "Conflict"
    assert status["message"] == ('Apply failed with 1 conflict: conflict with "kubectl-edit" '
                                 "using apps/v1: .spec.replicas")
    assert status["details"]["causes"] == [{
        "type": "FieldManagerConflict", "message": 'conflict with "kubectl-edit" using apps/v1',
        "field": ".spec.replicas"}]
    assert apps.read_namespaced_deployment("web", ns).spec.replicas == 3  # nothing written

    # The same value is no conflict: both own it.
    shared = applied(api, ns, json.dumps(deployment("web", replicas=3)))
    assert "f:replicas" in entries(shared)[("kubectl-edit", "Update")]["fieldsV1"]["f:spec"]
    assert "f:replicas" in entries(shared)[("devloop", "Apply")]["fieldsV1"]["f:spec"]

    apps.patch_namespaced_deployment("web", ns, {"spec": {"replicas": 5}},
                                     field_manager="kubectl-edit")
    forced = applied(api, ns, json.dumps(deployment("web", replicas=2)), force=True)
    assert forced["spec"]["replicas"] == 2
    assert ("kubectl-edit", "Update") not in entries(forced)  # it owned only replicas


def test_apply_needs_a_field_manager_and_updates_are_owned_by_their_user_agent(api):
    ns = api.create_namespace()
    code, status = raw_apply(api, ns, json.dumps(deployment("web")), manager=None)
    assert code == 422 and status["reason"] == "Invalid"
    assert "fieldManager: Required value" in status["message"]
    core = client.CoreV1Api(api.api_client())
    made = core.create_namespaced_config_map(ns, {"metadata": {"name": "c"}, "data": {"k": "v"}})
    (entry,) = made.metadata.managed_fields
    assert (entry.manager, entry.operation) == ("OpenAPI-Generator", "Update")
    assert entry.fields_v1 == {"f:data": {".": {}, "f:k": {}}}
    # A write that changes nothing adds no entry and keeps the resourceVersion.
    same = core.patch_namespaced_config_map("c", ns, {"data": {"k": "v"}}, field_manager="other")
    assert same.metadata.resource_version == made.metadata.resource_version
    assert [e.manager for e in same.metadata.managed_fields] == ["OpenAPI-Generator"]


def test_kubectl_apply_server_side_conflicts_and_force(api, tmp_path):
    kubectl = tool("kubectl")
    ns = api.create_namespace()
    manifest = tmp_path / "web.yaml"
    manifest.write_text(yaml.safe_dump(deployment("web", replicas=1)))
    out = run(api, kubectl, "apply", "--server-side", "-n", ns, "-f", str(manifest))
    assert "serverside-applied" in out
    run(api, kubectl, "patch", "deployment/web", "-n", ns, "-p", '{"spec":{"replicas":4}}')
    done = attempt(api, kubectl, "apply", "--server-side", "-n", ns, "-f", str(manifest))
    assert done.returncode != 0
    assert 'conflict with "kubectl-patch" using apps/v1: .spec.replicas' in done.stderr
    run(api, kubectl, "apply", "--server-side", "--force-conflicts", "-n", ns, "-f",
        str(manifest))
    shown = json.loads(run(api, kubectl, "get", "deployment/web", "-n", ns, "-o", "json",
                           "--show-managed-fields"))
    assert shown["spec"]["replicas"] == 1
    assert ("kubectl", "Apply") in entries(shown)


def test_the_clients_own_request_path_with_a_dict_body(api):
    """How devloop sends applies: ApiClient.call_api, the apply content type, a dict body (the
    client serialises it as JSON)."""
    ns = api.create_namespace()
    api_client = api.api_client()

    def apply(data: dict[str, str]) -> dict:
        response = api_client.call_api(
            f"/api/v1/namespaces/{ns}/configmaps/settings", "PATCH",
            query_params=[("fieldManager", "devloop")],
            header_params={"Content-Type": APPLY, "Accept": "application/json"},
            body={"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings"},
                  "data": data},
            auth_settings=["BearerToken"], _preload_content=False)
        return json.loads(response[0].data)

    assert apply({"a": "1", "b": "2"})["data"] == {"a": "1", "b": "2"}
    assert apply({"a": "1"})["data"] == {"a": "1"}

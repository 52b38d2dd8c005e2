"""Pods of the stand-in run as real Docker containers (network none); real `kubernetes` client."""

from __future__ import annotations

import json
import time

import pytest
import requests
import urllib3
from kubernetes import client

from tests.kube_standin.clock import parse_time
from tests.kube_standin.fixtures import wait_for
from tests.ports import free_port

pytestmark = pytest.mark.docker

SERVE = "echo serving; exec httpd -f -p 8080 -h /www"


def deployment(name: str, image: str, command: str = SERVE, strategy: dict | None = None,
               readiness: bool = True, volumes: list | None = None,
               mounts: list | None = None, env: list | None = None) -> dict:
    container: dict = {"name": name, "image": image, "imagePullPolicy": "Never",
                       "command": ["sh", "-c", command]}
    if readiness:
        container["readinessProbe"] = {"httpGet": {"path": "/", "port": 8080},
                                       "periodSeconds": 2}
    if mounts:
        container["volumeMounts"] = mounts
    if env:
        container["env"] = env
    spec: dict = {
        "replicas": 1,
        "selector": {"matchLabels": {"app": name}},
        "template": {
            "metadata": {"labels": {"app": name}},
            "spec": {"containers": [container], "terminationGracePeriodSeconds": 1,
                     **({"volumes": volumes} if volumes else {})},
        },
    }
    if strategy:
        spec["strategy"] = strategy
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": name}, "spec": spec}


def pod(name: str, image: str, command: str, restart: str = "Always", **container_extra) -> dict:
    return {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
        "spec": {"restartPolicy": restart, "terminationGracePeriodSeconds": 1, "containers": [
            {"name": "main", "image": image, "imagePullPolicy": "IfNotPresent",
             "command": ["sh", "-c", command], **container_extra}]},
    }


def rollout_complete(apps: client.AppsV1Api, name: str, ns: str) -> bool:
    """kubectl's rule: observedGeneration, updated == replicas == available, no old pods."""
    d = apps.read_namespaced_deployment(name, ns)
    s = d.status
    return bool(
        s.observed_generation == d.metadata.generation
        and s.updated_replicas == d.spec.replicas
        and s.replicas == d.spec.replicas
        and s.available_replicas == d.spec.replicas
    )


def container_state(core: client.CoreV1Api, name: str, ns: str) -> client.V1ContainerStatus | None:
    statuses = core.read_namespaced_pod(name, ns).status.container_statuses
    return statuses[0] if statuses else None


def restart_count(core: client.CoreV1Api, name: str, ns: str) -> int:
    status = container_state(core, name, ns)
    return status.restart_count if status else 0


def log_text(core: client.CoreV1Api, name: str, ns: str, **kw) -> str:
    """The log, or "" while the container is still waiting to start (the API answers 400)."""
    try:
        return core.read_namespaced_pod_log(name, ns, **kw)
    except client.ApiException as exc:
        if exc.status == 400:
            return ""
        raise


def app_pods(core: client.CoreV1Api, ns: str, app: str) -> list[client.V1Pod]:
    return core.list_namespaced_pod(ns, label_selector=f"app={app}").items


def test_rolling_update_replaces_the_pod_without_downtime(standin, busybox_image):
    core, apps = standin.core(), standin.apps()
    ns = standin.create_namespace()
    apps.create_namespaced_deployment(ns, deployment("web", busybox_image))
    wait_for(lambda: rollout_complete(apps, "web", ns), what="first rollout")
    (first,) = app_pods(core, ns, "web")
    assert first.status.container_statuses[0].ready
    assert first.metadata.labels["pod-template-hash"]
    assert first.metadata.owner_references[0].kind == "ReplicaSet"
    (running,) = standin.containers(ns)
    assert running.name.startswith(f"k8s_{ns}_{first.metadata.name}_web_")

    apps.patch_namespaced_deployment("web", ns, {"spec": {"template": {"spec": {
        "containers": [{"name": "web", "command": ["sh", "-c", f"echo v2; {SERVE}"]}]}}}})
    ready_counts = []

    def done() -> bool:
        pods = app_pods(core, ns, "web")
        ready_counts.append(sum(1 for p in pods if p.status.container_statuses
                                and p.status.container_statuses[0].ready
                                and not p.metadata.deletion_timestamp))
        return rollout_complete(apps, "web", ns) and len(pods) == 1

    wait_for(done, timeout=30, interval=0.1, what="rolling update")
    assert min(ready_counts) >= 1, f"no ready pod during the rollout: {ready_counts}"
    (second,) = app_pods(core, ns, "web")
    assert second.metadata.uid != first.metadata.uid
    d = apps.read_namespaced_deployment("web", ns)
    progressing = next(c for c in d.status.conditions if c.type == "Progressing")
    assert progressing.reason == "NewReplicaSetAvailable"
    assert [c.name for c in standin.containers(ns)] == [
        c.name for c in standin.containers(ns) if second.metadata.name in c.name]
    assert len(apps.list_namespaced_replica_set(ns).items) == 2


def test_recreate_stops_the_old_container_before_starting_the_new(standin, busybox_image):
    core, apps = standin.core(), standin.apps()
    ns = standin.create_namespace()
    apps.create_namespaced_deployment(ns, deployment(
        "db", busybox_image, strategy={"type": "Recreate"}))
    wait_for(lambda: rollout_complete(apps, "db", ns), what="first rollout")
    apps.patch_namespaced_deployment("db", ns, {"spec": {"template": {"metadata": {
        "annotations": {"rev": "2"}}}}})
    overlap = []

    def done() -> bool:
        running = [c for c in standin.containers(ns) if c.status == "running"]
        overlap.append(len(running))
        return rollout_complete(apps, "db", ns) and len(app_pods(core, ns, "db")) == 1

    wait_for(done, timeout=30, interval=0.1, what="recreate rollout")
    assert max(overlap) <= 1, f"old and new containers ran together: {overlap}"
    (new,) = app_pods(core, ns, "db")
    assert new.metadata.annotations["rev"] == "2"


def test_crashing_container_goes_into_crash_loop_back_off_with_its_logs(standin, busybox_image):
    core = standin.core()
    ns = standin.create_namespace()
    core.create_namespaced_pod(ns, pod("crash", busybox_image, "echo boom; exit 3"))

    def crash_looping():
        status = container_state(core, "crash", ns)
        waiting = status and status.state.waiting
        return status if waiting and waiting.reason == "CrashLoopBackOff" else None

    status = wait_for(crash_looping, timeout=20, what="CrashLoopBackOff")
    assert status.last_state.terminated.exit_code == 3
    assert status.last_state.terminated.reason == "Error"
    wait_for(lambda: restart_count(core, "crash", ns) >= 1, timeout=20,
             what="a restart")
    assert core.read_namespaced_pod("crash", ns).status.phase == "Running"
    assert "boom" in core.read_namespaced_pod_log("crash", ns, previous=True)
    reasons = {e.reason for e in core.list_namespaced_event(ns).items}
    assert "BackOff" in reasons


def test_missing_image_with_pull_policy_never_is_err_image_never_pull(standin):
    core = standin.core()
    ns = standin.create_namespace()
    spec = pod("ghost", "standin-never-built:nope", "true")
    spec["spec"]["containers"][0]["imagePullPolicy"] = "Never"
    core.create_namespaced_pod(ns, spec)

    def waiting_reason():
        status = container_state(core, "ghost", ns)
        return status and status.state.waiting and status.state.waiting.reason

    assert wait_for(waiting_reason, what="a waiting reason") == "ErrImageNeverPull"
    assert core.read_namespaced_pod("ghost", ns).status.phase == "Pending"
    with pytest.raises(client.ApiException) as early:
        core.read_namespaced_pod_log("ghost", ns)
    assert early.value.status == 400
    assert "is waiting to start" in json.loads(early.value.body)["message"]
    # IfNotPresent never pulls either: the image is reported as not pullable.
    core.create_namespaced_pod(ns, pod("ghost2", "standin-never-built:nope", "true"))
    wait_for(lambda: container_state(core, "ghost2", ns) and (
        container_state(core, "ghost2", ns).state.waiting.reason in
        ("ErrImagePull", "ImagePullBackOff")), what="ErrImagePull")


def test_env_from_config_map_and_secret_and_missing_config(standin, busybox_image):
    core = standin.core()
    ns = standin.create_namespace()
    env = [
        {"name": "GREETING", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "greet"}}},
        {"name": "PASSWORD", "valueFrom": {"secretKeyRef": {"name": "sec", "key": "pw"}}},
        {"name": "BOTH", "value": "$(GREETING)-$(PASSWORD)"},
    ]
    core.create_namespaced_pod(ns, pod("envy", busybox_image, "echo $BOTH; sleep 30", env=env))

    def config_error():
        status = container_state(core, "envy", ns)
        waiting = status and status.state.waiting
        return waiting if waiting and waiting.reason == "CreateContainerConfigError" else None

    waiting = wait_for(config_error, what="CreateContainerConfigError")
    assert 'configmap "cfg" not found' in waiting.message
    core.create_namespaced_config_map(ns, client.V1ConfigMap(
        metadata=client.V1ObjectMeta(name="cfg"), data={"greet": "hello"}))
    core.create_namespaced_secret(ns, client.V1Secret(
        metadata=client.V1ObjectMeta(name="sec"), string_data={"pw": "s3cret"}))
    wait_for(lambda: container_state(core, "envy", ns).state.running, what="running")
    wait_for(lambda: core.read_namespaced_pod_log("envy", ns).strip() == "hello-s3cret",
             what="the resolved environment in the log")


def test_pvc_data_survives_pod_replacement(standin, busybox_image):
    core, apps = standin.core(), standin.apps()
    ns = standin.create_namespace()
    core.create_namespaced_persistent_volume_claim(ns, {
        "apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "data"},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}})
    apps.create_namespaced_deployment(ns, deployment(
        "db", busybox_image, strategy={"type": "Recreate"},
        volumes=[{"name": "store", "persistentVolumeClaim": {"claimName": "data"}},
                 {"name": "scratch", "emptyDir": {}}],
        mounts=[{"name": "store", "mountPath": "/data"},
                {"name": "scratch", "mountPath": "/scratch"}]))
    wait_for(lambda: rollout_complete(apps, "db", ns), what="first rollout")
    (old_container,) = [c for c in standin.containers(ns) if c.status == "running"]
    assert old_container.exec_run(["sh", "-c", "echo kept > /data/f; echo lost > /scratch/f"]
                                  ).exit_code == 0
    claim = core.read_namespaced_persistent_volume_claim("data", ns)
    assert claim.status.phase == "Bound"

    apps.patch_namespaced_deployment("db", ns, {"spec": {"template": {"metadata": {
        "annotations": {"rev": "2"}}}}})
    wait_for(lambda: rollout_complete(apps, "db", ns)
             and len(app_pods(core, ns, "db")) == 1, what="replacement")
    (new_container,) = [c for c in standin.containers(ns) if c.status == "running"]
    assert new_container.id != old_container.id
    assert new_container.exec_run(["cat", "/data/f"]).output == b"kept\n"
    assert new_container.exec_run(["cat", "/scratch/f"]).exit_code != 0
    volume = standin.docker.volumes.get(standin.claim_volume_name(ns, "data"))
    assert volume.name.endswith(f"-{ns}-data")


def test_log_follow_with_timestamps_and_since_time(standin, busybox_image):
    core = standin.core()
    ns = standin.create_namespace()
    core.create_namespaced_pod(ns, pod(
        "talk", busybox_image,
        "i=0; while [ $i -lt 8 ]; do echo line $i; i=$((i+1)); sleep 0.3; done", "Never"))
    wait_for(lambda: (container_state(core, "talk", ns) or client.V1ContainerStatus(
        name="x", image="x", image_id="x", ready=False, restart_count=0)).started,
        what="container start")
    stream = core.read_namespaced_pod_log("talk", ns, follow=True, timestamps=True,
                                          _preload_content=False, _request_timeout=20)
    lines = [line.decode() for line in stream.stream() for line in line.splitlines() if line]
    stream.release_conn()
    texts = [line.split(" ", 1)[1] for line in lines]
    assert texts == [f"line {i}" for i in range(8)]  # follow ended with the container
    stamps = [parse_time(line.split(" ", 1)[0]) for line in lines]
    assert stamps == sorted(stamps)

    cut = stamps[-1].replace(microsecond=0)
    # The Python client has no sinceTime parameter; kubectl and client-go send it like this.
    since = requests.get(
        f"{standin.http_url}/api/v1/namespaces/{ns}/pods/talk/log",
        params={"sinceTime": cut.strftime("%Y-%m-%dT%H:%M:%SZ"), "timestamps": "true"},
        headers={"Authorization": f"Bearer {standin.token}"}, timeout=5).text
    kept = [parse_time(line.split(" ", 1)[0]) for line in since.splitlines() if line]
    assert kept and all(s >= cut for s in kept) and len(kept) < 8
    tail = core.read_namespaced_pod_log("talk", ns, tail_lines=2)
    assert tail.splitlines() == ["line 6", "line 7"]
    wait_for(lambda: core.read_namespaced_pod("talk", ns).status.phase == "Succeeded",
             what="phase Succeeded")


@pytest.mark.own_standin
def test_api_outage_keeps_objects_and_readopts_running_containers(standin, busybox_image):
    core, apps = standin.core(), standin.apps()
    ns = standin.create_namespace()
    apps.create_namespaced_deployment(ns, deployment("web", busybox_image))
    wait_for(lambda: rollout_complete(apps, "web", ns), what="first rollout")
    (before,) = app_pods(core, ns, "web")
    (container,) = standin.containers(ns)
    url = standin.url

    standin.stop(keep_pods=True)
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{url}/version", timeout=2, verify=False)
    # The client's pooled keep-alive connection is cut too: nothing answers during the outage.
    with pytest.raises(urllib3.exceptions.MaxRetryError):
        core.list_namespace(_request_timeout=2)
    container.reload()
    assert container.status == "running"

    standin.start()
    assert standin.url == url
    core, apps = standin.core(), standin.apps()
    (after,) = app_pods(core, ns, "web")
    assert after.metadata.uid == before.metadata.uid
    time.sleep(1.0)
    (still,) = standin.containers(ns)
    assert still.id == container.id
    assert container_state(core, after.metadata.name, ns).container_id.endswith(container.id)
    assert rollout_complete(apps, "web", ns)
    # The controllers run again: a new template rolls out.
    apps.patch_namespaced_deployment("web", ns, {"spec": {"template": {"metadata": {
        "annotations": {"rev": "2"}}}}})
    wait_for(lambda: rollout_complete(apps, "web", ns) and len(app_pods(core, ns, "web")) == 1
             and app_pods(core, ns, "web")[0].metadata.uid != before.metadata.uid,
             timeout=30, what="rollout after restart")


def test_failing_liveness_probe_restarts_the_container(standin, busybox_image):
    core = standin.core()
    ns = standin.create_namespace()
    liveness = {"httpGet": {"path": "/missing", "port": 8080}, "periodSeconds": 1,
                "failureThreshold": 2}
    core.create_namespaced_pod(ns, pod("sick", busybox_image, SERVE, livenessProbe=liveness))
    wait_for(lambda: restart_count(core, "sick", ns) >= 1, timeout=20,
             what="a liveness restart")
    messages = [e.message for e in core.list_namespaced_event(ns).items]
    assert any("failed liveness probe" in m for m in messages)
    assert any("Liveness probe failed: HTTP probe failed with statuscode: 404" in m
               for m in messages)


def test_deleting_a_pod_removes_its_container_and_the_replicaset_replaces_it(
        standin, busybox_image):
    core, apps = standin.core(), standin.apps()
    ns = standin.create_namespace()
    apps.create_namespaced_deployment(ns, deployment("web", busybox_image, readiness=False))
    wait_for(lambda: rollout_complete(apps, "web", ns), what="rollout")
    (first,) = app_pods(core, ns, "web")
    (container,) = standin.containers(ns)
    rv = core.read_namespaced_pod(first.metadata.name, ns).metadata.resource_version
    time.sleep(1.5)  # an idle running pod must not churn resourceVersions
    assert core.read_namespaced_pod(first.metadata.name, ns).metadata.resource_version == rv
    deleted = core.delete_namespaced_pod(first.metadata.name, ns)
    assert deleted.metadata.deletion_timestamp is not None
    wait_for(lambda: first.metadata.name not in [p.metadata.name
                                                for p in app_pods(core, ns, "web")],
             what="the pod to go away")
    assert container.id not in [c.id for c in standin.containers(ns)]
    wait_for(lambda: rollout_complete(apps, "web", ns), what="a replacement pod")


def test_host_network_pods_are_reachable_on_localhost_and_resolve_services(
        standin_factory, busybox_image):
    host = standin_factory(pod_network="host")
    core = host.core()
    ns = host.create_namespace()
    port = free_port()
    service = core.create_namespaced_service(ns, {
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": "api"},
        "spec": {"type": "NodePort", "selector": {"app": "api"},
                 "ports": [{"port": port, "targetPort": port}]}})
    node_port = service.spec.ports[0].node_port
    assert 30000 <= node_port <= 32767
    core.create_namespaced_pod(ns, pod(
        "web", busybox_image, f"exec httpd -f -p 127.0.0.1:{port} -h /www",
        readinessProbe={"httpGet": {"path": "/", "port": port}, "periodSeconds": 1}))
    wait_for(lambda: (container_state(core, "web", ns) or client.V1ContainerStatus(
        name="x", image="x", image_id="x", ready=False, restart_count=0)).ready,
        what="readiness over loopback")
    assert requests.get(f"http://127.0.0.1:{port}/", timeout=5).text == "ok\n"
    assert wait_for(lambda: _get_or_none(f"http://127.0.0.1:{node_port}/"),
                    what="the NodePort relay") == "ok\n"
    (container,) = host.containers(ns)
    hosts = container.exec_run(["cat", "/etc/hosts"]).output.decode()
    assert f"api.{ns}.svc.cluster.local" in hosts
    assert core.read_namespaced_pod("web", ns).status.pod_ip == "127.0.0.1"


def test_init_containers_run_first_and_share_empty_dir(standin, busybox_image):
    core = standin.core()
    ns = standin.create_namespace()
    spec = pod("init", busybox_image, "cat /work/msg; sleep 30")
    spec["spec"]["volumes"] = [{"name": "work", "emptyDir": {}}]
    spec["spec"]["containers"][0]["volumeMounts"] = [{"name": "work", "mountPath": "/work"}]
    spec["spec"]["initContainers"] = [{
        "name": "prepare", "image": busybox_image, "imagePullPolicy": "IfNotPresent",
        "command": ["sh", "-c", "sleep 0.5; echo prepared > /work/msg"],
        "volumeMounts": [{"name": "work", "mountPath": "/work"}]}]
    core.create_namespaced_pod(ns, spec)
    first = wait_for(lambda: core.read_namespaced_pod("init", ns).status.init_container_statuses,
                     what="init container status")
    assert first[0].name == "prepare"
    wait_for(lambda: log_text(core, "init", ns, container="main").strip() == "prepared",
             what="main container output")
    status = wait_for(lambda: (s := core.read_namespaced_pod("init", ns).status)
                      .init_container_statuses[0].state.terminated and s, what="init status")
    assert status.init_container_statuses[0].state.terminated.reason == "Completed"
    assert next(c for c in status.conditions if c.type == "Initialized").status == "True"


def _get_or_none(url: str) -> str | None:
    try:
        return requests.get(url, timeout=2).text
    except requests.RequestException:
        return None


def test_exec_and_port_forward_through_the_api(standin, busybox_image):
    from kubernetes.stream import portforward, stream

    core = standin.core()
    ns = standin.create_namespace()
    core.create_namespaced_pod(ns, pod("box", busybox_image, SERVE))
    wait_for(lambda: (container_state(core, "box", ns) or client.V1ContainerStatus(
        name="x", image="x", image_id="x", ready=False, restart_count=0)).started,
        what="container start")
    exec_api = client.CoreV1Api(standin.api_client())  # stream() patches its client
    out = stream(exec_api.connect_get_namespaced_pod_exec, "box", ns,
                 command=["sh", "-c", "echo out; echo err >&2"], stderr=True, stdin=False,
                 stdout=True, tty=False)
    assert sorted(out.splitlines()) == ["err", "out"]  # channels interleave in any order
    failing = stream(exec_api.connect_get_namespaced_pod_exec, "box", ns,
                     command=["sh", "-c", "exit 3"], stderr=True, stdin=False, stdout=True,
                     tty=False, _preload_content=False)
    failing.run_forever(timeout=10)
    assert failing.returncode == 3
    piped = stream(exec_api.connect_get_namespaced_pod_exec, "box", ns, command=["cat"],
                   stderr=True, stdin=True, stdout=True, tty=False, _preload_content=False,
                   binary=True)
    piped.write_stdin(b"through stdin\n")
    echoed = wait_for(lambda: piped.update(timeout=1) or piped.read_stdout(timeout=1),
                      what="stdin echoed back")
    assert echoed == b"through stdin\n"
    piped.close()

    forward = portforward(client.CoreV1Api(standin.api_client())
                          .connect_get_namespaced_pod_portforward, "box", ns, ports="8080")
    sock = forward.socket(8080)
    sock.setblocking(True)
    sock.sendall(b"GET / HTTP/1.0\r\n\r\n")
    reply = b""
    while chunk := sock.recv(4096):
        reply += chunk
    sock.close()
    assert reply.startswith(b"HTTP/1.") and reply.endswith(b"\r\n\r\nok\n")


def test_host_network_rollout_starts_the_new_pod_only_after_the_old_one_is_gone(
        standin_factory, busybox_image):
    """On the host network two pods of one Deployment share ports: a new pod started beside a
    terminating one could not bind, and its readiness probe would be answered by the old
    server, so the rollout looked complete while the new pod crashed (seen with a PID-1 server
    that ignores SIGTERM). Kubernetes gives each pod its own network; the stand-in serializes."""
    host = standin_factory(pod_network="host")
    core, apps = host.core(), host.apps()
    ns = host.create_namespace()
    port = free_port()
    # `trap '' TERM`: the old server lingers for its grace period, as a PID-1 python does
    serve = f"trap '' TERM; echo v$V > /www/index.html; exec httpd -f -p 127.0.0.1:{port} -h /www"
    spec = deployment("web", busybox_image, serve, env=[{"name": "V", "value": "1"}])
    spec["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] = 3
    spec["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGet"]["port"] = port
    apps.create_namespaced_deployment(ns, spec)
    wait_for(lambda: rollout_complete(apps, "web", ns), what="the first rollout")
    apps.patch_namespaced_deployment("web", ns, {"spec": {"template": {"spec": {"containers": [
        {"name": "web", "env": [{"name": "V", "value": "2"}]}]}}}})
    seen_together = False
    deadline = time.monotonic() + 60
    while not rollout_complete(apps, "web", ns) and time.monotonic() < deadline:
        seen_together = seen_together or len(host.containers(ns)) > 1
        time.sleep(0.2)
    assert not seen_together, "a new pod's container ran beside the old one on shared ports"
    (current,) = app_pods(core, ns, "web")
    assert current.status.container_statuses[0].restart_count == 0
    assert requests.get(f"http://127.0.0.1:{port}/", timeout=5).text == "v2\n"

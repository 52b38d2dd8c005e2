"""The stand-in's fault switch as a client sees it: real HTTP(S), the real kubernetes client.

These pin what the fault suite relies on: a failed request carries the status and Retry-After
a struggling kube-apiserver sends, a drop looks like a dead endpoint, and devloop's retry policy
classifies each of them as transient.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.request

import pytest
from kubernetes import watch as k8s_watch
from kubernetes.client.exceptions import ApiException

from devloop.k8s import retry
from tests.kube_standin.fixtures import wait_for


def configmap(name: str) -> dict:
    return {"metadata": {"name": name}, "data": {"k": "v"}}


def test_the_next_n_matching_requests_fail_with_the_status_and_others_pass(standin):
    core = standin.core()
    ns = standin.create_namespace()
    core.create_namespaced_config_map(ns, configmap("c1"))
    rule = standin.standin.faults.fail("PATCH", r"/configmaps/c1$", status=503, count=2)
    core.read_namespaced_config_map("c1", ns)  # another verb on the same path: untouched
    for _ in range(2):
        with pytest.raises(ApiException) as info:
            core.patch_namespaced_config_map("c1", ns, {"data": {"k": "v2"}})
        assert info.value.status == 503
        assert retry.is_transient(info.value)
    assert core.patch_namespaced_config_map("c1", ns, {"data": {"k": "v3"}}).data == {"k": "v3"}
    assert rule.served == 2 and standin.standin.faults.failed(503) == 2


def test_429_carries_retry_after_and_the_retry_policy_honours_it(standin):
    core = standin.core()
    ns = standin.create_namespace()
    standin.standin.faults.fail("POST", r"/configmaps$", status=429, count=1, retry_after=1)
    slept: list[float] = []
    made = retry.call(lambda: core.create_namespaced_config_map(ns, configmap("c2")),
                      what="create configmap/c2", sleep=lambda s: (slept.append(s), time.sleep(s)))
    assert made.metadata.name == "c2"
    assert slept == [1.0]


def test_a_drop_resets_new_connections_cuts_open_watches_and_ends_by_itself(standin):
    core = standin.core()
    ns = standin.create_namespace()
    ended = threading.Event()

    def watch_forever() -> None:
        with pytest.raises(Exception):  # noqa: B017 - any transport error: the stream was cut
            for _ in k8s_watch.Watch().stream(core.list_namespaced_config_map, ns,
                                              timeout_seconds=60):
                pass
            raise RuntimeError("the watch ended without an error")
        ended.set()

    watcher = threading.Thread(target=watch_forever, daemon=True)
    watcher.start()
    time.sleep(0.5)
    standin.standin.faults.drop(3)
    wait_for(ended.is_set, timeout=10, what="the open watch to be cut")
    with pytest.raises(Exception) as info:
        core.list_namespaced_config_map(ns, _request_timeout=(2, 2))
    assert retry.is_transient(info.value), repr(info.value)
    # the retry policy rides the outage out and the call succeeds once the drop ends
    listed = retry.call(lambda: core.list_namespaced_config_map(ns, _request_timeout=(2, 2)),
                        what="list configmaps")
    assert listed.items == []
    assert standin.standin.faults.failed(None) >= 1


def test_a_person_drives_the_switch_over_http_with_the_token(standin):
    url = f"{standin.http_url}/standin/faults"
    auth = {"Authorization": f"Bearer {standin.token}", "Content-Type": "application/json"}

    def call(method: str, body: dict | None = None) -> dict:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(url, data=data, method=method, headers=auth)
        with urllib.request.urlopen(req, timeout=10) as resp:
            return json.loads(resp.read())

    doc = call("POST", {"verb": "GET", "path": "/namespaces/default$", "status": 500,
                        "count": 3})
    assert [(r["verb"], r["status"], r["count"]) for r in doc["rules"]] == [("GET", 500, 3)]
    with pytest.raises(ApiException) as info:
        standin.core().read_namespace("default")
    assert info.value.status == 500
    assert call("DELETE")["rules"] == []
    assert standin.core().read_namespace("default").metadata.name == "default"
    with pytest.raises(urllib.error.HTTPError) as bad:
        call("POST", {"verb": "GET", "path": "(", "status": 500})
    assert bad.value.code == 400
    no_token = urllib.request.Request(url, method="GET")
    with pytest.raises(urllib.error.HTTPError) as denied:
        urllib.request.urlopen(no_token, timeout=10)
    assert denied.value.code == 401



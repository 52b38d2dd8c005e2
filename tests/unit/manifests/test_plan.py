"""manifests.plan: what an apply does, decided from the rendered objects and the last apply."""

from __future__ import annotations

import copy

from devloop.manifests.plan import CONFIG_HASH_ANNOTATION, consumed, key_of, plan


def _cm(name: str, data: dict[str, str], kind: str = "ConfigMap") -> dict:
    return {"apiVersion": "v1", "kind": kind, "metadata": {"name": name, "namespace": "app"},
            "data": data}


def _deploy(name: str, spec: dict) -> dict:
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": name, "namespace": "app"},
            "spec": {"selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": {"app": name}}, "spec": spec}}}


def _objects(env_value: str = "dev", secret: str = "s1") -> list[dict]:
    return [
        _cm("web-config", {"ENVIRONMENT": env_value}),
        _cm("api-secret", {"TOKEN": secret}, kind="Secret"),
        {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
         "metadata": {"name": "data", "namespace": "app"},
         "spec": {"accessModes": ["ReadWriteOnce"],
                  "resources": {"requests": {"storage": "1Gi"}}}},
        _deploy("web", {"containers": [{"name": "web", "image": "web:dl-1",
                                        "envFrom": [{"configMapRef": {"name": "web-config"}}]}]}),
        _deploy("api", {"containers": [{"name": "api", "image": "api:dl-1", "env": [
            {"name": "T", "valueFrom": {"secretKeyRef": {"name": "api-secret", "key": "TOKEN"}}}
        ]}]}),
        _deploy("worker", {"containers": [{"name": "w", "image": "w:1"}]}),
    ]


def _names(objs: list[dict]) -> list[str]:
    return [f"{o['kind']}/{o['metadata']['name']}" for o in objs]


def test_first_plan_applies_everything_in_dependency_order_and_only_creates_the_claim():
    p = plan(_objects(), None)
    assert _names(p.apply) == ["ConfigMap/web-config", "Secret/api-secret", "Deployment/web",
                               "Deployment/api", "Deployment/worker"]
    assert _names(p.create) == ["PersistentVolumeClaim/data"]
    assert p.orphaned == [] and p.rolls == {}


def test_nothing_changed_means_no_request_at_all():
    first = plan(_objects(), None)
    again = plan(_objects(), first.hashes)
    assert again.empty and len(again.unchanged) == 6


def test_a_changed_configmap_rolls_only_the_workload_that_reads_it():
    first = plan(_objects(), None)
    p = plan(_objects(env_value="staging"), first.hashes)
    assert _names(p.apply) == ["ConfigMap/web-config", "Deployment/web"]
    assert p.rolls == {"apps/Deployment/app/web": ["ConfigMap/web-config"]}
    web = p.apply[1]
    old = next(o for o in plan(_objects(), None).apply if o["metadata"]["name"] == "web")
    new_hash = web["spec"]["template"]["metadata"]["annotations"][CONFIG_HASH_ANNOTATION]
    assert new_hash != old["spec"]["template"]["metadata"]["annotations"][CONFIG_HASH_ANNOTATION]


def test_a_changed_secret_rolls_its_consumer_through_env_value_from():
    first = plan(_objects(), None)
    p = plan(_objects(secret="s2"), first.hashes)
    assert _names(p.apply) == ["Secret/api-secret", "Deployment/api"]


def test_a_changed_claim_is_never_applied():
    objs = _objects()
    first = plan(objs, None)
    changed = copy.deepcopy(objs)
    changed[2]["spec"]["resources"]["requests"]["storage"] = "5Gi"
    p = plan(changed, first.hashes)
    assert p.apply == [] and _names(p.create) == ["PersistentVolumeClaim/data"]


def test_a_dropped_object_is_orphaned_and_pruned_only_with_prune_never_a_claim_or_namespace():
    ns = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "app"}}
    objs = [ns, *_objects()]
    first = plan(objs, None)
    remaining = [o for o in objs if o["kind"] not in ("Namespace", "PersistentVolumeClaim")
                 and o["metadata"]["name"] != "worker"]
    kept = plan(remaining, first.hashes)
    assert sorted(kept.orphaned) == sorted([
        "/Namespace//app", "/PersistentVolumeClaim/app/data", "apps/Deployment/app/worker"])
    assert kept.prune == []
    pruned = plan(remaining, first.hashes, prune=True)
    assert pruned.prune == ["apps/Deployment/app/worker"]


def test_consumed_covers_env_envfrom_volumes_and_projected_sources():
    obj = _deploy("x", {
        "initContainers": [{"name": "i", "image": "i", "envFrom": [{"secretRef": {"name": "s1"}}]}],
        "containers": [{"name": "c", "image": "c", "env": [
            {"name": "A", "valueFrom": {"configMapKeyRef": {"name": "c1", "key": "k"}}}]}],
        "volumes": [{"name": "v", "configMap": {"name": "c2"}},
                    {"name": "w", "secret": {"secretName": "s2"}},
                    {"name": "p", "projected": {"sources": [{"configMap": {"name": "c3"}},
                                                            {"secret": {"name": "s3"}}]}}]})
    assert consumed(obj) == {("Secret", "s1"), ("ConfigMap", "c1"), ("ConfigMap", "c2"),
                             ("Secret", "s2"), ("ConfigMap", "c3"), ("Secret", "s3")}


def test_a_cronjob_template_gets_the_config_hash_too():
    cron = {"apiVersion": "batch/v1", "kind": "CronJob",
            "metadata": {"name": "nightly", "namespace": "app"},
            "spec": {"schedule": "0 3 * * *", "jobTemplate": {"spec": {"template": {"spec": {
                "restartPolicy": "Never",
                "containers": [{"name": "n", "image": "n",
                                "envFrom": [{"configMapRef": {"name": "web-config"}}]}]}}}}}}
    first = plan([_cm("web-config", {"A": "1"}), cron], None)
    p = plan([_cm("web-config", {"A": "2"}), cron], first.hashes)
    assert _names(p.apply) == ["ConfigMap/web-config", "CronJob/nightly"]
    assert key_of(cron) in p.rolls


def test_objects_an_earlier_run_applied_are_orphaned_when_no_longer_rendered():
    p = plan(_objects(), None, earlier=["apps/Deployment/app/web", "apps/Deployment/app/gone",
                                        "/PersistentVolumeClaim/app/old"], prune=True)
    assert p.orphaned == ["/PersistentVolumeClaim/app/old", "apps/Deployment/app/gone"]
    assert p.prune == ["apps/Deployment/app/gone"]
    assert len(p.apply) == 5  # nothing known about their content: everything is applied

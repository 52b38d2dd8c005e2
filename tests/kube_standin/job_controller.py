"""Job controller: runs pods to completion (`parallelism` at a time until `completions`
succeeded), replaces failed pods up to `backoffLimit`, honours `suspend`, and reports
active/ready/succeeded/failed with the Complete or Failed condition (each preceded by
SuccessCriteriaMet / FailureTarget, as Kubernetes 1.31+ writes them)."""

from __future__ import annotations

import logging

from .api import Api
from .clock import rfc3339
from .pod_state import Obj, is_ready, is_terminating
from .workloads import pod_from_template, pods_by_controller, sync_each, write_status

log = logging.getLogger("kube_standin.jobs")


def phase(pod: Obj) -> str:
    return (pod.get("status") or {}).get("phase", "Pending")


def finished(job: Obj) -> str | None:
    """"Complete" or "Failed" once the Job has ended."""
    for cond in (job.get("status") or {}).get("conditions") or []:
        if cond.get("type") in ("Complete", "Failed") and cond.get("status") == "True":
            return cond["type"]
    return None


def _condition(kind: str, reason: str = "", message: str = "") -> Obj:
    cond = {"type": kind, "status": "True", "lastProbeTime": rfc3339(),
            "lastTransitionTime": rfc3339()}
    if reason:
        cond.update(reason=reason, message=message)
    return cond


class JobController:
    def __init__(self, api: Api) -> None:
        self._api = api
        self._jobs = api.table.by_plural("jobs")
        self._pods = api.table.by_plural("pods")

    def reconcile(self) -> None:
        owned = pods_by_controller(self._api)
        sync_each(self._api, "jobs",
                  lambda job: self._sync(job, owned.get(job["metadata"]["uid"], [])), log)

    def _sync(self, job: Obj, pods: list[Obj]) -> None:
        ns, spec = job["metadata"]["namespace"], job["spec"]
        old = job.get("status") or {}
        active = [p for p in pods if phase(p) not in ("Succeeded", "Failed")
                  and not is_terminating(p)]
        succeeded = sum(1 for p in pods if phase(p) == "Succeeded")
        failed = sum(1 for p in pods if phase(p) == "Failed")
        completions = spec.get("completions", 1)
        done = finished(job)
        conditions = list(old.get("conditions") or [])
        if not done and succeeded >= completions:
            done = "Complete"
            conditions += [_condition("SuccessCriteriaMet", "CompletionsReached",
                                      "Reached expected number of succeeded pods"),
                           _condition("Complete", "CompletionsReached",
                                      "Reached expected number of succeeded pods")]
        elif not done and failed > spec.get("backoffLimit", 6):
            done = "Failed"
            message = "Job has reached the specified backoff limit"
            conditions += [_condition("FailureTarget", "BackoffLimitExceeded", message),
                           _condition("Failed", "BackoffLimitExceeded", message)]
        if done or spec.get("suspend"):
            for pod in active:
                self._api.delete(self._pods, ns, pod["metadata"]["name"])
            active = []
        else:
            wanted = min(spec.get("parallelism", 1), completions - succeeded)
            for _ in range(wanted - len(active)):  # the API put the job-name labels on the template
                self._api.create(self._pods, ns, pod_from_template(job, spec.get("template")))
        status: Obj = {"startTime": old.get("startTime") or rfc3339()} \
            if not spec.get("suspend") or old.get("startTime") else {}
        status.update(active=len(active), ready=sum(1 for p in active if is_ready(p)),
                      succeeded=succeeded, failed=failed, terminating=0)
        for key in ("active", "succeeded", "failed"):
            if not status[key]:
                del status[key]
        if conditions:
            status["conditions"] = conditions
        if done == "Complete":
            status["completionTime"] = old.get("completionTime") or rfc3339()
        write_status(self._api, self._jobs, job, status)

"""CronJob controller: creates a Job `<name>-<scheduled minute>` each time the schedule fires
(not while `suspend`), with the Allow/Forbid/Replace concurrency policies, history limits, and
the status (active, lastScheduleTime, lastSuccessfulTime) `kubectl get cronjob` shows.

Time runs `time_scale` times as fast for schedules as it does for the wall clock (the stand-in's
probe time scale, 0.1 by default), so "* * * * *" fires every 6 s in tests and every minute with
`--real-time`; timestamps in objects are wall-clock times.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable

from .api import Api
from .clock import now as wall_clock
from .clock import parse_time, rfc3339
from .cron_schedule import Schedule, ScheduleError
from .job_controller import finished
from .pod_state import Obj, controller_uid, is_terminating, owner_reference
from .workloads import sync_each, write_status

log = logging.getLogger("kube_standin.cronjobs")
SCHEDULED = "batch.kubernetes.io/cronjob-scheduled-timestamp"


class CronJobController:
    def __init__(self, api: Api, time_scale: float = 1.0,
                 clock: Callable[[], dt.datetime] = wall_clock) -> None:
        self._api = api
        self._cronjobs = api.table.by_plural("cronjobs")
        self._jobs = api.table.by_plural("jobs")
        self._scale = time_scale if time_scale > 0 else 1.0
        self._clock = clock
        self._epoch = clock()
        # uid -> (schedule text, the schedule time of the next run), in schedule time.
        self._due: dict[str, tuple[str, dt.datetime]] = {}

    def schedule_time(self, when: dt.datetime) -> dt.datetime:
        """Wall-clock time as the schedules see it (faster when time_scale < 1)."""
        return self._epoch + (when - self._epoch) / self._scale

    def reconcile(self) -> None:
        jobs, _ = self._api.store.list_raw("jobs")
        cronjobs, _ = self._api.store.list_raw("cronjobs")
        sync_each(self._api, "cronjobs", lambda cronjob: self._sync(cronjob, [
            j for j in jobs if controller_uid(j) == cronjob["metadata"]["uid"]]), log)
        live = {c["metadata"]["uid"] for c in cronjobs}
        for uid in [u for u in self._due if u not in live]:
            del self._due[uid]

    def _next(self, cronjob: Obj, current: dt.datetime) -> dt.datetime | None:
        uid, text = cronjob["metadata"]["uid"], cronjob["spec"].get("schedule", "")
        known = self._due.get(uid)
        if known is None or known[0] != text:
            try:
                known = (text, Schedule.parse(text).next_after(current))
            except ScheduleError as exc:
                log.warning("cronjob %s: schedule %r: %s", cronjob["metadata"]["name"], text, exc)
                return None
            self._due[uid] = known
        return known[1]

    def _sync(self, cronjob: Obj, jobs: list[Obj]) -> None:
        meta, spec = cronjob["metadata"], cronjob["spec"]
        wall = self._clock()
        current = self.schedule_time(wall)
        active = [j for j in jobs if not finished(j) and not is_terminating(j)]
        due = self._next(cronjob, current)
        status = dict(cronjob.get("status") or {})
        if due is not None and current >= due:
            self._due[meta["uid"]] = (spec.get("schedule", ""),
                                      Schedule.parse(spec["schedule"]).next_after(current))
            if not spec.get("suspend"):
                policy = spec.get("concurrencyPolicy", "Allow")
                if policy == "Replace":
                    for job in active:
                        self._delete(job)
                    active = []
                if policy != "Forbid" or not active:
                    active.append(self._create_job(cronjob, due, wall))
                    status["lastScheduleTime"] = rfc3339(wall)
        self._prune(spec, jobs)
        succeeded = [j for j in jobs if finished(j) == "Complete"]
        if succeeded:
            latest = max((j.get("status") or {}).get("completionTime", "") for j in succeeded)
            if latest:
                status["lastSuccessfulTime"] = latest
        refs = [{"apiVersion": "batch/v1", "kind": "Job", "name": j["metadata"]["name"],
                 "namespace": meta["namespace"], "uid": j["metadata"]["uid"],
                 "resourceVersion": j["metadata"]["resourceVersion"]} for j in active]
        if refs:
            status["active"] = refs
        else:
            status.pop("active", None)
        write_status(self._api, self._cronjobs, cronjob, status)

    def _create_job(self, cronjob: Obj, due: dt.datetime, wall: dt.datetime) -> Obj:
        template = cronjob["spec"].get("jobTemplate") or {}
        tmeta = template.get("metadata") or {}
        minute = int(due.timestamp() // 60)
        job = {
            "apiVersion": "batch/v1", "kind": "Job",
            "metadata": {
                "name": f"{cronjob['metadata']['name']}-{minute}",
                "labels": dict(tmeta.get("labels") or {}),
                "annotations": {**(tmeta.get("annotations") or {}), SCHEDULED: rfc3339(wall)},
                "ownerReferences": [owner_reference(cronjob)],
            },
            "spec": template.get("spec") or {},
        }
        return self._api.create(self._jobs, cronjob["metadata"]["namespace"], job)

    def _prune(self, spec: Obj, jobs: list[Obj]) -> None:
        """Deletes finished Jobs beyond the history limits, oldest first."""
        for outcome, limit in (("Complete", spec.get("successfulJobsHistoryLimit", 3)),
                               ("Failed", spec.get("failedJobsHistoryLimit", 1))):
            done = sorted((j for j in jobs if finished(j) == outcome and not is_terminating(j)),
                          key=lambda j: parse_time(j["metadata"]["creationTimestamp"]))
            for job in done[:max(len(done) - limit, 0)]:
                self._delete(job)

    def _delete(self, job: Obj) -> None:
        self._api.delete(self._jobs, job["metadata"]["namespace"], job["metadata"]["name"],
                         {"propagationPolicy": "Background"})

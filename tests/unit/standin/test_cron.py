"""Cron schedules and the CronJob controller's decisions, with a fake clock (no server, no
Docker): when a Job is due, suspend, concurrency policies and the schedule-time scale."""

from __future__ import annotations

import datetime as dt

import pytest

from tests.kube_standin.api import Api
from tests.kube_standin.cron_schedule import Schedule, ScheduleError
from tests.kube_standin.cronjob_controller import CronJobController
from tests.kube_standin.resources import ResourceTable
from tests.kube_standin.schema import Schemas
from tests.kube_standin.store import Store

T0 = dt.datetime(2026, 12, 2, 18, 40, 30, tzinfo=dt.UTC)  # a Wednesday


@pytest.mark.parametrize(("schedule", "expected"), [
    ("* * * * *", "2026-12-02 18:41"),
    ("*/15 * * * *", "2026-12-02 18:45"),
    ("0 3 * * *", "2026-12-03 03:00"),
    ("30 2 1 * *", "2027-01-01 02:30"),
    ("0 0 * * mon", "2026-12-07 00:00"),
    ("5 4 * * 7", "2026-12-06 04:05"),
    ("0 0 1 * fri", "2026-12-04 00:00"),  # day-of-month OR day-of-week when both are set
    ("0 0 29 feb *", "2028-02-29 00:00"),
    ("@hourly", "2026-12-02 19:00"),
    ("10-20/5 9-17 * * 1-5", "2026-12-03 09:10"),
])
def test_next_run(schedule: str, expected: str) -> None:
    assert Schedule.parse(schedule).next_after(T0).strftime("%Y-%m-%d %H:%M") == expected


@pytest.mark.parametrize("schedule", ["61 * * * *", "* * * *", "*/0 * * * *", "a b c d e",
                                      "0 0 31 2 *"])
def test_bad_schedules_are_refused(schedule: str) -> None:
    with pytest.raises(ScheduleError):
        Schedule.parse(schedule).next_after(T0)


class FakeClock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> dt.datetime:
        return self.now


def make(scale: float = 1.0, **spec: object) -> tuple[Api, CronJobController, FakeClock]:
    table = ResourceTable()
    api = Api(Store(), table, Schemas())
    api.create(table.by_plural("namespaces"), "", {"metadata": {"name": "ns"}})
    api.create(table.by_plural("cronjobs"), "ns", {
        "apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "tick"},
        "spec": {"schedule": "* * * * *", **spec, "jobTemplate": {"spec": {"template": {
            "spec": {"restartPolicy": "Never",
                     "containers": [{"name": "c", "image": "busybox"}]}}}}}})
    clock = FakeClock()
    return api, CronJobController(api, time_scale=scale, clock=clock), clock


def job_names(api: Api) -> list[str]:
    return sorted(j["metadata"]["name"] for j in api.store.list("jobs", "ns")[0])


def test_a_job_per_scheduled_minute_named_by_that_minute() -> None:
    api, controller, clock = make()
    controller.reconcile()
    assert job_names(api) == []
    clock.now = T0 + dt.timedelta(seconds=29)
    controller.reconcile()
    assert job_names(api) == []
    clock.now = T0 + dt.timedelta(seconds=31)
    controller.reconcile()
    minute = int(dt.datetime(2026, 12, 2, 18, 41, tzinfo=dt.UTC).timestamp() // 60)
    assert job_names(api) == [f"tick-{minute}"]
    cronjob = api.store.get("cronjobs", "ns", "tick")
    assert cronjob["status"]["active"][0]["name"] == f"tick-{minute}"
    controller.reconcile()  # the same minute never runs twice
    assert len(job_names(api)) == 1


def test_suspend_and_forbid_skip_runs_and_the_time_scale_speeds_schedules_up() -> None:
    api, controller, clock = make(suspend=True)
    controller.reconcile()
    clock.now = T0 + dt.timedelta(minutes=5)
    controller.reconcile()
    assert job_names(api) == []

    api, controller, clock = make(scale=0.1, concurrencyPolicy="Forbid")
    controller.reconcile()
    clock.now = T0 + dt.timedelta(seconds=4)  # 40 s of schedule time: 18:41 has passed
    controller.reconcile()
    assert len(job_names(api)) == 1
    clock.now = T0 + dt.timedelta(seconds=10)  # 18:42 passed, but the first Job still runs
    controller.reconcile()
    assert len(job_names(api)) == 1

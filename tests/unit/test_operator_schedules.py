"""The Scheduler over the fakes: a due time starts one run, a 409 is success, the cursor is
written after the runs and resumed from after a restart, Forbid reads the runs' phases,
history deletes, a failed create or status write is tried again without a second run."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from conveyor import names
from conveyor.kube import KubeError
from conveyor.manifests import scheduled_run
from conveyor.operator.triggers import Scheduler
from conveyor.operator.triggers.schedules import RETRY_SECONDS
from conveyor.operator.workflows import Workflows
from unit.fakes import NAMESPACE, WORKFLOW, FakeKube, until, workflow_body, workflow_spec

RUNS = names.RUN_PLURAL
START = datetime(2026, 12, 2, 12, 0, 30, tzinfo=UTC)
MINUTE_1 = datetime(2026, 12, 2, 12, 1, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> datetime:
        return self.now

    def at(self, minute: int, second: int = 5) -> None:
        self.now = START.replace(minute=minute, second=second)


class Bed:
    """One Workflow with the given schedules, a FakeKube that lists it, a Scheduler."""

    def __init__(self, *schedules: dict[str, Any], kube: FakeKube | None = None,
                 clock: Clock | None = None) -> None:
        self.kube = kube or FakeKube()
        self.clock = clock or Clock()
        body = workflow_body(workflow_spec({"name": "a"}, schedules=list(schedules)))
        if not self.kube.objects["workflows"]:
            self.kube.objects["workflows"].append(body)
        self.workflows = Workflows(self.kube)
        assert self.workflows.observe(body).problem is None
        self.scheduler = Scheduler(self.kube, self.workflows, clock=self.clock)

    def runs(self) -> list[str]:
        return [r["metadata"]["name"] for r in self.kube.created_runs]

    def status(self) -> list[dict[str, Any]]:
        patches = self.kube.patches[("workflows", NAMESPACE, WORKFLOW)]
        return patches[-1]["schedules"] if patches else []

    def persist(self) -> None:
        """What the API server would hold: the last patch in the Workflow's status."""
        self.kube.objects["workflows"][0]["status"] = {"schedules": self.status()}

    async def tick(self) -> None:
        """A tick; the runs it deleted are then being deleted, as the API server shows."""
        await self.scheduler.tick()
        gone = {name for _, name, _ in self.kube.deleted_runs}
        for body in self.kube.objects[RUNS]:
            if body["metadata"]["name"] in gone:
                body["metadata"]["deletionTimestamp"] = "2026-12-02T12:00:00Z"

    def finish(self, name: str, phase: str) -> None:
        for body in self.kube.objects[RUNS]:
            if body["metadata"]["name"] == name:
                body["status"] = {"phase": phase}


def run(scenario: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(scenario(), 10))


def test_a_new_schedule_records_its_next_time_and_starts_at_it() -> None:
    async def scenario() -> None:
        bed = Bed({"name": "s", "cron": "* * * * *", "inputs": {"at": "${{ schedule.time }}"}})
        assert await bed.scheduler.tick() == START.replace(minute=1, second=0)
        assert bed.runs() == []
        assert bed.status() == [{"name": "s", "nextScheduleTime": "2026-12-02T12:01:00Z"}]
        bed.clock.at(1)
        await bed.scheduler.tick()
        assert bed.runs() == ["wf-s-202612021201"]
        created = bed.kube.created_runs[0]
        assert created["spec"]["inputs"] == {"at": "2026-12-02T12:01:00Z"}
        assert created["metadata"]["labels"][names.LABEL_SCHEDULE] == "s"
        (entry,) = bed.status()
        assert entry["lastScheduleTime"] == "2026-12-02T12:01:00Z"
        assert entry["lastRun"] == "wf-s-202612021201"
        assert entry["nextScheduleTime"] == "2026-12-02T12:02:00Z"
        writes = len(bed.kube.patches[("workflows", NAMESPACE, WORKFLOW)])
        bed.clock.at(1, 40)
        await bed.scheduler.tick()  # nothing owed, nothing changed: no run, no write
        assert bed.runs() == ["wf-s-202612021201"]
        assert len(bed.kube.patches[("workflows", NAMESPACE, WORKFLOW)]) == writes

    run(scenario)


def test_a_restarted_scheduler_resumes_from_status_and_catches_up_within_the_deadline() -> None:
    async def scenario() -> None:
        schedule = {"name": "s", "cron": "* * * * *", "startingDeadlineSeconds": 150}
        first = Bed(schedule)
        await first.scheduler.tick()
        first.clock.at(1)
        await first.scheduler.tick()
        first.persist()
        # The operator is down from 12:01:05 to 12:06:05: 12:02 and 12:03 are too old.
        again = Bed(schedule, kube=first.kube, clock=first.clock)
        again.clock.at(6)
        await again.scheduler.tick()
        assert again.runs() == ["wf-s-202612021201", "wf-s-202612021204",
                                "wf-s-202612021205", "wf-s-202612021206"]
        (entry,) = again.status()
        assert entry["lastSkipped"]["reason"] == "DeadlineExceeded"
        assert entry["lastSkipped"]["scheduleTime"] == "2026-12-02T12:03:00Z"

    run(scenario)


def test_a_run_that_exists_already_counts_as_started() -> None:
    async def scenario() -> None:
        bed = Bed({"name": "s", "cron": "* * * * *"})
        await bed.scheduler.tick()
        await bed.kube.create_run(NAMESPACE, scheduled_run(WORKFLOW, "s", MINUTE_1, {}))
        bed.clock.at(1)
        await bed.scheduler.tick()
        assert bed.runs() == ["wf-s-202612021201"]  # made by the other replica: one run
        assert bed.status()[0]["lastScheduleTime"] == "2026-12-02T12:01:00Z"

    run(scenario)


def test_a_run_of_the_same_name_that_the_schedule_did_not_make_is_reported() -> None:
    async def scenario() -> None:
        # `wf` + `s` and a Workflow `wf-s`'s... any run that joins to the same name.
        bed = Bed({"name": "s", "cron": "* * * * *"})
        await bed.scheduler.tick()
        await bed.kube.create_run(NAMESPACE, {"metadata": {
            "name": "wf-s-202612021201", "labels": {names.LABEL_WORKFLOW: "wf-s"}}})
        bed.clock.at(1)
        await bed.scheduler.tick()
        [entry] = bed.status()
        assert "lastScheduleTime" not in entry and "lastRun" not in entry
        assert entry["lastSkipped"]["reason"] == "NameTaken"
        assert "wf-s-202612021201" in entry["lastSkipped"]["message"]

    run(scenario)


def test_a_lasting_refusal_skips_the_due_time_and_holds_nothing_else() -> None:
    async def scenario() -> None:
        bed = Bed({"name": "s", "cron": "* * * * *"}, {"name": "t", "cron": "* * * * *"})
        await bed.scheduler.tick()
        bed.clock.at(1)
        bed.kube.fail_next("create_run", KubeError("forbidden", 403))
        upcoming = await bed.scheduler.tick()
        assert upcoming == START.replace(minute=2, second=0)  # no 2 s retry for a 403
        entries = {e["name"]: e for e in bed.status()}
        assert entries["s"]["lastSkipped"]["reason"] == "Refused"
        assert "forbidden" in entries["s"]["lastSkipped"]["message"]
        assert entries["t"]["lastRun"] == "wf-t-202612021201"  # the other schedule went on
        bed.persist()
        bed.clock.at(1, 30)
        await bed.scheduler.tick()
        assert bed.runs() == ["wf-t-202612021201"]  # the refused due time is not tried again

    run(scenario)


def test_replace_keeps_the_run_of_the_due_time_it_starts() -> None:
    async def scenario() -> None:
        # A crash after the run of 12:01 was made, before the cursor moved: the next leader
        # owes 12:01 again, and the run there is that due time's own, not one to replace.
        bed = Bed({"name": "s", "cron": "* * * * *", "concurrencyPolicy": "Replace"})
        await bed.scheduler.tick()
        await bed.kube.create_run(NAMESPACE, scheduled_run(WORKFLOW, "s", MINUTE_1, {}))
        bed.clock.at(1)
        await bed.tick()
        assert bed.kube.deleted_runs == []
        assert bed.runs() == ["wf-s-202612021201"]
        assert bed.status()[0]["lastRun"] == "wf-s-202612021201"

    run(scenario)


def test_a_failed_create_is_tried_again_and_the_cursor_waits_for_it() -> None:
    async def scenario() -> None:
        bed = Bed({"name": "s", "cron": "* * * * *"})
        await bed.scheduler.tick()
        bed.clock.at(1)
        bed.kube.fail_next("create_run", KubeError("API server away", 503))
        retry = await bed.scheduler.tick()  # logged, tried again soon
        assert retry == bed.clock.now + timedelta(seconds=RETRY_SECONDS)
        assert bed.runs() == []
        assert "lastScheduleTime" not in bed.status()[0]
        bed.clock.at(1, 20)
        await bed.scheduler.tick()
        assert bed.runs() == ["wf-s-202612021201"]

    run(scenario)


def test_a_failed_status_write_is_written_at_the_next_tick() -> None:
    async def scenario() -> None:
        bed = Bed({"name": "s", "cron": "* * * * *"})
        await bed.scheduler.tick()
        bed.clock.at(1)
        bed.kube.fail_next("patch_status", KubeError("conflict", 500))
        retry = await bed.scheduler.tick()  # logged, tried again soon
        assert retry == bed.clock.now + timedelta(seconds=RETRY_SECONDS)
        await bed.scheduler.tick()
        assert bed.runs() == ["wf-s-202612021201"]
        assert bed.status()[0]["lastScheduleTime"] == "2026-12-02T12:01:00Z"

    run(scenario)


def test_forbid_skips_while_the_run_is_unfinished_and_starts_after() -> None:
    async def scenario() -> None:
        bed = Bed({"name": "s", "cron": "* * * * *", "concurrencyPolicy": "Forbid"})
        await bed.scheduler.tick()
        bed.clock.at(1)
        await bed.scheduler.tick()
        bed.finish("wf-s-202612021201", "Running")
        bed.clock.at(2)
        await bed.scheduler.tick()
        assert bed.runs() == ["wf-s-202612021201"]
        skipped = bed.status()[0]["lastSkipped"]
        assert (skipped["reason"], skipped["scheduleTime"]) == ("Forbidden",
                                                                "2026-12-02T12:02:00Z")
        bed.finish("wf-s-202612021201", "Succeeded")
        bed.clock.at(3)
        await bed.scheduler.tick()
        assert bed.runs() == ["wf-s-202612021201", "wf-s-202612021203"]

    run(scenario)


def test_replace_and_history_delete_through_the_api() -> None:
    async def scenario() -> None:
        bed = Bed({"name": "s", "cron": "* * * * *", "concurrencyPolicy": "Replace",
                   "successfulRunsHistoryLimit": 1})
        await bed.tick()
        for minute, phase in [(1, "Succeeded"), (2, "Succeeded"), (3, "Running")]:
            bed.clock.at(minute)
            await bed.tick()
            bed.finish(f"wf-s-20261202120{minute}", phase)
        bed.clock.at(4)
        await bed.tick()
        deleted = [name for _, name, _ in bed.kube.deleted_runs]
        assert deleted == ["wf-s-202612021201", "wf-s-202612021203"]
        assert bed.runs()[-1] == "wf-s-202612021204"

    run(scenario)


def test_an_invalid_workflow_schedules_nothing() -> None:
    async def scenario() -> None:
        kube = FakeKube()
        workflows = Workflows(kube)
        body = workflow_body(workflow_spec({"name": "a"}, schedules=[
            {"name": "s", "cron": "* * * * *", "timeZone": "Nowhere/Atlantis"}]))
        assert "spec.schedules[0].timeZone" in (workflows.observe(body).problem or "")
        scheduler = Scheduler(kube, workflows, clock=lambda: START + timedelta(hours=1))
        assert await scheduler.tick() is None
        assert kube.created_runs == []

    run(scenario)


def test_the_loop_wakes_for_a_new_workflow_and_at_the_due_time() -> None:
    async def scenario() -> None:
        kube = FakeKube()
        workflows = Workflows(kube)
        # Real time here: the loop's sleeps are what is tested. A due time every minute, so
        # the loop must wake on the change, not at the end of its (long) longest sleep.
        scheduler = Scheduler(kube, workflows, longest_sleep=3600)
        loop = asyncio.get_running_loop().create_task(scheduler.run())
        try:
            await asyncio.sleep(0)  # the first tick: no Workflow yet
            body = workflow_body(workflow_spec({"name": "a"}, schedules=[
                {"name": "s", "cron": "* * * * *"}]))
            kube.objects["workflows"].append(body)
            workflows.observe(body)
            await until(lambda: kube.patches[("workflows", NAMESPACE, WORKFLOW)],
                        what="the new schedule's next due time in status")
        finally:
            loop.cancel()

    run(scenario)

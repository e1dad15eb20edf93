"""The delivery rules of DESIGN.md §1, through the in-memory fakes, driving the real RunManager
(Flusher, Actor, Admission, Expiry): ack after persist, publish before persist, resend of
failed confirms, admission order, TTL expiry, rebuild from status, idempotent events.

Every wait polls a condition with a deadline (`until`); `turns` only lets the loop run what is
ready before checking that something did *not* happen.
"""

from __future__ import annotations

import heapq
import time
from collections.abc import Callable
from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException

from conveyor import engine
from conveyor.broker.errors import LinkClosedError, PublishRejectedError
from conveyor.engine import progress as engine_progress
from conveyor.kube import KubeError
from conveyor.kube.errors import api_error, transport_error
from conveyor.models import TaskMessage
from conveyor.names import EVENTS_EXCHANGE
from conveyor.operator.runs.admission import waiting_message
from conveyor.operator.runs.expiry import ttl_delay
from unit.fakes import (
    EVENTS_QUEUE,
    NAMESPACE,
    Bed,
    Entry,
    FakeDelivery,
    Published,
    Workers,
    drive,
    run_body,
    task_entry,
    task_of,
    turns,
    worker_event,
    workflow_spec,
)

TWO_STEPS = workflow_spec({"name": "a"}, {"name": "b", "dependsOn": ["a"]},
                          outputs={"b": "${{ tasks.b.outputs }}"})


def phase(status: dict[str, Any] | None, task: str) -> str | None:
    entry = task_entry(status, task)
    return None if entry is None else entry["phase"]


def writes(bed: Bed, *, ok: bool | None = None) -> list[Entry]:
    """Every status write of a WorkflowRun the operator attempted, in order."""
    return bed.journal.of("kube.replace_status", ok=ok)


def last_write_before(bed: Bed, entry: Entry) -> Entry | None:
    done = [w for w in writes(bed, ok=True) if w.seq < entry.seq]
    return done[-1] if done else None


def succeeded_with(task: str, outputs: dict[str, Any]) -> Callable[[dict[str, Any]], bool]:
    return lambda s: phase(s, task) == "Succeeded" and task_of(s, task).get("outputs") == outputs


def tried_with(bed: Bed, holds: Callable[[dict[str, Any]], bool]) -> list[dict[str, Any]]:
    """Statuses the operator tried to write (failed tries too) that satisfy `holds`."""
    return [c.args[3] for c in bed.kube.calls_of("replace_status") if holds(c.args[3])]


def awaited(bed: Bed, message_id: str, *, after: Published | None = None) -> Published | None:
    """The publish of `message_id` (after `after`) whose confirm the flusher waits for."""
    return next((p for p in bed.link.with_id(message_id)
                 if p.awaited and (after is None or p.seq > after.seq)), None)


async def started(bed: Bed, run: str = "r1", *, first: str = "a") -> None:
    """The run is under way: its first task is recorded Queued, nothing else is pending."""
    await bed.until(lambda: phase(bed.status(run), first) == "Queued",
                    what=f"{run}'s task {first} recorded Queued")
    await bed.settle()


def assert_acked_after_its_effect(bed: Bed, delivery: FakeDelivery,
                                  effect: Callable[[dict[str, Any]], bool]) -> None:
    """Acked once, and only after a status that holds its effect was written."""
    assert delivery.settlements == ["ack"], delivery.settlements
    ack = delivery.ack_entry()
    assert ack is not None
    write = last_write_before(bed, ack)
    assert write is not None, f"{delivery.message_id} acked before any status was written"
    assert effect(write.data), (
        f"{delivery.message_id} acked after a write without its effect: {write.data}")


# -- a. a failed status write keeps the run's work and is retried -----------------------------
WRITE_ERRORS = {
    "http-500": lambda: api_error("replace status",
                                  ApiException(status=500, reason="Internal Server Error")),
    "connection-refused": lambda: transport_error(
        "replace status", ConnectionRefusedError(111, "Connection refused")),
    "timeout": lambda: transport_error("replace status", TimeoutError("timed out")),
    "gateway-timeout": lambda: KubeError("replace status: Gateway Timeout", 504),
    "throttled": lambda: KubeError("replace status: Too Many Requests", 429, retry_after=0.03),
    "not-a-kube-error": lambda: RuntimeError("a bug below the facade"),
}


@pytest.mark.parametrize("make_error", WRITE_ERRORS.values(), ids=WRITE_ERRORS.keys())
def test_failed_status_write_keeps_acks_and_sends_and_is_retried(
        make_error: Callable[[], BaseException]) -> None:
    async def scenario() -> None:
        bed = Bed(retry_seconds=0.02)
        bed.add_workflow(TWO_STEPS)
        bed.start()
        bed.add_run("r1")
        await started(bed)
        if isinstance(error := make_error(), KubeError):
            assert error.retryable and not error.not_found
        bed.kube.fail_next("replace_status", error, times=4)
        before, written = len(writes(bed)), len(writes(bed, ok=True))
        run = bed.run("uid-r1")
        assert run is not None
        # What the run holds between a failed write and the retry that succeeds.
        between: list[tuple[bool, bool, bool]] = []

        def look() -> bool:
            if writes(bed, ok=False) and len(writes(bed, ok=True)) == written:
                between.append((event.settled, event in run.acks, run.dirty))
            return event.acked

        event = bed.send("uid-r1/a/1", outputs={"x": 1})
        await bed.until(look, what="the event acked after a retried write")
        assert between, "never looked between the failed writes"
        assert {b[0] for b in between} == {False}, "acked although its status was not written"
        assert set(between) == {(False, True, True)}, "a failed write dropped the run's work"
        attempts = writes(bed)[before:]
        assert [w.ok for w in attempts] == [False, False, False, False, True]
        for attempt in attempts:  # every try carried the event's effect and the new send
            assert phase(attempt.data, "a") == "Succeeded"
            assert task_of(attempt.data, "a")["outputs"] == {"x": 1}
            assert phase(attempt.data, "b") == "Queued"
        assert_acked_after_its_effect(bed, event, lambda s: phase(s, "a") == "Succeeded")
        sends = bed.link.with_id("uid-r1/b/1")
        assert len(sends) == 1 and sends[0].confirmed, "b/1 sent once, before any write"
        assert bed.journal.find("confirmed", "uid-r1/b/1").seq < attempts[0].seq
        await bed.settle()
        assert bed.kube.faults_left("replace_status") == 0

    drive(scenario)


def test_status_write_of_a_deleted_run_acks_its_events_and_forgets_it() -> None:
    async def scenario() -> None:
        bed = Bed()
        bed.add_workflow(TWO_STEPS)
        bed.start()
        bed.add_run("r1")
        await started(bed)
        bed.kube.gone(NAMESPACE, "r1")
        event = bed.send("uid-r1/a/1")
        await bed.until(lambda: event.acked, what="the event of a deleted run acked")
        assert bed.run("uid-r1") is None
        assert event.settlements == ["ack"]

    drive(scenario)


def test_transient_api_error_while_a_run_starts_is_retried_not_fatal() -> None:
    async def scenario() -> None:
        bed = Bed()
        bed.add_workflow(TWO_STEPS)
        bed.kube.fail_next("apply_config_map", transport_error(
            "apply ConfigMap", ConnectionRefusedError(111, "Connection refused")))
        bed.start()
        bed.add_run("r1")
        await bed.until(lambda: bed.status("r1"), what="r1's first status")
        await bed.until(lambda: bed.last("r1")["phase"] != "Pending", what="r1 to start or end")
        assert bed.last("r1")["phase"] == "Running", bed.last("r1")

    drive(scenario)


# -- b. no event is acked before a status with its effect is written --------------------------
def test_a_run_that_ends_before_its_first_write_is_written_once() -> None:
    async def scenario() -> None:
        bed = Bed(status_interval=0.01, first_status_delay=0.3)
        bed.add_workflow(TWO_STEPS)
        bed.start()
        bed.add_run("r1")
        await bed.until(lambda: bed.link.task_ids() == ["uid-r1/a/1"], what="a dispatched")
        assert bed.status("r1") is None, "written before its first delay"
        bed.send("uid-r1/a/1")
        await bed.until(lambda: "uid-r1/b/1" in bed.link.task_ids(), what="b dispatched")
        done = bed.send("uid-r1/b/1", outputs={"v": 1})
        await bed.until(lambda: done.acked, what="b's result acked", timeout=5)
        assert [s["phase"] for s in bed.kube.written("r1")] == ["Succeeded"]

        bed.add_run("r2")  # a run still going after the delay is written then, Running
        await bed.until(lambda: bed.status("r2") is not None, what="r2's first write")
        assert bed.last("r2")["phase"] == "Running"
        run = bed.run("uid-r2")
        assert run is not None and run.last_write - run.seen_at >= 0.3

    drive(scenario)


def test_events_are_acked_only_after_a_status_with_their_effect_is_written() -> None:
    spec = workflow_spec({"name": "a"}, {"name": "b"}, {"name": "c", "dependsOn": ["a", "b"]},
                         outputs={"a": "${{ tasks.a.outputs.v }}"})

    async def scenario() -> None:
        bed = Bed(status_interval=0.02)  # writes coalesce: one carries several events
        bed.add_workflow(spec)
        bed.start()
        bed.add_run("r1")
        await bed.until(lambda: phase(bed.status("r1"), "b") == "Queued")
        await bed.settle()
        run = bed.run("uid-r1")
        assert run is not None

        bed.kube.block("replace_status")  # the next write stays in flight until unblocked
        a_started = bed.send("uid-r1/a/1", "started")
        a_done = bed.send("uid-r1/a/1", outputs={"v": 1})
        await bed.until(lambda: bed.kube.waiting["replace_status"] == 1,
                        what="a write in flight")
        b_started = bed.send("uid-r1/b/1", "started")  # arrives while that write is in flight
        await bed.until(lambda: b_started in run.acks, what="b's start applied")
        await turns()
        assert not any(d.settled for d in (a_started, a_done, b_started)), \
            "acked while the status holding the effect was still being written"
        bed.kube.unblock("replace_status")
        await bed.until(lambda: a_done.acked and b_started.acked, what="the acks")

        b_done = bed.send("uid-r1/b/1", outputs={"v": 2})
        await bed.until(lambda: phase(bed.status("r1"), "c") == "Queued")
        c_done = bed.send("uid-r1/c/1", outputs={"v": 3})
        await bed.until(lambda: c_done.acked, what="c's result acked")
        await bed.settle()

        assert_acked_after_its_effect(bed, a_started, lambda s: phase(s, "a") != "Queued")
        for delivery, task, value in ((a_done, "a", 1), (b_done, "b", 2), (c_done, "c", 3)):
            assert_acked_after_its_effect(bed, delivery, succeeded_with(task, {"v": value}))
        assert_acked_after_its_effect(bed, b_started,
                                      lambda s: phase(s, "b") in ("Running", "Succeeded"))
        # b's start came after the blocked write began: that write did not hold it.
        first = bed.journal.first("kube.replace_status", "r1", ok=True,
                                  where=lambda e: phase(e.data, "a") == "Succeeded")
        assert first is not None and phase(first.data, "b") == "Queued"
        assert b_started.acked_at.seq > first.seq
        assert bed.last("r1")["phase"] == "Succeeded"

    drive(scenario)


# -- c. a task is recorded dispatched only once its publish is confirmed ----------------------
def test_no_task_is_recorded_queued_before_its_publish_is_confirmed() -> None:
    async def scenario() -> None:
        bed = Bed()
        bed.add_workflow(TWO_STEPS)
        bed.link.hold_when(lambda p: p.message_id in ("uid-r1/a/1", "uid-r1/b/1"))
        bed.start()
        bed.add_run("r1")

        async def dispatched_only_once_confirmed(task: str,
                                                 event: FakeDelivery | None) -> None:
            attempt = f"uid-r1/{task}/1"
            held = await bed.until_found(lambda: awaited(bed, attempt),
                                         what=f"the flusher waiting for {attempt}'s confirm")
            await turns()
            assert not tried_with(bed, lambda s: phase(s, task) == "Queued"), \
                f"{task} recorded Queued before its publish was confirmed"
            assert event is None or not event.settled
            bed.link.confirm(held)
            write = await bed.until_found(lambda: bed.journal.first(
                "kube.replace_status", "r1", ok=True,
                where=lambda e: phase(e.data, task) == "Queued"), what=f"{task} recorded Queued")
            assert bed.journal.find("confirmed", attempt).seq < write.seq
            if event is not None:
                await bed.until(lambda: event.acked)
                assert event.acked_at.seq > write.seq

        await dispatched_only_once_confirmed("a", None)
        await dispatched_only_once_confirmed("b", bed.send("uid-r1/a/1", outputs={"x": 1}))
        assert len(bed.link.tasks()) == 2, "each task published once"

    drive(scenario)


# -- d. a failed confirm is resent with the same message id -----------------------------------
@pytest.mark.parametrize("error", [LinkClosedError("link closed before the confirm came"),
                                   PublishRejectedError("basic.nack")],
                         ids=["dropped-confirm", "nack"])
def test_failed_confirm_is_resent_with_the_same_id_and_persisted_after_its_confirm(
        error: Exception) -> None:
    async def scenario() -> None:
        bed = Bed(retry_seconds=0.01)
        bed.add_workflow(TWO_STEPS)
        bed.link.hold_when(lambda p: p.message_id == "uid-r1/a/1")
        bed.start()
        bed.add_run("r1")

        first = await bed.until_found(lambda: awaited(bed, "uid-r1/a/1"),
                                      what="the flusher waiting for the confirm")
        bed.link.fail(first, error)
        resend = await bed.until_found(lambda: awaited(bed, "uid-r1/a/1", after=first),
                                       what="the resend, awaited")
        assert (resend.exchange, resend.routing_key, resend.body, resend.mandatory) == \
            (first.exchange, first.routing_key, first.body, first.mandatory)
        assert resend.task().attempt_id == "uid-r1/a/1"
        await turns()
        assert not tried_with(bed, lambda s: phase(s, "a") == "Queued"), \
            "recorded Queued while the resend was not confirmed"

        bed.link.confirm(resend)
        write = await bed.until_found(lambda: bed.journal.first(
            "kube.replace_status", "r1", ok=True, where=lambda e: phase(e.data, "a") == "Queued"),
            what="a recorded Queued")
        assert bed.journal.find("confirmed", "uid-r1/a/1").seq < write.seq
        await bed.settle()
        assert len(bed.link.with_id("uid-r1/a/1")) == 2, "one resend, no more"
        running = [p for p in bed.link.published if p.exchange == EVENTS_EXCHANGE]
        assert [p.routing_key for p in running] == ["run.running"], \
            "only the failed message was sent again"

        # Later publishes too: the next auto-settled confirm fails, and is resent.
        bed.link.hold_when(None)
        bed.link.fail_next_confirms(error)
        event = bed.send("uid-r1/a/1")
        await bed.until(lambda: phase(bed.status("r1"), "b") == "Queued")
        assert [p.confirmed for p in bed.link.with_id("uid-r1/b/1")] == [False, True]
        assert_acked_after_its_effect(bed, event, lambda s: phase(s, "b") == "Queued")

    drive(scenario)


# -- e. admission under maxActiveRuns -------------------------------------------------------
def test_runs_beyond_max_active_runs_wait_and_start_in_arrival_order() -> None:
    spec = workflow_spec({"name": "a"}, maxActiveRuns=1)
    waiting = waiting_message(1, "wf")

    async def scenario() -> None:
        bed = Bed()
        bed.add_workflow(spec)
        bed.start()
        for name in ("r1", "r2", "r3"):
            bed.add_run(name)
        await started(bed, "r1")
        await bed.until(lambda: (bed.status("r2") or {}).get("message") == waiting,
                        what="r2 saying it waits")
        await bed.until(lambda: bed.status("r3"), what="r3's status")
        await bed.settle()
        assert bed.last("r3")["phase"] == "Pending"
        assert bed.link.task_ids() == ["uid-r1/a/1"]
        assert bed.manager.active_runs(NAMESPACE, "wf") == 1

        for done, starts, still in (("r1", "r2", ["r3"]), ("r2", "r3", [])):
            bed.send(f"uid-{done}/a/1")
            await started(bed, starts)
            assert bed.last(done)["phase"] == "Succeeded"
            now = bed.last(starts)
            assert now["phase"] == "Running" and "message" not in now
            for name in still:
                status = bed.status(name) or {}
                assert (status.get("phase"), status.get("message")) == ("Pending", waiting)
            assert bed.manager.active_runs(NAMESPACE, "wf") == 1
        assert bed.link.task_ids() == ["uid-r1/a/1", "uid-r2/a/1", "uid-r3/a/1"]

    drive(scenario)


def test_every_run_waiting_for_a_slot_says_so() -> None:
    async def scenario() -> None:
        bed = Bed()
        bed.add_workflow(workflow_spec({"name": "a"}, maxActiveRuns=1))
        bed.start()
        for name in ("r1", "r2", "r3"):
            bed.add_run(name)
        await started(bed, "r1")
        await bed.until(lambda: bed.status("r2") and bed.status("r3"))
        await bed.settle()
        for name in ("r2", "r3"):
            assert (bed.status(name) or {}).get("message") == waiting_message(1, "wf"), name

    drive(scenario)


def test_admission_order_holds_when_the_api_server_answers_out_of_order() -> None:
    async def scenario() -> None:
        bed = Bed()
        bed.add_workflow(workflow_spec({"name": "a"}, maxActiveRuns=1))
        bed.kube.slow_next("apply_config_map", 0.06, 0.03, 0.0)
        bed.start()
        for name in ("r1", "r2", "r3"):
            bed.add_run(name)
        await bed.until(lambda: bed.link.task_ids() and
                        all(bed.status(n) for n in ("r1", "r2", "r3")),
                        what="one run started, the others written waiting")
        await bed.settle()
        assert bed.link.task_ids() == ["uid-r1/a/1"]

    drive(scenario)


# -- f. ttlSecondsAfterFinished ---------------------------------------------------------------
def test_finished_run_is_deleted_with_its_uid_after_its_ttl() -> None:
    async def scenario() -> None:
        bed = Bed()
        bed.add_workflow(workflow_spec({"name": "a"}, ttlSecondsAfterFinished=0))
        bed.start()
        bed.add_run("r1")
        await started(bed)
        bed.send("uid-r1/a/1")
        await bed.until(lambda: bed.kube.deleted_runs, what="the run deleted")
        assert bed.kube.deleted_runs == [(NAMESPACE, "r1", "uid-r1")]
        delete = bed.journal.first("kube.delete_run", "r1")
        final = bed.journal.first("kube.replace_status", "r1", ok=True,
                                  where=lambda e: e.data["phase"] == "Succeeded")
        assert final is not None and delete is not None and final.seq < delete.seq
        assert bed.run("uid-r1") is None

    drive(scenario)


def test_run_seen_finished_before_its_workflow_is_deleted_once_the_workflow_is_seen() -> None:
    ttl = 1

    async def scenario() -> None:
        bed = Bed()
        finished_ms = round((time.time() - 0.8) * 1000)  # due 0.2 s from now
        finished_at = engine.format_time(finished_ms)
        done = {"phase": "Succeeded", "finishedAt": finished_at, "workflowGeneration": 1}
        bed.start([run_body("r1", status=done), run_body("other", workflow="elsewhere",
                                                          status=done)])
        await turns()
        assert not bed.kube.calls_of("delete_run"), "deleted before its TTL was known"

        bed.add_workflow(workflow_spec({"name": "a"}, ttlSecondsAfterFinished=ttl))
        await bed.until(lambda: bed.kube.deleted_runs, what="the run deleted")
        assert bed.kube.deleted_runs == [(NAMESPACE, "r1", "uid-r1")]
        delete = bed.journal.first("kube.delete_run", "r1")
        assert delete is not None
        assert delete.at >= finished_ms / 1000 + ttl - 0.01, "deleted before its TTL was up"

    drive(scenario)


def test_ttl_delay_counts_from_finished_at() -> None:
    now = 1_700_000_100.0
    at = engine.format_time(engine.to_ms(now - 4))
    assert ttl_delay(10, at, now) == pytest.approx(6)
    assert ttl_delay(3, at, now) == 0, "past due: at once"
    assert ttl_delay(0, at, now) == 0
    assert ttl_delay(10, None, now) == 10, "finish time unknown: from now"
    assert ttl_delay(10, "not a time", now) == 10, "unreadable: from now"
    assert ttl_delay(10, engine.format_time(engine.to_ms(now + 5)), now) == pytest.approx(15)


# -- g. rebuild from status after a restart -------------------------------------------------
REBUILD_SPEC = workflow_spec(
    {"name": "a", "inputs": {"n": "${{ inputs.n }}"}},
    {"name": "fan", "dependsOn": ["a"], "forEach": "${{ tasks.a.outputs.items }}",
     "maxParallel": 2, "inputs": {"x": "${{ item }}"}},
    {"name": "b", "dependsOn": ["a"], "retry": {"limit": 2, "backoffSeconds": 0.3}},
    {"name": "c", "dependsOn": ["fan", "b"], "inputs": {"ys": "${{ tasks.fan.outputs }}"}},
    outputs={"fan": "${{ tasks.fan.outputs }}", "c": "${{ tasks.c.outputs.total }}"},
)
INPUTS = {"n": 3}
BEFORE_RESTART = {"uid-r1/a/1", "uid-r1/fan[0]/1", "uid-r1/b/1"}


def worker_script(task: TaskMessage) -> list[tuple[str, dict[str, Any]]]:
    """Deterministic workers: b's first attempt fails (retryable), everything else succeeds."""
    if task.task == "b" and task.attempt == 1:
        return [("started", {}), ("failed", {"error": "flaky"})]
    inputs = task.inputs
    if task.task == "a":
        outputs: dict[str, Any] = {"items": list(range(1, inputs["n"] + 1))}
    elif task.task == "fan":
        outputs = {"y": inputs["x"] * 10}
    elif task.task == "b":
        outputs = {"ok": True}
    else:
        outputs = {"total": sum(y["y"] for y in inputs["ys"])}
    return [("started", {}), ("succeeded", {"outputs": outputs})]


def finished(bed: Bed) -> bool:
    return (bed.status("r1") or {}).get("phase") == "Succeeded" and bed.quiet()


def summary(status: dict[str, Any]) -> list[tuple[Any, ...]]:
    """A status without its times: what an uninterrupted and a resumed run must agree on."""
    return [(t["name"], t["phase"], t.get("attempts"), t.get("outputs"), t.get("reason"),
             t.get("items")) for t in status["tasks"]]


def test_rebuilt_run_carries_on_as_if_never_interrupted() -> None:
    result: dict[str, Any] = {}

    async def uninterrupted() -> None:
        bed = Bed()
        bed.add_workflow(REBUILD_SPEC)
        bed.start()
        bed.add_run("r1", inputs=INPUTS)
        await Workers(bed, worker_script).serve_until(lambda: finished(bed))
        result["plain"] = bed

    async def before_restart() -> None:
        bed = Bed()
        bed.add_workflow(REBUILD_SPEC)
        bed.start()
        bed.add_run("r1", inputs=INPUTS)
        workers = Workers(bed, worker_script, takes=BEFORE_RESTART.__contains__)

        def part_way() -> bool:
            status = bed.status("r1") or {}
            fan = task_entry(status, "fan") or {}
            return phase(status, "b") == "Retrying" and \
                fan.get("items", {}).get("states") == "SQ2" and bed.quiet()

        await workers.serve_until(part_way, what="the run part-way")
        assert "uid-r1/b/2" not in bed.link.task_ids(), "b's backoff ran out before the restart"
        result["first"], result["taken"] = bed, workers.done

    async def after_restart() -> None:
        first: Bed = result["first"]
        bed = Bed()
        bed.add_workflow(REBUILD_SPEC)
        snapshot = first.status("r1")
        bed.start([run_body("r1", inputs=INPUTS, status=snapshot)])
        # The broker kept the messages the first operator published and no worker took yet.
        workers = Workers(bed, worker_script, sources=[first.link, bed.link],
                          done=result["taken"])
        stale = bed.send("uid-r1/a/1", outputs={"items": [9]})  # a duplicate, redelivered
        await workers.serve_until(lambda: finished(bed), what="the resumed run to finish")
        assert stale.settlements == ["ack"]
        result["second"] = bed

    drive(uninterrupted)
    drive(before_restart)
    drive(after_restart)
    plain, first, second = result["plain"], result["first"], result["second"]

    assert second.link.task_ids() == ["uid-r1/b/2", "uid-r1/c/1"], \
        "after the restart only what was still to do is dispatched, with its attempt ids"
    assert sorted(first.link.task_ids() + second.link.task_ids()) == \
        sorted(plain.link.task_ids()), "every attempt dispatched once over the restart"
    run_events = [p.routing_key for p in second.link.published if p.exchange == EVENTS_EXCHANGE]
    assert run_events == ["run.succeeded"], "the resumed run did not start again"
    resumed, straight = second.status("r1"), plain.status("r1")
    assert resumed["outputs"] == straight["outputs"] == {"fan": [{"y": 10}, {"y": 20}, {"y": 30}],
                                                         "c": 60}
    assert summary(resumed) == summary(straight)
    assert [e.message for e in second.kube.events if e.message.startswith("task a ")] == [], \
        "no Kubernetes Event again for what happened before the restart"


def test_event_during_a_rebuild_waits_for_it_and_the_run_keeps_its_generation() -> None:
    """A run of an older generation is rebuilt from that generation's snapshot ConfigMap; an
    event that comes while the snapshot is read is parked, applied once the run is rebuilt,
    and acked only after the status holding its effect is written."""
    newer = workflow_spec({"name": "a"}, {"name": "c", "dependsOn": ["a"]})
    saved: dict[str, Any] = {}

    async def before_restart() -> None:
        bed = Bed()
        bed.add_workflow(TWO_STEPS, generation=1)
        bed.start()
        bed.add_run("r1")
        await started(bed)
        saved["status"] = bed.status("r1")
        saved["config_maps"] = dict(bed.kube.config_maps)  # the generation's snapshot

    async def after_restart() -> None:
        bed = Bed()
        bed.kube.config_maps.update(saved["config_maps"])
        bed.add_workflow(newer, generation=2)  # edited meanwhile: the run keeps generation 1
        bed.kube.block("get_config_map_data")
        bed.start([run_body("r1", status=saved["status"])])
        event = bed.send("uid-r1/a/1", outputs={"x": 1})
        await bed.until(lambda: bed.kube.waiting["get_config_map_data"] == 1,
                        what="the rebuild reading the snapshot")
        await turns()
        assert not event.settled and not bed.link.published, "applied before the rebuild"
        bed.kube.unblock("get_config_map_data")
        await bed.until(lambda: event.acked, what="the parked event applied and acked")
        assert bed.link.task_ids() == ["uid-r1/b/1"], "generation 1's next task, not c"
        assert_acked_after_its_effect(bed, event, lambda s: phase(s, "a") == "Succeeded"
                                      and phase(s, "b") == "Queued")
        assert bed.last("r1")["workflowGeneration"] == 1

    drive(before_restart)
    drive(after_restart)


def test_rebuilt_run_posts_each_kubernetes_event_once() -> None:
    snapshot: dict[str, Any] = {}
    posted: list[str] = []

    async def before_restart() -> None:
        bed = Bed()
        bed.add_workflow(TWO_STEPS)
        bed.start()
        bed.add_run("r1")
        await started(bed)
        bed.send("uid-r1/a/1")
        await bed.until(lambda: phase(bed.status("r1"), "b") == "Queued" and bed.quiet())
        await bed.until(lambda: len(bed.kube.events) == 1, what="the run's Event")
        snapshot.update(bed.status("r1") or {})
        posted.extend(e.reason for e in bed.kube.events)

    async def after_restart() -> None:
        bed = Bed()
        bed.add_workflow(TWO_STEPS)
        bed.start([run_body("r1", status=snapshot)])
        bed.send("uid-r1/b/1", "started")
        await bed.until(lambda: phase(bed.status("r1"), "b") == "Running" and bed.quiet())
        bed.send("uid-r1/b/1")
        await bed.until(lambda: bed.run("uid-r1") is None and
                        any(e.reason == "RunSucceeded" for e in bed.kube.events))
        posted.extend(e.reason for e in bed.kube.events)

    drive(before_restart)
    drive(after_restart)
    assert posted == ["RunRunning", "RunSucceeded"], "RunRunning posted again after the restart"


def test_rebuilt_run_arms_its_timer_when_nothing_else_is_in_flight() -> None:
    spec = workflow_spec({"name": "a"}, {"name": "b", "dependsOn": ["a"],
                                         "retry": {"limit": 1, "backoffSeconds": 0.2}})
    snapshot: dict[str, Any] = {}

    async def before_restart() -> None:
        bed = Bed()
        bed.add_workflow(spec)
        bed.start()
        bed.add_run("r1")
        await started(bed)
        bed.send("uid-r1/a/1")
        await bed.until(lambda: phase(bed.status("r1"), "b") == "Queued")
        bed.send("uid-r1/b/1", "failed", error="flaky")
        await bed.until(lambda: phase(bed.status("r1"), "b") == "Retrying" and bed.quiet())
        snapshot.update(bed.status("r1") or {})

    async def after_restart() -> None:
        bed = Bed()
        bed.add_workflow(spec)
        bed.start([run_body("r1", status=snapshot)])
        await bed.until(lambda: "uid-r1/b/2" in bed.link.task_ids(), timeout=1.0,
                        what="b's retry dispatched after the restart")

    drive(before_restart)
    drive(after_restart)


# -- h. duplicate and stale events ----------------------------------------------------------
def test_duplicate_and_stale_events_change_nothing_and_are_acked() -> None:
    spec = workflow_spec({"name": "a"}, {"name": "b", "dependsOn": ["a"],
                                         "retry": {"limit": 1, "backoffSeconds": 0}},
                         {"name": "c", "dependsOn": ["b"]})

    async def scenario() -> None:
        bed = Bed()
        bed.add_workflow(spec)
        bed.start()
        bed.add_run("r1")
        await started(bed)

        async def changes_nothing(delivery: FakeDelivery) -> None:
            writes_before, sent_before = len(writes(bed)), len(bed.link.published)
            status_before = bed.status("r1")
            again = bed.redeliver(delivery) if delivery in bed.deliveries else \
                bed.deliver(delivery)
            await bed.until(lambda: again.settled, what=f"{again.message_id} settled")
            await turns()
            assert again.settlements == ["ack"]
            assert bed.quiet(), "a duplicate left work behind"
            assert len(writes(bed)) == writes_before, "a duplicate caused a status write"
            assert len(bed.link.published) == sent_before, "a duplicate caused a publish"
            assert bed.status("r1") == status_before

        a_done = bed.send("uid-r1/a/1", outputs={"v": 1})
        await bed.until(lambda: a_done.acked and phase(bed.status("r1"), "b") == "Queued")
        await bed.settle()
        await changes_nothing(a_done)  # the same result again
        await changes_nothing(a_done)  # and again

        b_start = bed.send("uid-r1/b/1", "started")
        await bed.until(lambda: phase(bed.status("r1"), "b") == "Running" and bed.quiet())
        await changes_nothing(b_start)
        bed.send("uid-r1/b/1", "failed", error="flaky")
        await bed.until(lambda: (task_entry(bed.status("r1"), "b") or {}).get("attempts") == 2
                        and bed.quiet())
        assert phase(bed.status("r1"), "b") == "Queued"
        # Results of the attempt that was retried are stale now: nothing changes.
        await changes_nothing(bed.deliveries[-1])
        await changes_nothing(worker_event("uid-r1/b/1", outputs={"late": True},
                                           journal=bed.journal))
        await changes_nothing(worker_event("uid-r1/b/3", outputs={"future": True},
                                           journal=bed.journal))
        b_done = bed.send("uid-r1/b/2", outputs={"v": 2})
        await bed.until(lambda: phase(bed.status("r1"), "c") == "Queued" and bed.quiet())
        await changes_nothing(b_done)
        assert task_of(bed.status("r1"), "b")["outputs"] == {"v": 2}
        assert bed.link.task_ids() == ["uid-r1/a/1", "uid-r1/b/1", "uid-r1/b/2", "uid-r1/c/1"]

        c_done = bed.send("uid-r1/c/1")
        await bed.until(lambda: c_done.acked and bed.run("uid-r1") is None)
        final = bed.status("r1")
        assert final is not None and final["phase"] == "Succeeded"
        late = bed.redeliver(c_done)  # the run is over and forgotten: acked, dropped
        await bed.until(lambda: late.settled)
        await turns()
        assert late.settlements == ["ack"] and bed.status("r1") == final

    drive(scenario)


# -- nothing in the run loop dies and takes a run's work with it ------------------------------
def test_an_unforeseen_error_while_a_run_starts_is_retried_not_fatal() -> None:
    async def scenario() -> None:
        bed = Bed()
        bed.add_workflow(TWO_STEPS)
        bed.kube.fail_next("apply_config_map", RuntimeError("a bug nobody foresaw"))
        bed.start()
        bed.add_run("r1")
        await bed.until(bed.link.task_ids, what="r1's first dispatch")
        assert bed.link.task_ids() == ["uid-r1/a/1"]
        assert bed.kube.faults_left("apply_config_map") == 0, "the failing write was tried"

    drive(scenario)


def test_a_429_write_waits_what_the_server_asked_before_trying_again() -> None:
    async def scenario() -> None:
        bed = Bed(retry_seconds=0.01)
        bed.add_workflow(TWO_STEPS)
        bed.start()
        bed.add_run("r1")
        await started(bed)
        bed.kube.fail_next("replace_status",
                           KubeError("replace status: Too Many Requests", 429, retry_after=0.4))
        bed.send("uid-r1/a/1", outputs={"x": 1})
        failed = await bed.until_found(lambda: next(iter(writes(bed, ok=False)), None),
                                       what="the throttled write")
        retried = await bed.until_found(
            lambda: next((w for w in writes(bed) if w.seq > failed.seq), None),
            what="the write tried again")
        assert retried.at - failed.at >= 0.4, "tried again before the server's Retry-After"

    drive(scenario)


def test_an_event_that_meets_a_bug_is_dropped_and_the_loop_keeps_serving() -> None:
    async def scenario() -> None:
        bed = Bed()
        bed.add_workflow(TWO_STEPS)
        bed.start()
        bed.add_run("r1")
        bed.add_run("r2")
        await started(bed, "r1")
        await started(bed, "r2")
        run = bed.run("uid-r1")
        assert run is not None and run.state is not None
        run.state.tasks[0].spec = None  # type: ignore[assignment]  # corrupt: apply raises
        poisoned = bed.send("uid-r1/a/1", outputs={"x": 1})
        await bed.until(lambda: poisoned.settled, what="the poisoned event settled")
        assert poisoned.settlements == ["ack"]
        assert bed.metrics.events.labels("succeeded", "error")._value.get() == 1
        # The other run is untouched and carries on.
        bed.send("uid-r2/a/1", outputs={"x": 2})
        await bed.until(lambda: phase(bed.status("r2"), "a") == "Succeeded",
                        what="the other run to go on")

    drive(scenario)


def test_a_timer_that_meets_a_bug_is_armed_again() -> None:
    async def scenario() -> None:
        bed = Bed(retry_seconds=0.02)
        bed.add_workflow(workflow_spec({"name": "a", "retry": {"limit": 2,
                                                               "backoffSeconds": 1}}))
        bed.start()
        bed.add_run("r1")
        await started(bed)
        run = bed.run("uid-r1")
        assert run is not None and run.state is not None
        bed.send("uid-r1/a/1", "failed", error="boom")
        await bed.until(lambda: phase(bed.status("r1"), "a") == "Retrying",
                        what="the task to wait for its retry")
        # A timer for a task that does not exist, in front of the retry's: the Tick that
        # meets it raises (once: it is taken off the heap first).
        heapq.heappush(run.state.timers, (0, engine_progress.RETRY_TIMER, 99, 0, 1))
        await bed.until(lambda: bed.link.with_id("uid-r1/a/2"), what="the retry after all")

    drive(scenario)


@pytest.mark.parametrize("body", [b"not json", b'{"v": 1, "status": "succeeded"}',
                                  b'{"v": 1, "status": "started", "attemptId": "no-slashes"}',
                                  b"\xff\xfe" * 1000, b"[" * 100_000])
def test_what_is_no_event_is_dead_lettered_with_the_reason_and_acked(body: bytes) -> None:
    async def scenario() -> None:
        bed = Bed()
        bed.add_workflow(TWO_STEPS)
        bed.start()
        bed.add_run("r1")
        await started(bed)
        junk = bed.deliver(FakeDelivery(body, "task.succeeded.x", "junk-1",
                                        journal=bed.journal))
        copy = await bed.until_found(lambda: next(iter(bed.link.with_id("junk-1")), None),
                                     what="the copy to the dead-letter queue")
        assert (copy.exchange, copy.routing_key) == ("", EVENTS_QUEUE + ".dead")
        assert copy.body == body and copy.headers is not None
        assert copy.headers["x-conveyor-reason"] in ("malformed", "not-an-attempt-id")
        await bed.until(lambda: junk.settled, what="the junk to be acked")
        assert junk.settlements == ["ack"]
        # The run loop goes on as if nothing came.
        bed.send("uid-r1/a/1", outputs={"x": 1})
        await bed.until(lambda: phase(bed.status("r1"), "a") == "Succeeded",
                        what="the run to go on")

    drive(scenario)

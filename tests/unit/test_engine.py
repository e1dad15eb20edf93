"""The engine's rules, one by one (DESIGN.md §2)."""

import pytest

from conveyor import engine
from conveyor.models import WorkflowRunStatus
from unit.builders import compiled, task
from unit.driving import T0, Driver


def phases(d: Driver) -> dict[str, str]:
    return {t["name"]: t["phase"] for t in d.status()["tasks"]}


def test_run_waits_pending_until_started() -> None:
    d = Driver(compiled(task("a")))
    assert d.status()["phase"] == "Pending"
    assert d.apply(engine.TaskSucceeded("run-1/a/1")) == []
    actions = d.start()
    assert actions[0] == engine.EmitRunEvent("Running")
    assert d.ids() == ["run-1/a/1"]
    assert d.start() == []  # a second Start is a duplicate


def test_admission_decision() -> None:
    assert engine.admit(3, None)
    assert engine.admit(3, 4)
    assert not engine.admit(4, 4)


def test_task_waits_for_all_dependencies() -> None:
    d = Driver(compiled(task("a"), task("b"), task("c", "a", "b")))
    d.start()
    assert d.ids() == ["run-1/a/1", "run-1/b/1"]
    d.succeed("run-1/a/1")
    assert "run-1/c/1" not in d.ids()
    d.succeed("run-1/b/1")
    assert d.ids()[-1] == "run-1/c/1"


def test_inputs_see_run_inputs_and_upstream_outputs() -> None:
    wf = compiled(task("a"), task("b", "a", inputs={
        "order": "${{ inputs.order }}", "n": "${{ tasks.a.outputs.n + 1 }}",
        "text": "id-${{ inputs.order.id }}", "phase": "${{ tasks.a.phase }}"}))
    d = Driver(wf, {"order": {"id": 42}})
    d.start()
    d.succeed("run-1/a/1", {"n": 1})
    assert d.published[-1].inputs == {"order": {"id": 42}, "n": 2, "text": "id-42",
                                      "phase": "Succeeded"}


def test_when_false_skips_and_dependents_still_run() -> None:
    d = Driver(compiled(task("a", when="${{ inputs.go }}"), task("b", "a")), {"go": False})
    d.start()
    assert phases(d) == {"a": "Skipped", "b": "Queued"}
    assert d.task("a")["reason"] == "WhenFalse"


def test_when_must_be_a_bool() -> None:
    d = Driver(compiled(task("a", when="${{ 1 }}")))
    d.start()
    a = d.task("a")
    assert (a["phase"], a["reason"]) == ("Failed", "ExpressionError")
    assert a["message"] == "spec.tasks[0].when: expected a bool, got int"
    assert d.status()["phase"] == "Failed"


def test_expression_error_fails_the_task_with_expression_and_error() -> None:
    d = Driver(compiled(task("a", inputs={"x": "${{ inputs.missing }}"})))
    d.start()
    a = d.task("a")
    assert a["phase"] == "Failed"
    assert a["message"] == ("spec.tasks[0].inputs.x: expression 'inputs.missing': "
                            "no such key: 'missing'")


def test_failure_skips_dependents_transitively_and_fails_the_run() -> None:
    d = Driver(compiled(task("a"), task("b", "a"), task("c", "b"), task("x")))
    d.start()
    d.fail("run-1/a/1", "card declined", retryable=False)
    assert phases(d) == {"a": "Failed", "b": "Skipped", "c": "Skipped", "x": "Queued"}
    assert d.task("c")["reason"] == "UpstreamFailed"
    assert d.status()["phase"] == "Running"  # the independent branch goes on
    d.succeed("run-1/x/1")
    status = d.status()
    assert status["phase"] == "Failed"
    assert status["message"] == "task a failed after 1 attempt: card declined"
    assert status["conditions"][0]["status"] == "False"


def test_retries_back_off_exponentially_with_a_cap() -> None:
    retry = {"limit": 3, "backoffSeconds": 1, "backoffFactor": 3, "maxBackoffSeconds": 5}
    d = Driver(compiled(task("a", retry=retry)))
    d.start()
    actions = d.fail("run-1/a/1")
    assert engine.SetTimer(T0 + 1) in actions
    assert d.task("a")["phase"] == "Retrying"
    assert d.task("a")["nextAttemptAt"] == "2023-11-14T22:13:21Z"
    assert d.advance(0.999) == []  # not due yet
    d.advance(0.001)
    assert d.ids()[-1] == "run-1/a/2"
    d.fail("run-1/a/2")
    assert d.run.timer_at == round((d.now + 3) * 1000)
    d.advance(3)
    d.fail("run-1/a/3")
    assert d.run.timer_at == round((d.now + 5) * 1000)  # 9s capped to 5s
    d.advance(5)
    d.fail("run-1/a/4", "still broken")
    a = d.task("a")
    assert (a["phase"], a["attempts"]) == ("Failed", 4)
    assert d.status()["message"] == "task a failed after 4 attempts: still broken"


def test_non_retryable_failure_is_final() -> None:
    d = Driver(compiled(task("a", retry={"limit": 5})))
    d.start()
    d.fail("run-1/a/1", retryable=False)
    assert d.task("a")["phase"] == "Failed"


def test_attempt_times_out_from_its_start_and_is_retried() -> None:
    d = Driver(compiled(task("a", timeoutSeconds=30, retry={"limit": 1})))
    d.start()
    d.advance(100)  # queued time does not count
    assert d.task("a")["phase"] == "Queued"
    d.started("run-1/a/1")
    assert d.task("a")["timeoutAt"] == "2023-11-14T22:15:30Z"
    d.advance(30)
    assert d.task("a")["phase"] == "Retrying"
    assert d.task("a")["message"] == "attempt 1 timed out after 30s"
    assert d.succeed("run-1/a/1") == []  # the timed-out attempt's late result is ignored
    d.advance(1)
    d.started("run-1/a/2")
    d.advance(30)
    a = d.task("a")
    assert (a["phase"], a["reason"]) == ("Failed", "Timeout")


def test_stale_duplicate_and_foreign_events_change_nothing() -> None:
    d = Driver(compiled(task("a", retry={"limit": 2})))
    d.start()
    d.fail("run-1/a/1")
    d.advance(1)
    before = d.status()
    for event in [engine.TaskSucceeded("run-1/a/1"), engine.TaskStarted("run-1/a/1"),
                  engine.TaskSucceeded("other-run/a/1"), engine.TaskSucceeded("run-1/zzz/2"),
                  engine.TaskSucceeded("run-1/a[0]/2"), engine.TaskSucceeded("garbage"),
                  engine.TaskSucceeded("run-1/a/3")]:
        assert d.apply(event) == []
    assert d.status() == before
    d.succeed("run-1/a/2", {"ok": 1})
    after = d.status()
    assert d.succeed("run-1/a/2", {"ok": 2}) == []
    assert d.status() == after


def test_heartbeat_counts_as_start_only_when_the_start_was_missed() -> None:
    d = Driver(compiled(task("a")))
    d.start()
    assert d.apply(engine.TaskHeartbeat("run-1/a/1", "w")) != []
    assert d.task("a")["phase"] == "Running"
    assert d.apply(engine.TaskHeartbeat("run-1/a/1", "w")) == []


def test_for_each_respects_max_parallel_and_keeps_item_order() -> None:
    wf = compiled(task("fan", forEach="${{ inputs.xs }}", maxParallel=2,
                       inputs={"x": "${{ item }}", "i": "${{ index }}"}))
    d = Driver(wf, {"xs": ["a", "b", "c", "d"]})
    d.start()
    assert d.ids() == ["run-1/fan[0]/1", "run-1/fan[1]/1"]
    d.succeed("run-1/fan[1]/1", {"r": "B"})
    assert d.ids()[-1] == "run-1/fan[2]/1"
    assert d.published[-1].inputs == {"x": "c", "i": 2}
    items = d.task("fan")["items"]
    assert items == {"total": 4, "succeeded": 1, "failed": 0, "running": 2, "states": "QSQP"}
    for i in (2, 0, 3):
        d.succeed(f"run-1/fan[{i}]/1", {"r": "ABCD"[i]})
    fan = d.task("fan")
    assert fan["phase"] == "Succeeded"
    assert fan["outputs"] == [{"r": "A"}, {"r": "B"}, {"r": "C"}, {"r": "D"}]


def test_for_each_on_a_non_list_fails_with_its_place() -> None:
    d = Driver(compiled(task("a"), task("fan", "a", forEach="${{ tasks.a.outputs }}")))
    d.start()
    d.succeed("run-1/a/1", {"not": "a list"})
    fan = d.task("fan")
    assert (fan["phase"], fan["reason"]) == ("Failed", "InvalidForEach")
    assert fan["message"] == "spec.tasks[1].forEach: expected a list, got map"


def test_empty_for_each_succeeds_with_no_outputs() -> None:
    d = Driver(compiled(task("fan", forEach="${{ [] }}"), task("next", "fan")))
    d.start()
    assert d.task("fan")["outputs"] == []
    assert d.ids() == ["run-1/next/1"]


def test_item_failure_fails_the_task_and_abandons_the_rest() -> None:
    d = Driver(compiled(task("fan", forEach="${{ [1, 2, 3, 4] }}", maxParallel=2)))
    d.start()
    d.fail("run-1/fan[1]/1", "bad item", retryable=False)
    fan = d.task("fan")
    assert fan["phase"] == "Failed"
    assert fan["message"] == "item 1 failed after 1 attempt: bad item"
    assert fan["items"]["states"] == "CFC2"
    assert d.succeed("run-1/fan[0]/1") == []  # abandoned: its late result is ignored


def test_item_retry_keeps_its_slot_and_survives_in_status() -> None:
    d = Driver(compiled(task("fan", forEach="${{ [1, 2, 3] }}", maxParallel=2,
                             retry={"limit": 1, "backoffSeconds": 2})))
    d.start()
    d.fail("run-1/fan[0]/1")
    assert d.ids() == ["run-1/fan[0]/1", "run-1/fan[1]/1"]  # retrying holds its slot
    items = d.task("fan")["items"]
    assert items["states"] == "WQP"
    assert items["active"] == [{"index": 0, "attempt": 1, "dueAt": "2023-11-14T22:13:22Z"}]
    d.rebuild()
    d.advance(2)
    assert d.ids()[-1] == "run-1/fan[0]/2"


def test_finally_runs_after_everything_and_sees_run_failed() -> None:
    wf = compiled(task("a"), task("b", "a"),
                  final=[task("cleanup", when="${{ run.failed }}"), task("report", "cleanup")])
    d = Driver(wf)
    d.start()
    d.fail("run-1/a/1", retryable=False)
    assert phases(d) == {"a": "Failed", "b": "Skipped", "cleanup": "Queued",
                         "report": "Pending"}
    d.succeed("run-1/cleanup/1")
    d.succeed("run-1/report/1")
    assert d.status()["phase"] == "Failed"


def test_finally_skipped_by_when_on_success() -> None:
    d = Driver(compiled(task("a"), final=[task("cleanup", when="${{ run.failed }}")]))
    d.start()
    d.succeed("run-1/a/1")
    assert phases(d)["cleanup"] == "Skipped"
    assert d.status()["phase"] == "Succeeded"


def test_run_outputs_are_evaluated_on_success() -> None:
    d = Driver(compiled(task("charge"), outputs={"receipt": "${{ tasks.charge.outputs.id }}"}))
    d.start()
    actions = d.succeed("run-1/charge/1", {"id": "r-1"})
    assert engine.EmitRunEvent("Succeeded", None, {"receipt": "r-1"}) in actions
    status = d.status()
    assert status["outputs"] == {"receipt": "r-1"}
    assert status["progress"] == "1/1"
    assert status["conditions"][0]["status"] == "True"


def test_run_outputs_error_fails_the_run() -> None:
    d = Driver(compiled(task("a"), outputs={"r": "${{ tasks.a.outputs.nope }}"}))
    d.start()
    d.succeed("run-1/a/1")
    status = d.status()
    assert status["phase"] == "Failed"
    assert "spec.outputs.r" in status["message"]


def test_outputs_over_the_cap_fail_with_output_too_large() -> None:
    d = Driver(compiled(task("a", retry={"limit": 3})))
    d.start()
    d.succeed("run-1/a/1", {"blob": "x" * engine.OUTPUT_LIMIT})
    a = d.task("a")
    assert (a["phase"], a["reason"], a["attempts"]) == ("Failed", "OutputTooLarge", 1)
    assert "exceed the 4096-byte inline limit: configure an object store" in a["message"]


def test_deadline_fails_the_run_and_cancels_what_is_left() -> None:
    d = Driver(compiled(task("a"), final=[task("f")], deadlineSeconds=60))
    d.start()
    d.advance(59.999)
    assert d.status()["phase"] == "Running"
    actions = d.advance(0.001)
    assert engine.EmitRunEvent("Failed", "run exceeded its deadline of 60s") in actions
    assert phases(d) == {"a": "Cancelled", "f": "Cancelled"}
    assert d.succeed("run-1/a/1") == []


def test_cancel_abandons_queued_attempts_and_ignores_late_results() -> None:
    d = Driver(compiled(task("a"), task("b", "a")))
    d.start()
    d.apply(engine.Cancel())
    status = d.status()
    assert status["phase"] == "Cancelled"
    assert phases(d) == {"a": "Cancelled", "b": "Cancelled"}
    assert d.succeed("run-1/a/1") == []
    assert d.apply(engine.Cancel()) == []
    assert d.apply(engine.Tick()) == []


def test_cancel_a_pending_run() -> None:
    d = Driver(compiled(task("a")))
    d.apply(engine.Cancel())
    assert d.status()["phase"] == "Cancelled"
    assert d.start() == []


def test_status_validates_against_the_api_model() -> None:
    d = Driver(compiled(task("a", timeoutSeconds=5), task("fan", "a", forEach="${{ [1, 2] }}")))
    d.start()
    d.started("run-1/a/1")
    WorkflowRunStatus.model_validate(d.status())
    d.succeed("run-1/a/1")
    WorkflowRunStatus.model_validate(d.status())


@pytest.mark.parametrize("restart_after", range(7))
def test_a_rebuilt_run_continues_as_the_original(restart_after: int) -> None:
    wf = compiled(task("a", timeoutSeconds=10, retry={"limit": 2}),
                  task("fan", "a", forEach="${{ tasks.a.outputs.xs }}", maxParallel=2,
                       retry={"limit": 1}),
                  final=[task("f")], deadlineSeconds=3600)
    script: list[tuple[float, engine.Signal]] = [
        (0, engine.Start()), (0, engine.TaskStarted("run-1/a/1")), (11, engine.Tick()),
        (2, engine.Tick()), (0, engine.TaskSucceeded("run-1/a/2", {"xs": [1, 2, 3]})),
        (0, engine.TaskFailed("run-1/fan[1]/1", "flaky")), (1, engine.Tick()),
        (0, engine.TaskSucceeded("run-1/fan[0]/1", {"i": 0})),
        (0, engine.TaskSucceeded("run-1/fan[1]/2", {"i": 1})),
        (0, engine.TaskSucceeded("run-1/fan[2]/1", {"i": 2})),
        (0, engine.TaskSucceeded("run-1/f/1")),
    ]
    original, rebuilt = Driver(wf), Driver(wf)
    for step, (delay, event) in enumerate(script):
        for d in (original, rebuilt):
            d.now += delay
            d.actions = []
            d.apply(event)
            if d is rebuilt and step == restart_after:
                d.rebuild()
                d.apply(engine.Tick())
        assert rebuilt.status() == original.status(), step
        assert rebuilt.published == original.published or step == restart_after
    assert original.status()["phase"] == "Succeeded"

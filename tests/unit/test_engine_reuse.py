"""Seeding a run from spec.reuse (`conveyor retry`): reused tasks are Succeeded before the run
starts, are never dispatched, and their dependents see their outputs."""

from conveyor import engine
from unit.builders import compiled, task
from unit.driving import T0, Driver


def seeded(workflow, reuse, inputs=None):  # type: ignore[no-untyped-def]
    d = Driver(workflow, inputs)
    d.run = engine.new_run(workflow, "run-1", d.inputs, T0, reuse=reuse)
    return d


def test_reused_tasks_are_succeeded_with_reason_reused_and_no_attempts() -> None:
    d = seeded(compiled(task("a"), task("b", "a")), {"a": {"n": 1}})
    a = d.task("a")
    assert a["phase"] == "Succeeded" and a["reason"] == "Reused" and a["outputs"] == {"n": 1}
    assert "attempts" not in a
    assert d.status()["phase"] == "Pending" and d.status()["progress"] == "1/2"


def test_dependents_of_reused_tasks_see_their_outputs_and_run_at_start() -> None:
    wf = compiled(task("a"), task("b", "a", inputs={"n": "${{ tasks.a.outputs.n + 1 }}"}))
    d = seeded(wf, {"a": {"n": 1}})
    d.start()
    assert d.ids() == ["run-1/b/1"], "the reused task is not dispatched"
    assert d.published[0].inputs == {"n": 2}
    d.succeed("run-1/b/1", {"done": True})
    assert d.status()["phase"] == "Succeeded"


def test_a_task_waits_for_its_other_dependencies_besides_the_reused_one() -> None:
    d = seeded(compiled(task("a"), task("b"), task("c", "a", "b")), {"a": {}})
    d.start()
    assert d.ids() == ["run-1/b/1"]
    d.succeed("run-1/b/1")
    assert d.ids() == ["run-1/b/1", "run-1/c/1"]


def test_a_reused_foreach_task_holds_its_item_outputs() -> None:
    wf = compiled(task("fan", forEach="${{ [1, 2] }}"),
                  task("sum", "fan", inputs={"got": "${{ tasks.fan.outputs }}"}))
    d = seeded(wf, {"fan": [{"x": 1}, {"x": 2}]})
    fan = d.task("fan")
    assert fan["items"]["total"] == 2 and fan["items"]["states"] == "S2"
    d.start()
    assert d.published[0].inputs == {"got": [{"x": 1}, {"x": 2}]}


def test_when_every_task_is_reused_finally_runs_and_the_run_ends() -> None:
    wf = compiled(task("a"), final=[task("cleanup")], outputs={"n": "${{ tasks.a.outputs.n }}"})
    d = seeded(wf, {"a": {"n": 7}, "cleanup": {}})
    assert d.task("cleanup")["phase"] == "Pending", "finally tasks are never reused"
    d.start()
    assert d.ids() == ["run-1/cleanup/1"]
    d.succeed("run-1/cleanup/1")
    assert d.status()["phase"] == "Succeeded" and d.status()["outputs"] == {"n": 7}


def test_a_run_wholly_reused_without_finally_succeeds_on_start() -> None:
    d = seeded(compiled(task("a"), outputs={"n": "${{ tasks.a.outputs.n }}"}), {"a": {"n": 3}})
    actions = d.start()
    assert d.ids() == []
    assert d.status()["phase"] == "Succeeded" and d.status()["outputs"] == {"n": 3}
    assert engine.EmitRunEvent("Succeeded", None, {"n": 3}) in actions


def test_unknown_names_and_a_foreach_without_a_list_are_ignored() -> None:
    wf = compiled(task("a"), task("fan", forEach="${{ [1] }}"))
    run = engine.new_run(wf, "run-1", {}, T0)
    assert engine.seed(run, {"gone": {}, "fan": {"not": "a list"}, "a": None}) == ["a"]
    assert run.tasks[1].phase == "Pending"


def test_a_seeded_run_round_trips_through_its_status_and_resumes_the_same() -> None:
    wf = compiled(task("a"), task("fan", forEach="${{ [1, 2] }}"), task("c", "a", "fan"),
                  final=[task("f")])
    d = seeded(wf, {"a": {"n": 1}, "fan": [1, 2]})
    status = d.status()
    rebuilt = engine.from_status(wf, "run-1", {}, status)
    assert engine.to_status(rebuilt) == engine.to_status(d.run)
    d.run = rebuilt
    d.start()
    assert d.ids() == ["run-1/c/1"]

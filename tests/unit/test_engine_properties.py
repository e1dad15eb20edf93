"""Properties of the engine over random DAGs and random interleavings of events.

A random workflow runs twice, in lockstep, on the same random events: `original` never
restarts, `twin` is rebuilt from its serialised status at random points. Events include
duplicates, replays of old events, stale attempts and timer ticks at random times.
"""

import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conveyor import engine
from conveyor.engine import RUN_TERMINAL, TERMINAL
from conveyor.workflow import CompiledWorkflow
from unit.builders import compiled
from unit.driving import Driver

WHEN = [None, None, "${{ true }}", "${{ false }}", "${{ run.failed }}"]


@st.composite
def workflows(draw: st.DrawFn) -> CompiledWorkflow:
    def tasks(prefix: str, count: int) -> list[dict[str, Any]]:
        made: list[dict[str, Any]] = []
        for i in range(count):
            earlier = [t["name"] for t in made]
            task: dict[str, Any] = {
                "name": f"{prefix}{i}", "type": "pool",
                "dependsOn": draw(st.lists(st.sampled_from(earlier), unique=True, max_size=3))
                if earlier else [],
                "retry": {"limit": draw(st.integers(0, 2)), "backoffSeconds": 1,
                          "maxBackoffSeconds": 4},
                "inputs": {},
            }
            if draw(st.booleans()):
                task["timeoutSeconds"] = draw(st.sampled_from([1, 5, 30]))
            when = draw(st.sampled_from(WHEN))
            if when:
                task["when"] = when
            if draw(st.integers(0, 3)) == 0:
                size = draw(st.integers(0, 4))
                task["forEach"] = "${{ " + json.dumps(list(range(size))) + " }}"
                task["inputs"] = {"item": "${{ item }}", "index": "${{ index }}"}
                parallel = draw(st.sampled_from([None, 1, 2]))
                if parallel:
                    task["maxParallel"] = parallel
            made.append(task)
        return made

    main = tasks("t", draw(st.integers(1, 6)))
    final = tasks("f", draw(st.integers(0, 2)))
    extra = {"deadlineSeconds": draw(st.sampled_from([None, 50, 500]))}
    return compiled(*main, final=final,
                    **{k: v for k, v in extra.items() if v is not None})


def check_publishes_respect_dependencies(d: Driver, actions: list[engine.Action]) -> None:
    status = {t["name"]: t for t in d.status()["tasks"]}
    workflow = d.workflow
    for action in actions:
        if not isinstance(action, engine.Publish):
            continue
        spec = workflow.by_name[action.task]
        for dep in spec.depends_on:
            dep_status = status[workflow.tasks[dep].name]
            assert dep_status["phase"] == "Succeeded" or (
                dep_status["phase"] == "Skipped" and dep_status["reason"] != "UpstreamFailed"
            ), (action.task, dep_status)
        if spec.is_finally:
            assert all(status[t.name]["phase"] in TERMINAL
                       for t in workflow.tasks[: workflow.main_count])


def step(original: Driver, twin: Driver, event: engine.Signal, seen: list[engine.Signal]) -> None:
    """Apply one event to both runs and check every property that holds after it."""
    a = original.apply(event)
    b = twin.apply(event)
    assert a == b, event
    status = original.status()
    assert twin.status() == status, event
    check_publishes_respect_dependencies(original, a)
    # Replaying the event at once changes nothing, whatever it was.
    assert original.apply(event) == [], event
    assert original.status() == status
    twin.apply(event)
    if not isinstance(event, engine.Tick | engine.Start | engine.Cancel):
        seen.append(event)


def draw_event(data: st.DataObject, original: Driver, twin: Driver,
               seen: list[engine.Signal]) -> engine.Signal | None:
    """A random event to apply to both runs; None when the draw did its work itself."""
    ids = original.ids()
    choice = data.draw(st.sampled_from(
        ["succeed", "succeed", "fail", "start", "heartbeat", "tick", "replay", "restart",
         "cancel", "stale"]))
    if choice == "restart":
        twin.rebuild()
        return None
    if choice == "replay":  # any event seen before, at any later time, changes nothing
        if seen:
            old = data.draw(st.sampled_from(seen))
            before = original.status()
            assert original.apply(old) == [] and twin.apply(old) == []
            assert original.status() == before == twin.status()
        return None
    if choice == "tick":
        delay = data.draw(st.sampled_from([0, 0.5, 1, 2, 5, 30, 100]))
        original.now += delay
        twin.now += delay
        return engine.Tick()
    if choice == "cancel":
        return engine.Cancel() if data.draw(st.integers(0, 5)) == 0 else None
    if not ids:
        return None
    target = data.draw(st.sampled_from(ids))
    if choice == "stale":  # an attempt the engine never dispatched
        uid, where, attempt = target.split("/")
        return engine.TaskSucceeded(f"{uid}/{where}/{int(attempt) + 5}", {})
    if choice == "succeed":
        return engine.TaskSucceeded(target, {"by": target}, "w1")
    if choice == "fail":
        return engine.TaskFailed(target, "boom", data.draw(st.booleans()), "w1")
    if choice == "start":
        return engine.TaskStarted(target, "w1")
    return engine.TaskHeartbeat(target, "w1")


def drive_to_end(original: Driver, twin: Driver, seen: list[engine.Signal]) -> None:
    """Finish whatever is in flight and let timers fire, until the run ends."""
    for _ in range(200):
        if original.run.phase in RUN_TERMINAL:
            return
        for attempt_id in dict.fromkeys(p.attempt_id for p in original.published):
            step(original, twin, engine.TaskSucceeded(attempt_id, {}, "w1"), seen)
        original.now += 1000
        twin.now += 1000
        step(original, twin, engine.Tick(), seen)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(workflow=workflows(), data=st.data())
def test_random_runs_keep_every_promise(workflow: CompiledWorkflow, data: st.DataObject) -> None:
    original, twin = Driver(workflow), Driver(workflow)
    seen: list[engine.Signal] = []
    step(original, twin, engine.Start(), seen)
    for _ in range(data.draw(st.integers(0, 60), label="steps")):
        event = draw_event(data, original, twin, seen)
        if event is not None:
            step(original, twin, event, seen)
    drive_to_end(original, twin, seen)

    status = original.status()
    assert status["phase"] in RUN_TERMINAL
    assert all(t["phase"] in TERMINAL for t in status["tasks"])
    total = len(status["tasks"])
    assert status["progress"] == f"{total}/{total}"
    ended = [a for a in original.actions
             if isinstance(a, engine.EmitRunEvent) and a.phase in RUN_TERMINAL]
    assert len(ended) == 1 and ended[0].phase == status["phase"]
    # A finished run ignores everything.
    for event in [*seen, engine.Tick(), engine.Cancel(), engine.Start()]:
        assert original.apply(event) == []
    assert original.status() == status

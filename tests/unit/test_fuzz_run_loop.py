"""A hostile run next to a normal one, through the operator's run loop (the real RunManager over
the in-memory fakes): the hostile run fails, each task naming its field; the normal run ends
exactly as it does alone, and in time; the loop goes on serving runs afterwards.

Hostile: a `when` whose comprehensions would build a million items, a fan-out of 200,000 items,
inputs that concatenate 1 MiB strings or nest past the depth limit, and workers that answer
with outputs over the limits or deeply nested.
"""

from __future__ import annotations

import time
from typing import Any

from conveyor.models import TaskMessage
from unit import fuzzing
from unit.fakes import Bed, Workers, drive, task_of, workflow_spec

NORMAL = workflow_spec(
    {"name": "a", "inputs": {"n": "${{ inputs.n }}"}},
    {"name": "fan", "dependsOn": ["a"], "forEach": "${{ tasks.a.outputs.items }}",
     "maxParallel": 2, "inputs": {"x": "${{ item }}"}},
    {"name": "c", "dependsOn": ["fan"], "inputs": {"ys": "${{ tasks.fan.outputs }}"}},
    outputs={"fan": "${{ tasks.fan.outputs }}", "c": "${{ tasks.c.outputs.total }}"},
)
HOSTILE = workflow_spec(
    {"name": "bomb", "when": "${{ " + fuzzing.costly_expressions()[0] + " }}"},
    {"name": "flood", "forEach": "${{ inputs.items }}", "inputs": {"i": "${{ item }}"}},
    {"name": "blob", "inputs": {"b": "${{ inputs.s + inputs.s + inputs.s + inputs.s + "
                                      "inputs.s }}"}},
    {"name": "deep", "inputs": {"d": "${{ [inputs.deep] }}"}},
    {"name": "loud"},
    {"name": "nested"},
)
HOSTILE_INPUTS = {"s": "x" * fuzzing.MiB, "items": list(range(200_000)),
                  "deep": fuzzing.nested(150)}
# Expected: (phase, reason, the start of the message)
HOSTILE_ENDS = {
    "bomb": ("Failed", "ExpressionError", "spec.tasks[0].when: expression "),
    "flood": ("Failed", "ExpressionError", "spec.tasks[1].forEach: expression 'inputs.items':"
                                           " yields 200000 items"),
    "blob": ("Failed", "ExpressionError", "spec.tasks[2].inputs.b: expression "),
    "deep": ("Failed", "ExpressionError", "spec.tasks[3].inputs.d: expression '[inputs.deep]'"
                                          ": builds a value nested deeper than 100 levels"),
    "loud": ("Failed", "OutputTooLarge", "failed after 1 attempt: outputs of "),
    "nested": ("Succeeded", None, None),
}


def worker_script(task: TaskMessage) -> list[tuple[str, dict[str, Any]]]:
    if task.task == "loud":
        return [("succeeded", {"outputs": {"big": "x" * 100_000}})]
    if task.task == "nested":
        return [("succeeded", {"outputs": {"d": fuzzing.nested(60)}})]
    inputs = task.inputs
    if task.task == "a":
        outputs: dict[str, Any] = {"items": list(range(1, inputs["n"] + 1))}
    elif task.task == "fan":
        outputs = {"y": inputs["x"] * 10}
    else:
        outputs = {"total": sum(o["y"] for o in inputs["ys"])}
    return [("started", {}), ("succeeded", {"outputs": outputs})]


def phase(bed: Bed, run: str) -> str | None:
    return (bed.status(run) or {}).get("phase")


def summary(status: dict[str, Any]) -> list[tuple[Any, ...]]:
    return [(t["name"], t["phase"], t.get("attempts"), t.get("outputs"), t.get("reason"))
            for t in status["tasks"]] + [("outputs", status.get("outputs"))]


def test_a_hostile_run_neither_crashes_the_loop_nor_changes_or_stalls_a_normal_run() -> None:
    alone: dict[str, Any] = {}

    async def normal_alone() -> None:
        bed = Bed()
        bed.add_workflow(NORMAL, name="normal")
        bed.start()
        bed.add_run("n1", workflow="normal", inputs={"n": 3})
        await Workers(bed, worker_script).serve_until(
            lambda: phase(bed, "n1") == "Succeeded" and bed.quiet())
        alone["n1"] = summary(bed.last("n1"))

    async def side_by_side() -> None:
        bed = Bed()
        bed.add_workflow(NORMAL, name="normal")
        bed.add_workflow(HOSTILE, name="hostile")
        bed.start()
        began = time.monotonic()
        bed.add_run("h1", workflow="hostile", inputs=HOSTILE_INPUTS)
        bed.add_run("n1", workflow="normal", inputs={"n": 3})
        workers = Workers(bed, worker_script)
        await workers.serve_until(
            lambda: phase(bed, "n1") == "Succeeded" and phase(bed, "h1") == "Failed"
            and bed.quiet(), timeout=20, what="both runs to end")
        assert summary(bed.last("n1")) == alone["n1"]
        hostile = bed.last("h1")
        for name, (want, reason, message) in HOSTILE_ENDS.items():
            task = task_of(hostile, name)
            assert (task["phase"], task.get("reason")) == (want, reason), task
            if message is not None:
                assert task["message"].startswith(message), task["message"][:300]
        # Each rendering stopped at its limit: the whole scene is seconds, not minutes.
        assert time.monotonic() - began < 15
        # The loop is still serving: another normal run goes through.
        bed.add_run("n2", workflow="normal", inputs={"n": 2})
        await workers.serve_until(lambda: phase(bed, "n2") == "Succeeded", timeout=5,
                                  what="a later run to succeed")

    drive(normal_alone)
    drive(side_by_side, timeout=30)

"""Benchmark of the run engine alone: events applied per second, status bytes per task.

    .venv/bin/python bench/bench_engine.py [--repeat 5]

Not a test: it measures and prints a table (median of --repeat runs). Scenarios:
- a forEach over 10,000 items (maxParallel 100), each item started then succeeded with a
  small output, inputs rendered from `item` per dispatch;
- a chain of 1,000 tasks, each reading its predecessor's outputs. The API admits at most
  150 tasks per Workflow (the CEL cost budget of admission), so this chain is built past
  the model's bound to measure how the engine scales.
Status bytes are of the compact JSON status at the end, divided by the finished tasks (for
the forEach: by its items, which stand in for tasks there).
"""

import argparse
import gc
import json
import statistics
import time
from collections.abc import Callable
from typing import Any

from conveyor import engine
from conveyor.models import Task, TaskType, WorkflowSpec
from conveyor.workflow import CompiledWorkflow, compile_workflow

T0 = 1_700_000_000.0


def fan_out(items: int) -> tuple[CompiledWorkflow, dict[str, Any]]:
    spec = WorkflowSpec.model_validate({
        "taskTypes": [{"name": "inventory", "image": "example.com/w:1"}],
        "tasks": [{"name": "reserve", "type": "inventory", "forEach": "${{ inputs.items }}",
                   "maxParallel": 100, "inputs": {"sku": "${{ item.sku }}"}}],
    })
    inputs = {"items": [{"sku": f"sku-{i}"} for i in range(items)]}
    return compile_workflow(spec, "wf", 1), inputs


def chain(length: int) -> tuple[CompiledWorkflow, dict[str, Any]]:
    tasks = [Task.model_validate({
        "name": f"t{i:04d}", "type": "step",
        "dependsOn": [f"t{i - 1:04d}"] if i else [],
        "inputs": {"previous": f"${{{{ tasks.t{i - 1:04d}.outputs.n }}}}"} if i else {},
    }) for i in range(length)]
    spec = WorkflowSpec.model_construct(  # past MAX_TASKS on purpose, see the docstring
        task_types=[TaskType(name="step", image="example.com/w:1")], tasks=tasks,
        finally_=[], outputs={}, deadline_seconds=None, max_active_runs=None, triggers=[],
        ttl_seconds_after_finished=None,
    )
    return compile_workflow(spec, "wf", 1), {}


def drive(workflow: CompiledWorkflow, inputs: dict[str, Any]) -> tuple[int, float, Any]:
    """Run to the end, answering every publish with started + succeeded; (events, s, run)."""
    run = engine.new_run(workflow, "0b9c7a52-3f7e-4d5e-9a1b-2c3d4e5f6a7b", inputs, T0)
    now = T0
    events = 0
    gc.disable()  # measure the engine, not the collector's pauses
    begin = time.perf_counter()
    pending = [a for a in engine.apply(run, engine.Start(), now) if isinstance(a, engine.Publish)]
    events += 1
    while pending:
        publish = pending.pop()
        now += 0.001
        engine.apply(run, engine.TaskStarted(publish.attempt_id, "worker-7d9f8"), now)
        actions = engine.apply(run, engine.TaskSucceeded(publish.attempt_id,
                                                     {"n": publish.index or 0},
                                                     "worker-7d9f8"), now)
        events += 2
        pending += [a for a in actions if isinstance(a, engine.Publish)]
    elapsed = time.perf_counter() - begin
    gc.enable()
    assert run.phase == "Succeeded", run.message
    return events, elapsed, run


def measure(name: str, build: Callable[[], tuple[CompiledWorkflow, dict[str, Any]]],
            finished: Callable[[Any], int], repeat: int) -> list[str]:
    workflow, inputs = build()
    rates = []
    run: Any = None
    events = 0
    for _ in range(repeat):
        events, elapsed, run = drive(workflow, inputs)
        rates.append(events / elapsed)
    status = json.dumps(engine.to_status(run), separators=(",", ":"))
    count = finished(run)
    return [name, f"{events:,}", f"{statistics.median(rates):,.0f}",
            f"{min(rates):,.0f}", f"{len(status):,}", f"{len(status) / count:.1f}"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    rows = [
        measure("forEach 10,000 items", lambda: fan_out(10_000),
                lambda run: run.tasks[0].total, args.repeat),
        measure("chain of 1,000 tasks", lambda: chain(1_000),
                lambda run: len(run.tasks), args.repeat),
    ]
    header = ["scenario", "events", "events/s (median)", "events/s (min)", "status bytes",
              "bytes/finished task"]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, ["-" * w for w in widths], *rows]:
        print("  ".join(cell.ljust(w) if i == 0 else cell.rjust(w)
                        for i, (cell, w) in enumerate(zip(row, widths, strict=True))))


if __name__ == "__main__":
    main()

"""The run engine's rules: (run state, signal, now) -> actions, deterministic and free of I/O.

`apply` updates the run in place (a copy per signal would cost more than the signal) and returns
the actions the operator must take, in order: publish attempts, then persist the status, then
ack the signal's message. Time is an argument; the engine has no clock.

The rules (DESIGN.md §2):
- A task is ready when every dependency is Succeeded or Skipped (not UpstreamFailed); a Failed,
  Cancelled or UpstreamFailed dependency skips it with reason UpstreamFailed.
- `when` is evaluated when the task is ready; false skips it (WhenFalse), a non-bool fails it.
- `forEach` is evaluated once ready and must yield a list; items are dispatched in index order,
  at most `maxParallel` in flight (waiting to retry counts as in flight). The first item that
  fails for good fails the task and abandons the others. Outputs are item outputs in order.
- A failed attempt is retried while `retry.policy` retries why it failed (Error, Lost,
  Timeout; never NonRetryable: retrying.py) and attempts remain, after an exponential, capped
  backoff; an attempt that outlives `timeoutSeconds` after its start fails with Timeout.
  The latest failed attempts of each task are kept in its status, each with its reason.
- finally tasks start when every main task is terminal, and see `run.failed`.
- The run ends when every task is terminal: Failed if any task failed, else Succeeded with
  its outputs evaluated. The deadline fails it; cancel cancels it. Neither runs finally tasks:
  both mean "stop now".
- Events for attempts that are not current, or already ended, change nothing: every attempt
  id is deterministic, so duplicates and stale attempts are recognised, and each result is
  applied once.
- Outputs are capped (OUTPUT_LIMIT per attempt, TASK_OUTPUTS_LIMIT per task, RUN_OUTPUTS_LIMIT
  per run) so the status fits one object; over a cap the task fails with OutputTooLarge.
"""

from collections.abc import Mapping
from typing import Any

from conveyor.engine import actions as act
from conveyor.engine import signals as sig
from conveyor.engine.progress import (
    REUSED,
    SUCCEEDED,
    RunState,
    StoreTarget,
    json_size,
    next_timer,
    show_outputs,
    to_ms,
)
from conveyor.engine.stepping import Step
from conveyor.stored import REF, is_items_ref
from conveyor.workflow import CompiledWorkflow


def new_run(workflow: CompiledWorkflow, uid: str, inputs: dict[str, Any], now: float,
            reuse: Mapping[str, Any] | None = None, *, store: StoreTarget | None = None,
            values: Mapping[str, Any] | None = None) -> RunState:
    """A run in phase Pending; `Start` it once admitted. `reuse` is the run's spec.reuse;
    `store` and `values` as for `RunState`."""
    run = RunState(workflow, uid, inputs, to_ms(now), store=store, values=values)
    if reuse:
        seed(run, reuse)
    return run


def seed(run: RunState, reuse: Mapping[str, Any]) -> list[str]:
    """Mark the tasks named in `reuse` Succeeded with those outputs, before the run starts.

    The outputs come from an earlier run (`conveyor retry`): such a task is not dispatched,
    its dependents see its outputs as if it had just run, and its status says reason Reused
    with 0 attempts. Only spec.tasks entries take part (finally tasks react to this run's
    outcome, so they always run), and a forEach task only with a list (one output per item).
    Returns the names seeded; entries that fit none of that are ignored, since a Workflow
    edited since the earlier run may have renamed or reshaped its tasks.
    """
    if run.phase != "Pending":
        return []
    seeded = []
    for task in run.tasks[: run.workflow.main_count]:
        spec = task.spec
        if spec.name not in reuse or task.phase != "Pending":
            continue
        outputs = reuse[spec.name]
        count = None
        if spec.for_each is None:
            outputs = [{} if outputs is None else outputs]
        elif is_items_ref(outputs):
            # Stored by the earlier run: referenced, never copied (its objects stay while a
            # run reuses them: see the operator's store cleanup).
            count = int(outputs[REF]["items"])
            task.fixed_ref = outputs
            outputs = []
        elif not isinstance(outputs, list):
            continue
        count = len(outputs) if count is None else count
        task.phases = [SUCCEEDED] * count
        # What `status.from_status` rebuilds for the same status, so the two agree.
        task.attempt_of = [0] if spec.for_each is None else [1] * count
        task.outputs = list(outputs) or [None] * count
        task.next_index = task.succeeded = count
        task.out_bytes = sum(json_size(o) for o in outputs)
        run.out_bytes += task.out_bytes
        task.phase, task.reason, task.finished_at = "Succeeded", REUSED, run.created_at
        run.terminal += 1
        run.main_terminal += 1
        show_outputs(run, task)
        seeded.append(spec.name)
    # Dependents count only unsatisfied dependencies, exactly as `status` rebuilds them.
    for task in run.tasks:
        task.waiting = sum(1 for d in task.spec.depends_on
                           if run.tasks[d].phase != "Succeeded")
    return seeded


def admit(active_runs: int, max_active_runs: int | None) -> bool:
    """Whether one more run of a Workflow may start now, or must stay Pending."""
    return max_active_runs is None or active_runs < max_active_runs


def apply(run: RunState, signal: sig.Signal, now: float) -> list[act.Action]:
    """Apply one signal at time `now` (epoch seconds); [] when it changes nothing."""
    step = Step(run, to_ms(now))
    step.handle(signal)
    if not step.changed:
        return []
    step.settle()
    step.actions.append(act.SetTimer(next_timer(run)))
    step.actions.append(act.Persist())
    return step.actions

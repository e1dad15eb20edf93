"""What happens to tasks and their instances within one step of the engine: an instance
begins, succeeds or fails (and maybe retries); a task becomes ready, fans out, dispatches,
fails or finishes. `Step` (stepping.py) drives these from signals; the rules are stated in
rules.py.
"""

import heapq
from collections import deque
from typing import Any

from conveyor.engine import actions as act
from conveyor.engine.progress import (
    ACTIVE,
    CANCELLED,
    EXPRESSION_ERROR,
    FAILED,
    INVALID_FOR_EACH,
    OUTPUT_TOO_LARGE,
    PENDING,
    QUEUED,
    RETRY_TIMER,
    RETRYING,
    RUNNING,
    SUCCEEDED,
    TIMEOUT_TIMER,
    WHEN_FALSE,
    RunState,
    TaskState,
    json_size,
)
from conveyor.errors import ExpressionError
from conveyor.names import attempt_id

OUTPUT_LIMIT = 4 * 1024
# forEach items dispatched between two persisted statuses of a run, at most: a status write
# waits for the confirms of what it records, so this bounds the wait and what a crash before
# the write makes the workers do again. Each batch waits for a write, so a smaller one costs
# fan-out throughput: 2,000 measured about 10% below unbatched on a 5,000-item fan-out.
DISPATCH_BATCH = 5000
TASK_OUTPUTS_LIMIT = 256 * 1024
RUN_OUTPUTS_LIMIT = 1024 * 1024


class TaskSteps:
    """The task-level half of a step, and the state of the step: the actions gathered and
    whether anything changed."""

    __slots__ = ("actions", "changed", "finished", "now", "run")

    def __init__(self, run: RunState, now: int) -> None:
        self.run = run
        self.now = now
        self.actions: list[act.Action] = []
        self.changed = False
        self.finished: deque[TaskState] = deque()  # tasks ended, dependents not yet told

    # --- instances ---------------------------------------------------------------------

    def begin(self, task: TaskState, i: int, worker: str | None) -> None:
        self.changed = True
        task.phases[i] = RUNNING
        if task.spec.for_each is None:
            task.phase = "Running"
            task.worker = worker or task.worker
            self.run.views[task.spec.name]["phase"] = "Running"
        timeout = task.spec.timeout_ms
        if timeout is not None:
            due = self.now + timeout
            task.due[i] = due
            heapq.heappush(self.run.timers,
                           (due, TIMEOUT_TIMER, task.spec.position, i, task.attempt_of[i]))

    def succeed(self, task: TaskState, i: int, outputs: Any, worker: str | None) -> None:
        if outputs is None:
            outputs = {}
        size = json_size(outputs)
        where = "" if task.spec.for_each is None else f"item {i} "
        too_large = None
        if size > OUTPUT_LIMIT:
            too_large = f"{where}outputs of {size} bytes exceed the {OUTPUT_LIMIT}-byte limit"
        elif task.out_bytes + size > TASK_OUTPUTS_LIMIT:
            too_large = f"outputs exceed the task's {TASK_OUTPUTS_LIMIT}-byte limit at {where}"
        elif self.run.out_bytes + size > RUN_OUTPUTS_LIMIT:
            too_large = f"outputs exceed the run's {RUN_OUTPUTS_LIMIT}-byte limit"
        if too_large is not None:
            self.attempt_failed(task, i, too_large.strip(), False, reason=OUTPUT_TOO_LARGE,
                                worker=worker)
            return
        self.changed = True
        task.phases[i] = SUCCEEDED
        task.outputs[i] = outputs
        task.out_bytes += size
        self.run.out_bytes += size
        task.succeeded += 1
        task.active -= 1
        task.due.pop(i, None)
        if task.spec.for_each is None:
            task.worker = worker or task.worker
        if task.succeeded == len(task.phases):
            self.finish(task, "Succeeded")
        else:
            self.fill(task)

    def attempt_failed(self, task: TaskState, i: int, error: str, retryable: bool, *,
                       reason: str, worker: str | None) -> None:
        self.changed = True
        attempt = task.attempt_of[i]
        plain = task.spec.for_each is None
        if plain:
            task.worker = worker or task.worker
        if retryable and attempt <= task.spec.retry.limit:
            due = self.now + task.spec.backoff_ms(attempt)
            task.phases[i] = RETRYING
            task.due[i] = due
            heapq.heappush(self.run.timers, (due, RETRY_TIMER, task.spec.position, i, attempt))
            if plain:
                task.phase = "Retrying"
                task.message = error
                self.run.views[task.spec.name]["phase"] = "Retrying"
            return
        task.phases[i] = FAILED
        task.due.pop(i, None)
        task.active -= 1
        task.failed_items += 1
        times = "1 attempt" if attempt == 1 else f"{attempt} attempts"
        where = "" if plain else f"item {i} "
        self.fail(task, reason, f"{where}failed after {times}: {error}")

    # --- tasks ---------------------------------------------------------------------------

    def ready(self, task: TaskState) -> None:
        """Every dependency is satisfied: decide, expand and dispatch."""
        spec = task.spec
        self.changed = True
        if spec.when is not None:
            try:
                decision = spec.when.render(self.variables())
            except ExpressionError as error:
                self.fail(task, EXPRESSION_ERROR, str(error))
                return
            if not isinstance(decision, bool):
                self.fail(task, EXPRESSION_ERROR,
                          f"{spec.path}.when: expected a bool, got {describe(decision)}")
                return
            if not decision:
                self.finish(task, "Skipped", WHEN_FALSE, "when was false")
                return
        task.started_at = self.now
        count = 1
        if spec.for_each is not None:
            items = self.items(task)
            if items is None:
                return
            count = len(items)
            task.phase = "Running"
        else:
            task.phase = "Queued"
        task.phases = [PENDING] * count
        task.attempt_of = [0] * count
        task.outputs = [None] * count
        self.run.views[spec.name]["phase"] = task.phase
        if count == 0:
            self.finish(task, "Succeeded")
        else:
            self.fill(task)

    def items(self, task: TaskState) -> list[Any] | None:
        """The forEach list (evaluated once, or again after a rebuild); None if it failed."""
        if task.items is not None:
            return task.items
        spec = task.spec
        assert spec.for_each is not None
        try:
            value = spec.for_each.render(self.variables())
        except ExpressionError as error:
            self.fail(task, EXPRESSION_ERROR, str(error))
            return None
        if not isinstance(value, list):
            self.fail(task, INVALID_FOR_EACH,
                      f"{spec.path}.forEach: expected a list, got {describe(value)}")
            return None
        task.items = value
        return value

    def fill(self, task: TaskState) -> None:
        """Dispatch never-dispatched instances while the task's parallelism allows, and, for
        a forEach, while fewer than DISPATCH_BATCH items went out since the last persisted
        status: the rest follow each write (`Persisted`), so a write never waits on the
        confirms of a whole fan-out, and a crash redoes at most a batch of unrecorded work."""
        limit = task.spec.max_parallel
        total = len(task.phases)
        run = self.run
        batched = task.spec.for_each is not None
        while task.next_index < total and (limit is None or task.active < limit):
            if batched:
                if run.unpersisted >= DISPATCH_BATCH:
                    return
                run.unpersisted += 1
            i = task.next_index
            task.next_index += 1
            task.active += 1
            if not self.dispatch(task, i, 1):
                return

    def fill_held_back(self) -> None:
        """Dispatch what `fill` held back for a persisted status, as far as it now may."""
        for task in self.run.tasks:
            if (task.spec.for_each is not None and task.phase == "Running"
                    and task.next_index < task.total):
                before = task.next_index
                self.fill(task)
                if task.next_index != before:
                    self.changed = True

    def dispatch(self, task: TaskState, i: int, attempt: int) -> bool:
        """Publish attempt `attempt` of instance `i`; False if its inputs failed to render."""
        publish = self.publication(task, i, attempt)
        if publish is None:
            return False
        task.attempt_of[i] = attempt
        task.attempts += 1
        self.queued(task, i, publish)
        return True

    def redispatch(self, task: TaskState, i: int) -> None:
        """The current attempt of instance `i` lost its message: publish it again, same id
        and inputs (they render from what has not changed since), Queued again. A timeout
        counts from the start its new message reports."""
        publish = self.publication(task, i, task.attempt_of[i])
        if publish is None:
            return
        self.changed = True
        task.due.pop(i, None)
        self.queued(task, i, publish)

    def queued(self, task: TaskState, i: int, publish: act.Publish) -> None:
        task.phases[i] = QUEUED
        if publish.index is None:
            task.phase = "Queued"
            self.run.views[task.spec.name]["phase"] = "Queued"
        self.actions.append(publish)

    def publication(self, task: TaskState, i: int, attempt: int) -> act.Publish | None:
        """The message of attempt `attempt` of instance `i`; None if its inputs failed to
        render (the task has failed then)."""
        spec = task.spec
        index: int | None = None
        variables = self.variables()
        if spec.for_each is not None:
            items = self.items(task)
            if items is None:
                return None
            index = i
            variables["item"] = items[i] if i < len(items) else None
            variables["index"] = i
        try:
            inputs = spec.inputs.render(variables)
        except ExpressionError as error:
            self.fail(task, EXPRESSION_ERROR, str(error))
            return None
        return act.Publish(
            attempt_id(self.run.uid, spec.name, index, attempt), spec.name, index, attempt,
            spec.type, inputs, None if spec.timeout_ms is None else spec.timeout_ms // 1000,
        )

    def fail(self, task: TaskState, reason: str, message: str) -> None:
        """The task fails: abandon its other instances, tell the run."""
        self.abandon(task)
        run = self.run
        if run.message is None:
            run.message = f"task {task.spec.name} {message}"
        self.finish(task, "Failed", reason, message)

    def abandon(self, task: TaskState) -> None:
        """Instances not ended become Cancelled: their late results will be ignored."""
        phases = task.phases
        for i in range(task.next_index):
            if phases[i] in ACTIVE:
                phases[i] = CANCELLED
        for i in range(task.next_index, task.total):
            phases[i] = CANCELLED
        task.next_index = task.total
        task.active = 0
        task.due.clear()

    def finish(self, task: TaskState, phase: str, reason: str | None = None,
               message: str | None = None) -> None:
        """The task reaches a terminal phase; its dependents learn of it in `settle`."""
        self.changed = True
        run = self.run
        task.phase = phase
        task.reason = reason
        task.message = message if message is not None else task.message
        task.finished_at = self.now
        run.terminal += 1
        if not task.spec.is_finally:
            run.main_terminal += 1
        if phase == "Failed":
            run.failed = True
        view = run.views[task.spec.name]
        view["phase"] = phase
        view["outputs"] = task.result()
        self.finished.append(task)

    def variables(self) -> dict[str, Any]:
        """What expressions see, `item` and `index` aside."""
        run = self.run
        return {"inputs": run.inputs, "tasks": run.views, "run": {"failed": run.failed}}


def describe(value: Any) -> str:
    names = {bool: "bool", int: "int", float: "double", str: "string", list: "list",
             dict: "map", type(None): "null"}
    return names.get(type(value), type(value).__name__)

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
- A failed attempt is retried while `retryable` and attempts remain, after an exponential,
  capped backoff; an attempt that outlives `timeoutSeconds` after its start fails, retryable.
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

import heapq
from collections import deque
from collections.abc import Mapping
from typing import Any

from conveyor.engine import actions as act
from conveyor.engine import signals as sig
from conveyor.engine.progress import (
    ACTIVE,
    CANCELLED,
    CANCELLED_REASON,
    DEADLINE_EXCEEDED,
    DEADLINE_TIMER,
    ERROR,
    EXPRESSION_ERROR,
    FAILED,
    INVALID_FOR_EACH,
    OUTPUT_TOO_LARGE,
    PENDING,
    QUEUED,
    RETRY_TIMER,
    RETRYING,
    REUSED,
    RUN_TERMINAL,
    RUNNING,
    SUCCEEDED,
    TERMINAL,
    TIMEOUT,
    TIMEOUT_TIMER,
    UPSTREAM_FAILED,
    WHEN_FALSE,
    RunState,
    TaskState,
    json_size,
)
from conveyor.errors import ExpressionError
from conveyor.names import attempt_id
from conveyor.workflow import CompiledWorkflow

OUTPUT_LIMIT = 4 * 1024
TASK_OUTPUTS_LIMIT = 256 * 1024
RUN_OUTPUTS_LIMIT = 1024 * 1024

_ATTEMPT_EVENTS = frozenset((sig.TaskStarted, sig.TaskHeartbeat, sig.TaskSucceeded, sig.TaskFailed))
_IN_FLIGHT = (QUEUED, RUNNING)


def new_run(workflow: CompiledWorkflow, uid: str, inputs: dict[str, Any], now: float,
            reuse: Mapping[str, Any] | None = None) -> RunState:
    """A run in phase Pending; `Start` it once admitted. `reuse` is the run's spec.reuse."""
    run = RunState(workflow, uid, inputs, to_ms(now))
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
        if spec.for_each is None:
            outputs = [{} if outputs is None else outputs]
        elif not isinstance(outputs, list):
            continue
        task.phases = [SUCCEEDED] * len(outputs)
        # What `status.from_status` rebuilds for the same status, so the two agree.
        task.attempt_of = [0] if spec.for_each is None else [1] * len(outputs)
        task.outputs = list(outputs)
        task.next_index = task.succeeded = len(outputs)
        task.out_bytes = sum(json_size(o) for o in outputs)
        run.out_bytes += task.out_bytes
        task.phase, task.reason, task.finished_at = "Succeeded", REUSED, run.created_at
        run.terminal += 1
        run.main_terminal += 1
        run.views[spec.name] = {"phase": "Succeeded", "outputs": task.result()}
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
    step = _Step(run, to_ms(now))
    step.handle(signal)
    if not step.changed:
        return []
    step.settle()
    step.actions.append(act.SetTimer(_next_timer(run)))
    step.actions.append(act.Persist())
    return step.actions


def to_ms(seconds: float) -> int:
    """Engine time: integer milliseconds, so status round-trips exactly."""
    return round(seconds * 1000)


def _next_timer(run: RunState) -> float | None:
    timers = run.timers
    while timers and not timer_valid(run, timers[0]):
        heapq.heappop(timers)
    run.timer_at = timers[0][0] if timers else None
    return None if run.timer_at is None else run.timer_at / 1000


def timer_valid(run: RunState, timer: tuple[int, int, int, int, int]) -> bool:
    """Whether a heap entry still stands for a timer the state holds."""
    due, kind, position, index, attempt = timer
    if kind == DEADLINE_TIMER:
        return run.phase == "Running"
    task = run.tasks[position]
    if task.phase in TERMINAL or index >= task.total or task.due.get(index) != due:
        return False
    wanted = RETRYING if kind == RETRY_TIMER else RUNNING
    return task.phases[index] == wanted and task.attempt_of[index] == attempt


def parse_attempt_id(value: str) -> tuple[str, str, int | None, int] | None:
    """(run uid, task, index, attempt) of an attempt id, or None if it is not one."""
    parts = value.split("/")
    if len(parts) != 3 or not parts[2].isdigit():
        return None
    uid, where, attempt = parts
    index: int | None = None
    if where[-1:] == "]":
        where, _, number = where[:-1].partition("[")
        if not number.isdigit():
            return None
        index = int(number)
    return uid, where, index, int(attempt)


class _Step:
    """One application of one signal: the actions gathered and whether anything changed."""

    __slots__ = ("actions", "changed", "finished", "now", "run")

    def __init__(self, run: RunState, now: int) -> None:
        self.run = run
        self.now = now
        self.actions: list[act.Action] = []
        self.changed = False
        self.finished: deque[TaskState] = deque()  # tasks ended, dependents not yet told

    # --- signals -------------------------------------------------------------------------

    def handle(self, event: sig.Signal) -> None:
        run = self.run
        kind = type(event)
        if kind in _ATTEMPT_EVENTS:
            if run.phase == "Running":
                self.on_attempt(event)  # type: ignore[arg-type]
        elif kind is sig.Tick:
            if run.phase == "Running":
                self.on_tick()
        elif kind is sig.Start:
            if run.phase == "Pending":
                self.start()
        elif kind is sig.Cancel and run.phase not in RUN_TERMINAL:
            self.stop("Cancelled", CANCELLED_REASON, "cancelled: spec.cancel is true")

    def start(self) -> None:
        run = self.run
        self.changed = True
        run.phase = "Running"
        run.started_at = self.now
        self.actions.append(act.EmitRunEvent("Running"))
        deadline = run.deadline_at
        if deadline is not None:
            heapq.heappush(run.timers, (deadline, DEADLINE_TIMER, 0, 0, 0))
        main = run.tasks[: run.workflow.main_count]
        # Tasks seeded from spec.reuse are Succeeded already: their dependents may be ready.
        for task in main:
            if task.phase == "Pending" and task.waiting == 0:
                self.ready(task)
        if run.main_terminal == run.workflow.main_count:  # every main task was reused
            for final in run.tasks[run.workflow.main_count:]:
                if not final.spec.depends_on and final.phase == "Pending":
                    self.ready(final)

    def on_attempt(self, event: sig.AttemptSignal) -> None:
        parsed = parse_attempt_id(event.attempt_id)
        if parsed is None:
            return
        uid, name, index, attempt = parsed
        spec = self.run.workflow.by_name.get(name)
        if uid != self.run.uid or spec is None:
            return
        task = self.run.tasks[spec.position]
        if (spec.for_each is None) != (index is None):
            return
        i = index or 0
        # Only the current attempt of an instance still in flight may change anything.
        if (task.phase in TERMINAL or i >= len(task.phases) or task.attempt_of[i] != attempt
                or task.phases[i] not in _IN_FLIGHT):
            return
        if isinstance(event, sig.TaskSucceeded):
            self.succeed(task, i, event.outputs, event.worker)
        elif isinstance(event, sig.TaskFailed):
            self.attempt_failed(task, i, event.error, event.retryable, reason=ERROR,
                                worker=event.worker)
        elif task.phases[i] == QUEUED:  # started, or a heartbeat whose start was missed
            self.begin(task, i, event.worker)

    def on_tick(self) -> None:
        run = self.run
        while run.timers and run.timers[0][0] <= self.now:
            timer = heapq.heappop(run.timers)
            if not timer_valid(run, timer):
                continue
            _, kind, position, index, attempt = timer
            if kind == DEADLINE_TIMER:
                seconds = (run.workflow.deadline_ms or 0) // 1000
                self.stop("Failed", DEADLINE_EXCEEDED, f"run exceeded its deadline of {seconds}s")
                return
            task = run.tasks[position]
            self.changed = True
            if kind == RETRY_TIMER:
                task.due.pop(index, None)
                self.dispatch(task, index, attempt + 1)
            else:
                seconds = (task.spec.timeout_ms or 0) // 1000
                self.attempt_failed(task, index, f"attempt {attempt} timed out after {seconds}s",
                                    True, reason=TIMEOUT, worker=None)
            self.settle()

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
                          f"{spec.path}.when: expected a bool, got {_kind(decision)}")
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
                      f"{spec.path}.forEach: expected a list, got {_kind(value)}")
            return None
        task.items = value
        return value

    def fill(self, task: TaskState) -> None:
        """Dispatch never-dispatched instances while the task's parallelism allows."""
        limit = task.spec.max_parallel
        total = len(task.phases)
        while task.next_index < total and (limit is None or task.active < limit):
            i = task.next_index
            task.next_index += 1
            task.active += 1
            if not self.dispatch(task, i, 1):
                return

    def dispatch(self, task: TaskState, i: int, attempt: int) -> bool:
        """Publish attempt `attempt` of instance `i`; False if its inputs failed to render."""
        spec = task.spec
        index: int | None = None
        variables = self.variables()
        if spec.for_each is not None:
            items = self.items(task)
            if items is None:
                return False
            index = i
            variables["item"] = items[i] if i < len(items) else None
            variables["index"] = i
        try:
            inputs = spec.inputs.render(variables)
        except ExpressionError as error:
            self.fail(task, EXPRESSION_ERROR, str(error))
            return False
        task.phases[i] = QUEUED
        task.attempt_of[i] = attempt
        task.attempts += 1
        if index is None:
            task.phase = "Queued"
            self.run.views[spec.name]["phase"] = "Queued"
        self.actions.append(act.Publish(
            attempt_id(self.run.uid, spec.name, index, attempt), spec.name, index, attempt,
            spec.type, inputs, None if spec.timeout_ms is None else spec.timeout_ms // 1000,
        ))
        return True

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

    def settle(self) -> None:
        """Tell dependents of every task that ended, until nothing more follows."""
        run = self.run
        tasks = run.tasks
        while self.finished:
            task = self.finished.popleft()
            satisfied = task.phase == "Succeeded" or (
                task.phase == "Skipped" and task.reason != UPSTREAM_FAILED
            )
            for position in task.spec.dependents:
                dependent = tasks[position]
                if dependent.phase != "Pending":
                    continue
                if satisfied:
                    dependent.waiting -= 1
                    if dependent.waiting == 0:
                        self.ready(dependent)
                else:
                    self.finish(dependent, "Skipped", UPSTREAM_FAILED,
                                f"dependency {task.spec.name} is {task.phase}")
            if (not task.spec.is_finally and run.main_terminal == run.workflow.main_count
                    and run.phase == "Running"):
                for final in tasks[run.workflow.main_count:]:
                    if not final.spec.depends_on and final.phase == "Pending":
                        self.ready(final)
        if run.phase == "Running" and run.terminal == len(tasks):
            self.complete()

    # --- the run -------------------------------------------------------------------------

    def complete(self) -> None:
        """Every task is terminal: the run succeeds with its outputs, or fails."""
        run = self.run
        outputs: dict[str, Any] | None = None
        if not run.failed:
            try:
                outputs = run.workflow.outputs.render(self.variables())
            except ExpressionError as error:
                run.message = str(error)
            else:
                if not isinstance(outputs, dict):
                    run.message = f"spec.outputs: expected a map, got {_kind(outputs)}"
                    outputs = None
                elif json_size(outputs) > TASK_OUTPUTS_LIMIT:
                    run.message = (f"spec.outputs: {json_size(outputs)} bytes exceed the "
                                   f"{TASK_OUTPUTS_LIMIT}-byte limit")
                    outputs = None
        phase = "Succeeded" if outputs is not None else "Failed"
        run.phase = phase
        run.outputs = outputs
        run.finished_at = self.now
        self.actions.append(act.EmitRunEvent(phase, run.message, outputs))

    def stop(self, phase: str, reason: str, message: str) -> None:
        """Cancel or deadline: every task not ended is cancelled, finally tasks included."""
        self.changed = True
        run = self.run
        for task in run.tasks:
            if task.phase not in TERMINAL:
                self.abandon(task)
                self.finish(task, "Cancelled", reason, message)
        self.finished.clear()
        run.phase = phase
        run.message = message
        run.finished_at = self.now
        self.actions.append(act.EmitRunEvent(phase, message))

    def variables(self) -> dict[str, Any]:
        """What expressions see, `item` and `index` aside."""
        run = self.run
        return {"inputs": run.inputs, "tasks": run.views, "run": {"failed": run.failed}}


def _kind(value: Any) -> str:
    names = {bool: "bool", int: "int", float: "double", str: "string", list: "list",
             dict: "map", type(None): "null"}
    return names.get(type(value), type(value).__name__)

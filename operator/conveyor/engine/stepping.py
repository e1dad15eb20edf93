"""One application of one signal to a run: `Step` turns the signal into changes of the run's
progress and the actions that follow, then lets ended tasks release their dependents until
nothing more follows. Task-level changes are in tasks.py; the rules in rules.py.
"""

import heapq
from collections.abc import Mapping, Sequence
from typing import Any

from conveyor.engine import actions as act
from conveyor.engine import retrying
from conveyor.engine import signals as sig
from conveyor.engine.progress import (
    CANCELLED_REASON,
    DEADLINE_EXCEEDED,
    DEADLINE_TIMER,
    QUEUED,
    RETRY_TIMER,
    RETRYING,
    RUN_TERMINAL,
    RUNNING,
    STORE_ERROR,
    TERMINAL,
    TIMEOUT,
    UPSTREAM_FAILED,
    json_size,
    timer_valid,
)
from conveyor.engine.tasks import (
    COMPLETE,
    FILL,
    READY,
    RETRY,
    TASK_OUTPUTS_LIMIT,
    TaskSteps,
    Unresolved,
    describe,
)
from conveyor.errors import ExpressionError
from conveyor.names import parse_attempt_id

_ATTEMPT_SIGNALS = frozenset((sig.TaskStarted, sig.TaskHeartbeat, sig.TaskSucceeded,
                              sig.TaskFailed, sig.TaskLost))
_IN_FLIGHT = (QUEUED, RUNNING)
CACHE_SETTING = "CONVEYOR_S3_CACHE_BYTES"  # the operator's; named in the message


class Step(TaskSteps):
    """One application of one signal: the actions gathered and whether anything changed."""

    __slots__ = ()

    # --- signals -------------------------------------------------------------------------

    def handle(self, event: sig.Signal) -> None:
        run = self.run
        kind = type(event)
        if kind in _ATTEMPT_SIGNALS:
            if run.phase == "Running":
                self.on_attempt(event)  # type: ignore[arg-type]
        elif kind is sig.Tick:
            if run.phase == "Running":
                self.on_tick()
                self.fill_held_back()  # after a rebuild, say: nothing else would
                self.resume_stalled()
        elif kind is sig.StoreFailed:
            if run.phase not in RUN_TERMINAL:
                for task in run.tasks:  # nothing more is written for it
                    task.unstored, task.taken = {}, []
                self.stop("Failed", STORE_ERROR,
                          f"cannot store item outputs: {event.message}")  # type: ignore[union-attr]
        elif kind is sig.Loaded:
            if run.phase == "Running":
                self.changed = True
                self.unblock(event.loaded, event.failed)  # type: ignore[union-attr]
        elif kind is sig.Persisted:
            run.unpersisted = max(0, run.unpersisted - event.dispatched)  # type: ignore[union-attr]
            if run.phase == "Running":
                self.fill_held_back()
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
            self.attempt_failed(task, i, event.error,
                                reason=retrying.worker_reason(event.retryable, event.reason),
                                worker=event.worker, error_type=event.error_type,
                                started_at=event.started_at)
        elif isinstance(event, sig.TaskLost):
            self.redispatch(task, i)
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
                self.retry(task, index, attempt, task.due.pop(index))
            else:
                timeout = task.spec.timeout_ms or 0
                self.attempt_failed(task, index,
                                    f"attempt {attempt} timed out after {timeout // 1000}s",
                                    reason=TIMEOUT, worker=None, started_at=timer[0] - timeout)
            self.settle()

    # --- tasks ended, dependents told ----------------------------------------------------

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

    def unblock(self, loaded: Sequence[str], failed: Mapping[str, str]) -> None:
        """Stored values were read (`loaded`), could not be (`failed`: id -> why), or item
        outputs were stored: try again what waited. What waited on a value that failed
        fails, naming the store and the key."""
        run = self.run
        run.loading.difference_update(loaded)
        run.loading.difference_update(failed)
        waiting, run.blocked = run.blocked, {}
        for what, ids in waiting.items():
            why = next((failed[i] for i in ids if i in failed), None)
            kind = what[0]
            if kind == COMPLETE:
                if run.phase == "Running":
                    self.complete(why)
                continue
            task = run.tasks[what[1]]
            if task.phase in TERMINAL:
                continue
            if why is not None:
                self.fail(task, STORE_ERROR, f"cannot read a stored value: {why}")
            elif kind == READY:
                if task.phase == "Pending":
                    self.ready(task)
            elif kind == FILL:
                self.fill(task)
            elif kind == RETRY:
                i, attempt, due = what[2:]
                if (task.phases[i] == RETRYING and task.attempt_of[i] == attempt
                        and task.due.get(i) == due):
                    task.due.pop(i, None)
                    self.retry(task, i, attempt, due)
            elif task.phases[what[2]] == QUEUED and task.attempt_of[what[2]] == what[3]:
                self.redispatch(task, what[2])
            again = run.blocked.get(what)
            if again and not set(again).isdisjoint(loaded):
                # What was just read is gone again: it needs more at once than the cache
                # holds. Waiting would only read it again and again.
                del run.blocked[what]
                self.fail(task, STORE_ERROR, f"needs more stored values at once than "
                          f"{CACHE_SETTING} holds")

    def resume_stalled(self) -> None:
        """After a rebuild, what waited for stored values when the status was written waits
        in no one's memory: a task ready but Pending, a run whose tasks all ended. Try them
        again (each waits anew if it must)."""
        run = self.run
        if run.blocked:
            return  # waiting in this operator's memory: its Loaded will come
        main = run.workflow.main_count
        for position, task in enumerate(run.tasks):
            if task.phase != "Pending" or task.waiting:
                continue
            if position < main or task.spec.depends_on or run.main_terminal == main:
                self.ready(task)
        self.settle()

    # --- the run -------------------------------------------------------------------------

    def complete(self, failure: str | None = None) -> None:
        """Every task is terminal: the run succeeds with its outputs, or fails. Outputs that
        select stored values keep their references; others wait for the values."""
        run = self.run
        outputs: dict[str, Any] | None = None
        template = run.workflow.outputs
        if failure is not None:
            run.message = f"spec.outputs: cannot read a stored value: {failure}"
        elif not run.failed:
            try:
                outputs = template.render(self.scope(template, passthrough=True))
            except Unresolved as unresolved:
                self.block((COMPLETE,), unresolved)
                return
            except ExpressionError as error:
                run.message = str(error)
            else:
                if not isinstance(outputs, dict):
                    run.message = f"spec.outputs: expected a map, got {describe(outputs)}"
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

"""The in-memory state of one run, as the engine reads and updates it.

Plain mutable records with `__slots__`: the engine applies tens of thousands of events a
second, so the state is updated in place rather than copied per event. `engine.status`
converts it to the WorkflowRun status and back; nothing here is persisted that the status
cannot rebuild.

A task has instances: one for a plain task, one per item for a forEach task. Each instance has
a phase code, its current attempt and, while it waits on a timer, a due time. Instances are
dispatched in index order, so the instances never dispatched are always a suffix
(`next_index` onwards): the status can summarise items as counts and a run-length string.
"""

import heapq
import json
from collections.abc import Iterator
from typing import Any

from conveyor.names import attempt_id
from conveyor.workflow import CompiledTask, CompiledWorkflow

# Phase codes of one instance (a forEach item, or a plain task's single attempt chain).
PENDING, QUEUED, RUNNING, RETRYING, SUCCEEDED, FAILED, CANCELLED = "PQRWSFC"
ACTIVE = frozenset((QUEUED, RUNNING, RETRYING))
_IN_FLIGHT = frozenset((QUEUED, RUNNING))

TERMINAL = frozenset(("Succeeded", "Failed", "Skipped", "Cancelled"))
RUN_TERMINAL = frozenset(("Succeeded", "Failed", "Cancelled"))

# Why a task ended as it did (TaskStatus.reason).
UPSTREAM_FAILED = "UpstreamFailed"
WHEN_FALSE = "WhenFalse"
OUTPUT_TOO_LARGE = "OutputTooLarge"
EXPRESSION_ERROR = "ExpressionError"
INVALID_FOR_EACH = "InvalidForEach"
TIMEOUT = "Timeout"
ERROR = "Error"
CANCELLED_REASON = "Cancelled"
DEADLINE_EXCEEDED = "DeadlineExceeded"
REUSED = "Reused"  # Succeeded in an earlier run; its outputs came with spec.reuse

# Timer kinds, in the order timers due at the same instant are handled.
DEADLINE_TIMER, RETRY_TIMER, TIMEOUT_TIMER = 0, 1, 2


_COMPACT = json.JSONEncoder(separators=(",", ":"))


def json_size(value: Any) -> int:
    """Bytes of a value as compact JSON: what outputs cost in the status."""
    if not value and isinstance(value, dict):
        return 2
    return len(_COMPACT.encode(value))


class TaskState:
    """Progress of one task (or finally task)."""

    __slots__ = (
        "active",
        "attempt_of",
        "attempts",
        "due",
        "failed_items",
        "finished_at",
        "items",
        "message",
        "next_index",
        "out_bytes",
        "outputs",
        "phase",
        "phases",
        "reason",
        "spec",
        "started_at",
        "succeeded",
        "waiting",
        "worker",
    )

    def __init__(self, spec: CompiledTask) -> None:
        self.spec = spec
        self.phase = "Pending"
        self.reason: str | None = None
        self.message: str | None = None
        self.worker: str | None = None
        self.started_at: int | None = None  # times are integer milliseconds since the epoch
        self.finished_at: int | None = None
        self.attempts = 0  # attempts dispatched, over all instances
        self.waiting = len(spec.depends_on)  # dependencies not yet Succeeded/Skipped
        self.items: list[Any] | None = None  # forEach values; re-evaluated after a rebuild
        self.phases: list[str] = []  # one code per instance; empty until the task is ready
        self.attempt_of: list[int] = []
        self.due: dict[int, int] = {}  # instance -> due time of its timer
        self.outputs: list[Any] = []  # per instance, None until it succeeds
        self.next_index = 0  # first instance never dispatched
        self.active = 0  # instances queued, running or waiting to retry
        self.succeeded = 0
        self.failed_items = 0
        self.out_bytes = 0  # size of the outputs held, against the task's cap

    @property
    def total(self) -> int:
        """Instances: items of a forEach task, 1 for a plain task once ready."""
        return len(self.phases)

    def result(self) -> Any:
        """The task's outputs as expressions see them: item outputs in order for forEach."""
        if self.phase != "Succeeded":
            return {}
        if self.spec.for_each is None:
            return self.outputs[0] if self.outputs else {}
        return list(self.outputs)


class RunState:
    """Progress of one run of one Workflow generation."""

    __slots__ = (
        "created_at",
        "failed",
        "finished_at",
        "inputs",
        "main_terminal",
        "message",
        "observed_generation",
        "out_bytes",
        "outputs",
        "phase",
        "started_at",
        "tasks",
        "terminal",
        "timer_at",
        "timers",
        "uid",
        "unpersisted",
        "views",
        "workflow",
    )

    def __init__(self, workflow: CompiledWorkflow, uid: str, inputs: dict[str, Any],
                 created_at: int) -> None:
        self.workflow = workflow
        self.uid = uid
        self.inputs = inputs
        self.phase = "Pending"
        self.created_at = created_at
        self.started_at: int | None = None
        self.finished_at: int | None = None
        self.message: str | None = None
        self.outputs: dict[str, Any] | None = None
        self.observed_generation: int | None = None
        self.tasks = [TaskState(t) for t in workflow.tasks]
        self.terminal = 0
        self.main_terminal = 0
        self.failed = False
        self.out_bytes = 0  # outputs held over all tasks, against the run's budget
        # What expressions see as `tasks`: kept current as tasks change, not rebuilt per use.
        self.views: dict[str, dict[str, Any]] = {
            t.name: {"phase": "Pending", "outputs": {}} for t in workflow.tasks
        }
        # Timers as a heap of (due, kind, task, instance, attempt); entries that no longer
        # match the state are skipped when they surface, instead of being removed eagerly.
        self.timers: list[tuple[int, int, int, int, int]] = []
        self.timer_at: int | None = None
        # forEach items dispatched since the last status was persisted (see DISPATCH_BATCH).
        self.unpersisted = 0

    @property
    def deadline_at(self) -> int | None:
        """When the run's deadline passes, if it has one and has started."""
        if self.started_at is None or self.workflow.deadline_ms is None:
            return None
        return self.started_at + self.workflow.deadline_ms


def to_ms(seconds: float) -> int:
    """Engine time: integer milliseconds, so status round-trips exactly."""
    return round(seconds * 1000)


def next_timer(run: RunState) -> float | None:
    """When the run's next timer is due (epoch seconds), dropping stale entries first."""
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


def in_flight(run: RunState) -> Iterator[tuple[str, str, bool]]:
    """(attempt id, task type, running) of each instance whose current attempt is Queued or
    Running: what the operator holds a lease on while the run is Running."""
    if run.phase != "Running":
        return
    for task in run.tasks:
        if task.phase in TERMINAL:
            continue
        spec = task.spec
        plain = spec.for_each is None
        attempt_of = task.attempt_of
        for i, code in enumerate(task.phases[: task.next_index] if not plain else task.phases):
            if code in _IN_FLIGHT:
                yield (attempt_id(run.uid, spec.name, None if plain else i, attempt_of[i]),
                       spec.type, code == RUNNING)

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
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from conveyor.models import MAX_FAILED_ATTEMPTS
from conveyor.names import attempt_id
from conveyor.stored import items_ref, refs_in
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
# ... and why an attempt failed (a FailedAttempt's reason; the task's when it was the last).
TIMEOUT = "Timeout"
ERROR = "Error"  # the task raised, retryable
NON_RETRYABLE = "NonRetryable"  # the worker marked the failure final
LOST = "Lost"  # its workers were lost deliveryLimit times
CANCELLED_REASON = "Cancelled"
DEADLINE_EXCEEDED = "DeadlineExceeded"
REUSED = "Reused"  # Succeeded in an earlier run; its outputs came with spec.reuse
STORE_ERROR = "StoreError"  # a stored value the task needs could not be read


@dataclass(frozen=True)
class StoreTarget:
    """Where a run's values go when the operator has an object store: the bucket, and the
    run's key prefix in it, as written (relative to the store's own prefix) and as a
    reference names it (the full key)."""

    bucket: str
    prefix: str
    full_prefix: str

    def items_prefix(self, task: str, full: bool) -> str:
        return f"{self.full_prefix if full else self.prefix}{task}/items/"


@dataclass(frozen=True, slots=True)
class AttemptFailure:
    """One failed attempt as the status records it (times in engine milliseconds)."""

    attempt: int
    index: int | None
    reason: str
    error_type: str | None
    message: str | None
    started_at: int | None
    finished_at: int
    retried: bool


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
        "chunks",
        "due",
        "failed_items",
        "failures",
        "finished_at",
        "fixed_ref",
        "has_refs",
        "items",
        "items_at",
        "message",
        "next_index",
        "out_bytes",
        "outputs",
        "phase",
        "phases",
        "reason",
        "spec",
        "started_at",
        "stored_bytes",
        "stored_items",
        "succeeded",
        "taken",
        "unstored",
        "waiting",
        "worker",
    )

    def __init__(self, spec: CompiledTask, store: StoreTarget | None = None) -> None:
        self.spec = spec
        self.phase = "Pending"
        self.reason: str | None = None
        self.message: str | None = None
        self.worker: str | None = None
        self.started_at: int | None = None  # times are integer milliseconds since the epoch
        self.finished_at: int | None = None
        self.attempts = 0  # attempts dispatched, over all instances
        self.waiting = len(spec.depends_on)  # dependencies not yet Succeeded/Skipped
        # forEach values (a long list in compressed pages); re-evaluated after a rebuild.
        self.items: Sequence[Any] | None = None
        self.phases: list[str] = []  # one code per instance; empty until the task is ready
        self.attempt_of: list[int] = []
        self.due: dict[int, int] = {}  # instance -> due time of its timer
        self.outputs: list[Any] = []  # per instance, None until it succeeds
        self.next_index = 0  # first instance never dispatched
        self.active = 0  # instances queued, running or waiting to retry
        self.succeeded = 0
        self.failed_items = 0
        # The latest failed attempts, over all instances (MAX_FAILED_ATTEMPTS of them).
        self.failures: deque[AttemptFailure] = deque(maxlen=MAX_FAILED_ATTEMPTS)
        self.out_bytes = 0  # size of the outputs held, against the task's cap
        # With a store, a forEach task's item outputs go there in chunks, not to the status:
        # `unstored` holds those not yet taken into a chunk, `taken` those being written.
        self.items_at: tuple[str, str] | None = None  # (bucket, full key prefix)
        if store is not None and spec.for_each is not None:
            self.items_at = (store.bucket, store.items_prefix(spec.name, full=True))
        self.unstored: dict[int, Any] = {}
        self.taken: list[tuple[int, Any]] = []
        self.chunks = 0
        self.stored_items = 0
        self.stored_bytes = 0
        self.fixed_ref: Any = None  # item outputs stored by an earlier run (spec.reuse)
        self.has_refs = False  # its outputs, as expressions see them, hold a `$ref`

    @property
    def offloaded(self) -> bool:
        """Whether the item outputs go to the store (a forEach task, a store configured)."""
        return self.items_at is not None

    @property
    def storing(self) -> bool:
        """Item outputs of this task are not all stored yet: its reference is not final."""
        return bool(self.unstored or self.taken)

    def items_ref(self) -> Any:
        """The `$ref` of the item outputs stored so far (None: none are)."""
        if self.fixed_ref is not None:
            return self.fixed_ref
        if self.items_at is None or (not self.chunks and self.phase != "Succeeded"):
            return None
        bucket, prefix = self.items_at
        return items_ref(bucket, prefix, self.stored_bytes, self.stored_items, self.chunks)

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
        if self.offloaded or self.fixed_ref is not None:
            return self.items_ref()
        return list(self.outputs)


class RunState:
    """Progress of one run of one Workflow generation."""

    __slots__ = (
        "blocked",
        "created_at",
        "failed",
        "finished_at",
        "inputs",
        "loading",
        "main_terminal",
        "message",
        "observed_generation",
        "out_bytes",
        "outputs",
        "phase",
        "started_at",
        "store",
        "tasks",
        "terminal",
        "timer_at",
        "timers",
        "uid",
        "unpersisted",
        "values",
        "views",
        "workflow",
    )

    def __init__(self, workflow: CompiledWorkflow, uid: str, inputs: dict[str, Any],
                 created_at: int, *, store: StoreTarget | None = None,
                 values: Mapping[str, Any] | None = None) -> None:
        self.workflow = workflow
        self.store = store
        # Values read from the store, by `stored.ref_id` (the operator's bounded cache): what
        # expressions see where a status holds a reference.
        self.values: Mapping[str, Any] = {} if values is None else values
        # Work waiting for stored values (see tasks.Unresolved): what to try again, by what it
        # is, and the ids of the values it waits for; and the ids asked for (Load) already.
        self.blocked: dict[tuple[int, ...], tuple[str, ...]] = {}
        self.loading: set[str] = set()
        self.uid = uid
        self.inputs = inputs
        self.phase = "Pending"
        self.created_at = created_at
        self.started_at: int | None = None
        self.finished_at: int | None = None
        self.message: str | None = None
        self.outputs: dict[str, Any] | None = None
        self.observed_generation: int | None = None
        self.tasks = [TaskState(t, store) for t in workflow.tasks]
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


def show_outputs(run: "RunState", task: TaskState) -> None:
    """Let expressions see the task's phase and outputs as they are now."""
    view = run.views[task.spec.name]
    view["phase"] = task.phase
    outputs = view["outputs"] = task.result()
    task.has_refs = bool(refs_in(outputs))


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

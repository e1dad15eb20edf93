"""What the engine is told: signals, small frozen records.

Signals come from three places: the operator's own decisions and writes (Start, Cancel,
TaskLost, Persisted), its timers (Tick) and the workers (the Task* reports, decoded from
their `TaskEvent` messages by `from_message`). "Event" is kept for messages on the
`conveyor.events` exchange and for Kubernetes Events; what the engine consumes is a signal.
"""

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from conveyor.models import TaskEvent


@dataclass(frozen=True, slots=True)
class Start:
    """The run was admitted (see `engine.admit`): leave Pending and dispatch."""


@dataclass(frozen=True, slots=True)
class Cancel:
    """spec.cancel became true."""


@dataclass(frozen=True, slots=True)
class Tick:
    """A timer fired (or the operator resumed): handle whatever is due by now."""


@dataclass(frozen=True, slots=True)
class TaskStarted:
    """A worker took the attempt."""

    attempt_id: str
    worker: str | None = None


@dataclass(frozen=True, slots=True)
class TaskHeartbeat:
    """A worker is still on the attempt."""

    attempt_id: str
    worker: str | None = None


@dataclass(frozen=True, slots=True)
class TaskSucceeded:
    """The attempt returned outputs."""

    attempt_id: str
    outputs: Any = None
    worker: str | None = None


@dataclass(frozen=True, slots=True)
class TaskFailed:
    """The attempt failed at its worker; `retryable` says whether the retry policy applies,
    `reason` why it failed as the worker saw it (Error, NonRetryable, Lost; None from older
    workers), `error_type` the exception's class, `started_at` when the worker began it
    (epoch milliseconds)."""

    attempt_id: str
    error: str = ""
    retryable: bool = True
    worker: str | None = None
    reason: str | None = None
    error_type: str | None = None
    started_at: int | None = None


@dataclass(frozen=True, slots=True)
class Persisted:
    """A status of the run was written, recording `dispatched` of the forEach items sent since
    the one before (`RunState.unpersisted` when it was built): those held back may go out."""

    dispatched: int


@dataclass(frozen=True, slots=True)
class TaskLost:
    """The attempt's message is nowhere: its lease ran out (the operator's runs/leases.py).
    The same attempt is published again, under the same id."""

    attempt_id: str


@dataclass(frozen=True, slots=True)
class Loaded:
    """Stored values the run asked for (`Load`) are in `RunState.values` now (`loaded`, by
    `stored.ref_id`), or could not be read (`failed`: id -> why, naming store and key); or
    item outputs were stored (both empty). What waited for them is tried again."""

    loaded: tuple[str, ...] = ()
    failed: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class StoreFailed:
    """The item outputs of the run's forEach tasks cannot be stored (`message` names the
    store and why): the run fails, rather than wait for ever on what it cannot persist."""

    message: str


Signal = (Start | Cancel | Tick | Persisted | TaskStarted | TaskHeartbeat | TaskSucceeded
          | TaskFailed | TaskLost | Loaded | StoreFailed)
AttemptSignal = TaskStarted | TaskHeartbeat | TaskSucceeded | TaskFailed | TaskLost


def from_message(message: TaskEvent) -> AttemptSignal:
    """The signal a worker's event message stands for."""
    if message.status == "started":
        return TaskStarted(message.attempt_id, message.worker)
    if message.status == "heartbeat":
        return TaskHeartbeat(message.attempt_id, message.worker)
    if message.status == "succeeded":
        return TaskSucceeded(message.attempt_id, message.outputs, message.worker)
    started = message.started_at
    return TaskFailed(message.attempt_id, message.error or "", message.retryable, message.worker,
                      message.reason, message.error_type,
                      None if started is None else round(started.timestamp() * 1000))

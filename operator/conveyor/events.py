"""What the engine consumes (events) and produces (actions): small frozen records.

Events come from three places: the operator's own decisions (Start, Cancel), its timers (Tick)
and the workers (the Task* events, decoded from `TaskEvent` messages by `from_message`).
"""

from dataclasses import dataclass
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
    """The attempt raised; `retryable` says whether the retry policy applies."""

    attempt_id: str
    error: str = ""
    retryable: bool = True
    worker: str | None = None


Event = Start | Cancel | Tick | TaskStarted | TaskHeartbeat | TaskSucceeded | TaskFailed
AttemptEvent = TaskStarted | TaskHeartbeat | TaskSucceeded | TaskFailed


def from_message(message: TaskEvent) -> AttemptEvent:
    """The engine event a worker's message stands for."""
    if message.status == "started":
        return TaskStarted(message.attempt_id, message.worker)
    if message.status == "heartbeat":
        return TaskHeartbeat(message.attempt_id, message.worker)
    if message.status == "succeeded":
        return TaskSucceeded(message.attempt_id, message.outputs, message.worker)
    return TaskFailed(message.attempt_id, message.error or "", message.retryable, message.worker)


@dataclass(frozen=True, slots=True)
class Publish:
    """Publish this attempt to its task type's queue (before persisting the status)."""

    attempt_id: str
    task: str
    index: int | None
    attempt: int
    task_type: str
    inputs: Any
    timeout_seconds: int | None


@dataclass(frozen=True, slots=True)
class SetTimer:
    """Deliver a Tick at `at` (epoch seconds), replacing the run's timer; None: no timer."""

    at: float | None


@dataclass(frozen=True, slots=True)
class EmitRunEvent:
    """Publish `run.<phase>` on conveyor.events."""

    phase: str
    message: str | None = None
    outputs: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class Persist:
    """The status changed: write it (coalesced), then ack the events that led here."""


Action = Publish | SetTimer | EmitRunEvent | Persist

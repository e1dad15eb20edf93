"""What the engine decides: actions, small frozen records the operator carries out in order
(publish attempts, then persist the status, then ack the signal's message)."""

from dataclasses import dataclass
from typing import Any


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


@dataclass(frozen=True, slots=True)
class Load:
    """Read these stored values (`$ref`s) into `RunState.values`, then signal `Loaded`."""

    refs: tuple[Any, ...]


Action = Publish | SetTimer | EmitRunEvent | Persist | Load

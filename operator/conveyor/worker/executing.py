"""Run one task function and turn whatever it did into an outcome: no broker, no threads.

Plain functions are called; async ones run to completion on an event loop of their own (the
worker runs each task on a thread of its pool, so there is no loop to share).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import dataclass
from typing import Any, Literal

from conveyor.worker.context import TaskContext
from conveyor.worker.errors import NonRetryable, Retryable
from conveyor.worker.registry import TaskDefinition

log = logging.getLogger("conveyor.worker")

DEFAULT_MAX_OUTPUT_BYTES = 64 * 1024
ERROR_MAX = 4096
# Why a failed attempt ended, as its event says (TaskEvent.reason).
ERROR, NON_RETRYABLE, LOST = "Error", "NonRetryable", "Lost"
# What the worker found wrong with what a task returned (TaskEvent.errorType).
INVALID_OUTPUTS, OUTPUT_TOO_LARGE = "InvalidOutputs", "OutputTooLarge"


@dataclass(frozen=True)
class OutputCap:
    """The largest outputs an attempt may return, and what the failure past it tells the
    user to do: the cap is one setting or another depending on whether a store is there."""

    limit: int
    explanation: str
    """Follows "over the cap of N bytes" in the message."""

    def too_large(self, size: int) -> str:
        # OutputTooLarge is the reason the run status shows for it.
        return (f"OutputTooLarge: the outputs are {size} bytes, over the cap of {self.limit}"
                f" bytes {self.explanation}")


NO_STORE_CAP = OutputCap(DEFAULT_MAX_OUTPUT_BYTES, "(CONVEYOR_MAX_OUTPUT_BYTES)")


@dataclass(frozen=True)
class Outcome:
    """How an attempt ended, as its final event reports it."""

    status: Literal["succeeded", "failed"]
    outputs: dict[str, Any] | None = None
    error: str | None = None
    retryable: bool = False
    reason: str | None = None
    """Why a failed attempt ended: Error (retryable), NonRetryable or Lost."""
    error_type: str | None = None
    """The class of the exception, or what the worker found wrong (`InvalidOutputs`)."""
    duration: float = 0.0
    size: int = 0
    """Bytes of the outputs the function returned, as compact JSON (0 for a failure)."""

    @property
    def label(self) -> str:
        """`succeeded`, `retryable` or `failed`: the metrics' outcome."""
        if self.status == "succeeded":
            return "succeeded"
        return "retryable" if self.retryable else "failed"


def execute(definition: TaskDefinition, inputs: dict[str, Any], ctx: TaskContext,
            cap: OutputCap = NO_STORE_CAP) -> Outcome:
    began = time.monotonic()
    try:
        result = _call(definition, inputs, ctx)
    except (Exception, SystemExit) as error:
        retryable = definition.retries(error)
        if isinstance(error, Retryable | NonRetryable):
            # The task said what happened, in its own words: no traceback, no class prefix.
            text = str(error) or type(error).__name__
        else:
            log.warning("Failed task attempt=%s retryable=%s error=%r", ctx.idempotency_key,
                        retryable, error, exc_info=True)
            text = f"{type(error).__name__}: {error}"
        return _failed(text, retryable, began, error_type=type_name(type(error)))
    return _check_outputs(result, cap, began)


def type_name(kind: type[BaseException]) -> str:
    """`ConnectionError` for a built-in, `requests.exceptions.ConnectionError` otherwise."""
    if kind.__module__ == "builtins":
        return kind.__qualname__
    return f"{kind.__module__}.{kind.__qualname__}"


def _call(definition: TaskDefinition, inputs: dict[str, Any], ctx: TaskContext) -> Any:
    args: tuple[Any, ...] = (inputs, ctx) if definition.takes_context else (inputs,)
    if definition.is_async:
        return asyncio.run(definition.function(*args))
    return definition.function(*args)


def _check_outputs(result: Any, cap: OutputCap, began: float) -> Outcome:
    if result is None:
        result = {}
    # Retrying would produce the same outputs: these failures are final.
    if not isinstance(result, dict):
        return _failed(f"the task returned {type(result).__name__}; a task returns a dict of"
                       " outputs or None", False, began, error_type=INVALID_OUTPUTS)
    try:
        # The operator's measure (ASCII-escaped compact JSON), so the worker and the operator
        # agree on which outputs are over the inline limit.
        size = len(json.dumps(result, separators=(",", ":")).encode())
    except (TypeError, ValueError) as error:
        return _failed(f"the outputs are not JSON: {error}", False, began,
                       error_type=INVALID_OUTPUTS)
    if size > cap.limit:
        return _failed(cap.too_large(size), False, began, error_type=OUTPUT_TOO_LARGE,
                       reason=OUTPUT_TOO_LARGE)
    return Outcome("succeeded", outputs=result, duration=time.monotonic() - began, size=size)


def _failed(error: str, retryable: bool, began: float, *, error_type: str,
            reason: str | None = None) -> Outcome:
    return failed(error, retryable, time.monotonic() - began, error_type=error_type,
                  reason=reason)


def failed(error: str, retryable: bool, duration: float = 0.0, *,
           error_type: str | None = None, reason: str | None = None) -> Outcome:
    """A failed outcome, its message cut to what an event carries; its reason Error or
    NonRetryable as `retryable` says, unless given (Lost, OutputTooLarge)."""
    if reason is None:
        reason = ERROR if retryable else NON_RETRYABLE
    return Outcome("failed", error=error[:ERROR_MAX], retryable=retryable, reason=reason,
                   error_type=error_type, duration=duration)

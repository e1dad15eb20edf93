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
from conveyor.worker.errors import Retryable
from conveyor.worker.registry import TaskDefinition

log = logging.getLogger("conveyor.worker")

DEFAULT_MAX_OUTPUT_BYTES = 64 * 1024
ERROR_MAX = 4096


@dataclass(frozen=True)
class Outcome:
    """How an attempt ended, as its final event reports it."""

    status: Literal["succeeded", "failed"]
    outputs: dict[str, Any] | None = None
    error: str | None = None
    retryable: bool = False
    duration: float = 0.0

    @property
    def label(self) -> str:
        """`succeeded`, `retryable` or `failed`: the metrics' outcome."""
        if self.status == "succeeded":
            return "succeeded"
        return "retryable" if self.retryable else "failed"


def execute(definition: TaskDefinition, inputs: dict[str, Any], ctx: TaskContext,
            max_output_bytes: int = DEFAULT_MAX_OUTPUT_BYTES) -> Outcome:
    began = time.monotonic()
    try:
        result = _call(definition, inputs, ctx)
    except Retryable as error:
        return _failed(str(error) or type(error).__name__, True, began)
    except (Exception, SystemExit) as error:
        log.warning("Failed task attempt=%s error=%r", ctx.idempotency_key, error,
                    exc_info=True)
        return _failed(f"{type(error).__name__}: {error}", False, began)
    return _check_outputs(result, max_output_bytes, began)


def _call(definition: TaskDefinition, inputs: dict[str, Any], ctx: TaskContext) -> Any:
    args: tuple[Any, ...] = (inputs, ctx) if definition.takes_context else (inputs,)
    if definition.is_async:
        return asyncio.run(definition.function(*args))
    return definition.function(*args)


def _check_outputs(result: Any, max_output_bytes: int, began: float) -> Outcome:
    if result is None:
        result = {}
    if not isinstance(result, dict):
        return _failed(f"the task returned {type(result).__name__}; a task returns a dict of"
                       " outputs or None", False, began)
    try:
        size = len(json.dumps(result, separators=(",", ":")).encode())
    except (TypeError, ValueError) as error:
        return _failed(f"the outputs are not JSON: {error}", False, began)
    if size > max_output_bytes:
        # Retrying would produce the same outputs: the failure is final. OutputTooLarge is the
        # reason the run status shows for it.
        return _failed(f"OutputTooLarge: the outputs are {size} bytes, over the cap of"
                       f" {max_output_bytes} bytes", False, began)
    return Outcome("succeeded", outputs=result, duration=time.monotonic() - began)


def _failed(error: str, retryable: bool, began: float) -> Outcome:
    return Outcome("failed", error=error[:ERROR_MAX], retryable=retryable,
                   duration=time.monotonic() - began)

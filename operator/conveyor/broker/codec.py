"""Task and event bodies to and from bytes, and why a task body cannot be used.

A malformed task body is not an error of the worker: it is dead-lettered with the reason in a
header (`REASON_HEADER`), so someone can read it, and the worker keeps serving.
"""

from __future__ import annotations

import json
from typing import Final

from pydantic import ValidationError

from conveyor import names
from conveyor.errors import ConveyorError
from conveyor.models import TaskEvent, TaskMessage

CONTENT_TYPE: Final = "application/json"
REASON_HEADER: Final = "x-conveyor-reason"
"""Short, stable reason a message was dead-lettered by a worker (see `Malformed.reason`)."""
DETAIL_HEADER: Final = "x-conveyor-detail"
"""Human-readable detail of that reason, cut to `DETAIL_MAX` characters."""
DETAIL_MAX: Final = 1000


class MalformedMessageError(ConveyorError):
    """A task body that no worker could run.

    `reason` is one of `not-json`, `not-an-object`, `unsupported-version`, `invalid-fields`,
    `wrong-task-type`; `detail` says what exactly.
    """

    def __init__(self, reason: str, detail: str) -> None:
        self.reason = reason
        self.detail = detail[:DETAIL_MAX]
        super().__init__(f"{reason}: {self.detail}")


def decode_task(body: bytes, task_type: str | None = None) -> TaskMessage:
    """The task in `body`, or `MalformedMessageError` saying why there is none."""
    try:
        raw = json.loads(body)
    except (UnicodeDecodeError, ValueError) as error:
        raise MalformedMessageError("not-json", f"body is not JSON: {error}") from error
    if not isinstance(raw, dict):
        raise MalformedMessageError("not-an-object", f"body is a JSON {type(raw).__name__}")
    if raw.get("v") != names.MESSAGE_VERSION:
        raise MalformedMessageError(
            "unsupported-version",
            f"body version v={raw.get('v')!r}; this worker reads v={names.MESSAGE_VERSION}",
        )
    try:
        message = TaskMessage.model_validate(raw)
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}" for e in error.errors()
        )
        raise MalformedMessageError("invalid-fields", problems) from error
    if task_type is not None and message.task_type != task_type:
        raise MalformedMessageError(
            "wrong-task-type",
            f"task type {message.task_type!r} on the queue of task type {task_type!r}",
        )
    return message


def encode_task(message: TaskMessage) -> bytes:
    return message.model_dump_json(by_alias=True, exclude_none=True).encode()


def encode_event(event: TaskEvent) -> bytes:
    return event.model_dump_json(by_alias=True, exclude_none=True).encode()


def decode_event(body: bytes) -> TaskEvent:
    return TaskEvent.model_validate_json(body)

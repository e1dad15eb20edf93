"""A worker's events on `conveyor.events`: sent with confirms, sent again until confirmed.

The worker acks a task message only after every event of its attempt is confirmed, so the
operator hears of each attempt at least once, whatever crashes. Publishing failures that may
pass (the operator's queue not declared yet, a refused message) are retried with backoff;
only a closed link ends the wait.
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from conveyor import names
from conveyor.broker import BrokerError, Link, LinkClosedError
from conveyor.messaging.codec import encode_event
from conveyor.models import TaskEvent, TaskMessage

log = logging.getLogger("conveyor.worker")

PROGRESS_HEADER = "x-conveyor-progress"
"""Progress a task reported with its heartbeat (TaskEvent has no field for it yet)."""

Status = Literal["started", "heartbeat", "succeeded", "failed"]


@dataclass(eq=False)
class SentEvent:
    """One published event and the Future of its confirm."""

    status: Status
    body: bytes
    message_id: str
    headers: dict[str, Any] | None
    future: Future[None]


class EventSender:
    def __init__(self, link: Link, worker: str) -> None:
        self._link = link
        self._worker = worker

    def send(self, message: TaskMessage, status: Status, *,
             outputs: dict[str, Any] | None = None, error: str | None = None,
             retryable: bool = True, progress: str | None = None) -> SentEvent:
        event = TaskEvent(status=status, attempt_id=message.attempt_id, worker=self._worker,
                          at=datetime.now(UTC), outputs=outputs, error=error,
                          retryable=retryable)
        # started/succeeded/failed happen once per attempt and delivery: a stable id lets a
        # consumer spot the copy a resend makes. Heartbeats repeat, so theirs is unique.
        message_id = f"{message.attempt_id}:{status}"
        if status == "heartbeat":
            message_id += f":{event.at.timestamp() if event.at else 0}"
        headers = {PROGRESS_HEADER: progress} if progress is not None else None
        body = encode_event(event)
        return SentEvent(status, body, message_id, headers, self._publish(status, body,
                                                                            message_id, headers))

    def _publish(self, status: Status, body: bytes, message_id: str,
                 headers: dict[str, Any] | None) -> Future[None]:
        return self._link.publish(names.EVENTS_EXCHANGE, names.task_routing_key(status), body,
                                  headers=headers, message_id=message_id)

    def confirm(self, sent: SentEvent, stop: threading.Event) -> bool:
        """Wait until the broker confirmed `sent`, resending it after failures that may pass.

        False when the link closed or `stop` was set first: the event is not known to be
        stored, and the caller must not ack the task.
        """
        delay = 0.2
        while True:
            try:
                sent.future.result()
                return True
            except LinkClosedError:
                return False
            except BrokerError as error:
                log.warning("Failed to publish event status=%s id=%s error=%s; retrying in"
                            " %.1fs", sent.status, sent.message_id, error, delay)
            if stop.wait(delay):
                return False
            delay = min(delay * 2, 5.0)
            sent.future = self._publish(sent.status, sent.body, sent.message_id, sent.headers)

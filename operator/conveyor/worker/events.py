"""A worker's events on `conveyor.events`: sent with confirms, sent again until confirmed.

The worker acks a task message only after every event of its attempt is confirmed, so the
operator hears of each attempt at least once, whatever crashes. Each event is routed to the
install that dispatched the attempt (`task.<status>.<replyTo>`). Publishing failures that may
pass (a refused message, the install's queue not declared yet) are retried with backoff on
the link's own timer; a closed link gives up, and then the task is not acked. An event no
queue takes for `UNROUTABLE_GIVE_UP` seconds is given up too, and counts as told: the install
that dispatched the attempt is gone (uninstalled, its queues deleted), and holding the task
forever would only stop this worker taking work; were the install to come back, its lease on
the attempt (operator/runs/leases.py) dispatches it again.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Literal

from conveyor import names
from conveyor.broker import BrokerError, Link, LinkClosedError, UnroutableError
from conveyor.broker.codec import encode_event
from conveyor.broker.confirms import Confirmation
from conveyor.models import TaskEvent, TaskMessage
from conveyor.worker.executing import Outcome

log = logging.getLogger("conveyor.worker")

PROGRESS_HEADER = "x-conveyor-progress"
"""Progress a task reported with its heartbeat (TaskEvent has no field for it yet)."""
MAX_RETRY_DELAY = 5.0
UNROUTABLE_GIVE_UP = 60.0

Status = Literal["started", "heartbeat", "succeeded", "failed"]


class EventSender:
    """Publishes a worker's TaskEvents with confirms, resending until confirmed."""

    def __init__(self, link: Link, worker: str) -> None:
        self._link = link
        self._worker = worker

    def send(self, message: TaskMessage, status: Status, on_confirmed: Callable[[], None], *,
             outcome: Outcome | None = None, started: datetime | None = None,
             progress: str | None = None) -> None:
        """Publish the event (a final one carries `outcome`; a failure also when the attempt
        `started`); call `on_confirmed` (on the link's I/O thread) once the broker confirmed
        it, however many sends that takes. Never called if the link closes first."""
        final: dict[str, Any] = {}
        if outcome is not None:
            final = {"outputs": outcome.outputs, "error": outcome.error,
                     "retryable": outcome.retryable}
            if outcome.status == "failed":
                final.update(reason=outcome.reason, error_type=outcome.error_type,
                             started_at=started)
        event = TaskEvent(status=status, attempt_id=message.attempt_id, worker=self._worker,
                          at=datetime.now(UTC), **final)
        # started/succeeded/failed happen once per delivery of an attempt: a stable id lets a
        # consumer spot the copy a resend makes. Heartbeats repeat, so theirs is unique.
        message_id = f"{message.attempt_id}:{status}"
        if status == "heartbeat" and event.at is not None:
            message_id += f":{event.at.timestamp()}"
        headers = {PROGRESS_HEADER: progress} if progress is not None else None
        body = encode_event(event)

        routing_key = names.task_routing_key(status, message.reply_to)
        first_try = time.monotonic()

        def publish(delay: float) -> None:
            future = self._link.publish(names.EVENTS_EXCHANGE, routing_key,
                                        body, headers=headers, message_id=message_id)
            future.add_done_callback(lambda done: settled(done, delay))

        def settled(future: Confirmation, delay: float) -> None:
            error = future.exception()
            if error is None:
                on_confirmed()
            elif (isinstance(error, UnroutableError)
                  and time.monotonic() - first_try >= UNROUTABLE_GIVE_UP):
                log.error("Gave up event status=%s id=%s: no queue takes %s (the install that"
                          " dispatched the attempt is gone)", status, message_id, routing_key)
                on_confirmed()
            elif isinstance(error, LinkClosedError):
                log.warning("Dropped event status=%s id=%s: the link closed", status,
                            message_id)
            elif isinstance(error, BrokerError):
                log.warning("Failed to publish event status=%s id=%s error=%s; retrying in"
                            " %.1fs", status, message_id, error, delay)
                self._link.call_later(delay, lambda: publish(min(delay * 2, MAX_RETRY_DELAY)))
            else:
                log.error("Failed to publish event status=%s id=%s error=%r", status,
                          message_id, error)

        publish(0.2)

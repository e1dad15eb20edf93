"""`ctx`, the second argument of a task: which attempt this is, and a way to say "alive"."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from conveyor.models import TaskMessage

# A task calling heartbeat() in a tight loop must not flood the broker: at most one heartbeat
# event per interval goes out; the others only record the progress.
MIN_HEARTBEAT_INTERVAL = 1.0


class TaskContext:
    """What a task knows about its attempt.

    `idempotency_key` is the attempt id, `<run-uid>/<task>[<index>]/<attempt>`: the same for
    every delivery of one attempt, so a task with side effects can recognise a repeat.
    """

    def __init__(self, message: TaskMessage, worker: str, started: datetime,
                 send_heartbeat: Callable[[str | None], None]) -> None:
        self.namespace = message.namespace
        self.workflow = message.workflow
        self.run = message.run
        self.run_uid = message.run_uid
        self.task = message.task
        self.task_type = message.task_type
        self.index = message.index
        self.attempt = message.attempt
        self.idempotency_key = message.attempt_id
        self.worker = worker
        self.started = started
        self.deadline: datetime | None = (
            started + timedelta(seconds=message.timeout_seconds)
            if message.timeout_seconds else None
        )
        self._send_heartbeat = send_heartbeat
        self._lock = threading.Lock()
        self._last_heartbeat = time.monotonic()
        self._progress: str | None = None

    @property
    def attempt_id(self) -> str:
        return self.idempotency_key

    @property
    def progress(self) -> str | None:
        """The progress last reported with `heartbeat(progress=...)`."""
        return self._progress

    def remaining(self) -> float | None:
        """Seconds left before the attempt's deadline (negative once past), or None."""
        if self.deadline is None:
            return None
        return (self.deadline - datetime.now(UTC)).total_seconds()

    def heartbeat(self, progress: str | float | None = None) -> None:
        """Tell the operator the attempt is alive, optionally how far it got.

        Cheap to call often: at most one event per second leaves the worker. The SDK also
        sends heartbeats on its own while a task runs.
        """
        now = time.monotonic()
        with self._lock:
            if progress is not None:
                self._progress = (f"{progress:.0%}" if isinstance(progress, float)
                                  else str(progress))
            if now - self._last_heartbeat < MIN_HEARTBEAT_INTERVAL:
                return
            self._last_heartbeat = now
            current = self._progress
        self._send_heartbeat(current)

    def seconds_since_heartbeat(self) -> float:
        with self._lock:
            return time.monotonic() - self._last_heartbeat

    def __repr__(self) -> str:
        return f"TaskContext({self.idempotency_key!r})"

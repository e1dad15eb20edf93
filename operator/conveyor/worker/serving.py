"""The worker: deliveries in, task functions on a pool of threads, events out, acks last.

Threads, and who does what:
    the link's I/O thread   receives deliveries, decodes them, hands jobs to the pool; takes
                            the confirms of events and, after the last one, acks the task;
                            it never runs user code and never waits;
    N task threads          each runs one job at a time: reads inputs that are references,
                            runs the function, stores large outputs (`offload`), sends the
                            final event, and moves on without waiting for confirms (one
                            thread hop less per task: the I/O thread acks);
    the heartbeat thread    sends `started` for each job still running `started_after`
                            seconds after it began (a task that ends sooner sends only its
                            final event: DESIGN.md §3), and a heartbeat for each job that has
                            been quiet too long (until the final event: while the inputs are
                            read from the object store and the outputs written to it too);
    the main thread         waits for SIGTERM and then drains (`shutdown`).

A body no worker can run (see `broker.codec.decode_task`, plus `too-large` past
CONVEYOR_MAX_TASK_BYTES, unread) is copied to the dead-letter queue with its reason in a
header and acked: the worker keeps serving.

Invariants: a task message is acked only after all events of its attempt are confirmed (a job
counts its unconfirmed events; it completes when the count is zero and the final event is
among them); each delivery is settled once, by whoever removes its job from `_jobs` (on
completion, or `shutdown` when the grace period ends), under `_lock`.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime

from conveyor import names
from conveyor.broker import BrokerError, Delivery, Link
from conveyor.broker.codec import (
    DETAIL_HEADER,
    REASON_HEADER,
    MalformedMessageError,
    decode_task,
)
from conveyor.models import TaskMessage
from conveyor.worker.context import TaskContext
from conveyor.worker.events import EventSender, Status
from conveyor.worker.executing import LOST, Outcome, failed
from conveyor.worker.metrics import Metrics
from conveyor.worker.offload import Offload
from conveyor.worker.registry import TaskDefinition
from conveyor.worker.settings import WorkerSettings

log = logging.getLogger("conveyor.worker")


@dataclass(eq=False)
class _Job:
    message: TaskMessage
    deliveries: list[Delivery]
    ctx: TaskContext | None = None
    unconfirmed: int = 0
    """Events sent for this attempt and not confirmed yet."""
    outcome: Outcome | None = None
    """Set when the final event is sent: from then on, zero unconfirmed means done."""
    began: float = 0.0
    """When a task thread took it (monotonic)."""
    started_sent: bool = False


class Worker:
    """Serves one task type: deliveries to a thread pool, events back, acks, shutdown."""

    def __init__(self, settings: WorkerSettings, definition: TaskDefinition, link: Link,
                 metrics: Metrics, offload: Offload | None = None) -> None:
        """`offload` passes values by reference through the object store; without one, the
        settings must name no store."""
        self._settings = settings
        self._offload = offload or Offload(settings)
        self._definition = definition
        self._link = link
        self._metrics = metrics
        self._events = EventSender(link, settings.worker_name)
        self._dead_letter_queue = names.dead_letter_queue(settings.queue)
        self._work: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._jobs: dict[str, _Job] = {}
        self._draining = False
        self._stop = threading.Event()

    @property
    def held(self) -> int:
        with self._lock:
            return len(self._jobs)

    def start(self) -> None:
        # Daemon threads: a task still running when the grace period ends must not keep the
        # process alive; its message is requeued by then.
        for number in range(self._settings.concurrency):
            threading.Thread(target=self._serve, name=f"task-{number}", daemon=True).start()
        if self._settings.heartbeat_seconds > 0 or self._settings.started_after > 0:
            threading.Thread(target=self._beat, name="heartbeat", daemon=True).start()
        self._link.consume(self._settings.queue, self._settings.concurrency, self._on_delivery)

    # -- the I/O thread ----------------------------------------------------------------------

    def _on_delivery(self, delivery: Delivery) -> None:
        if self._draining:
            delivery.requeue()  # arrived while the cancel was on its way
            return
        try:
            message = self._decode(delivery)
        except MalformedMessageError as error:
            self._dead_letter(delivery, error)
            return
        with self._lock:
            job = self._jobs.get(message.attempt_id)
            if job is not None:
                # The broker redelivered an attempt this worker is still running (its first
                # delivery's channel closed): the running job settles this delivery too.
                job.deliveries.append(delivery)
                return
            job = self._jobs[message.attempt_id] = _Job(message, [delivery])
        self._work.put(job)

    def _decode(self, delivery: Delivery) -> TaskMessage:
        """The task, or MalformedMessageError: nothing else may leave the I/O thread's
        callback, which would stop the link and strand the delivery unsettled."""
        size, limit = len(delivery.body), self._settings.max_task_bytes
        if size > limit:
            raise MalformedMessageError(
                "too-large", f"body of {size} bytes; this worker reads at most {limit} "
                             "(CONVEYOR_MAX_TASK_BYTES)")
        try:
            return decode_task(delivery.body, self._definition.task_type)
        except RecursionError:
            raise MalformedMessageError("not-json", "body nests deeper than the JSON decoder "
                                                    "allows") from None
        except MalformedMessageError:
            raise
        except Exception as error:  # a body that trips the decoder in a way not foreseen
            log.exception("Failed to decode a task message queue=%s", self._settings.queue)
            raise MalformedMessageError("undecodable", f"{type(error).__name__}: {error}"
                                        ) from error

    def _dead_letter(self, delivery: Delivery, error: MalformedMessageError) -> None:
        """Copy the message to the dead-letter queue with the reason, then ack it.

        Rejecting it would dead-letter it too, but without a word on why.
        """
        log.error("Dead-lettered a malformed task message queue=%s id=%s reason=%s detail=%s",
                  self._settings.queue, delivery.message_id, error.reason, error.detail)
        self._metrics.dead_lettered(error.reason)
        headers = {**delivery.headers, REASON_HEADER: error.reason, DETAIL_HEADER: error.detail}
        confirmed = self._link.publish("", self._dead_letter_queue, delivery.body,
                                       headers=headers, message_id=delivery.message_id)

        def settle(future: object) -> None:
            if confirmed.exception() is None:
                delivery.ack()
            else:  # no dead-letter queue to copy to: let the broker dead-letter it as is
                log.error("Failed to copy to the dead-letter queue=%s error=%s; rejected it",
                          self._dead_letter_queue, confirmed.exception())
                delivery.reject()

        confirmed.add_done_callback(settle)

    # -- task threads ------------------------------------------------------------------------

    def _serve(self) -> None:
        while (job := self._work.get()) is not None:
            try:
                self._run(job)
            except Exception:
                log.exception("Failed to run a job attempt=%s", job.message.attempt_id)

    def _run(self, job: _Job) -> None:
        message = job.message
        if not self._holds(job):
            return  # given back by shutdown before it started
        self._metrics.in_flight(1)
        ctx = TaskContext(message, self._settings.worker_name, datetime.now(UTC),
                          lambda progress: self._send(job, "heartbeat", progress=progress))
        job.began = time.monotonic()  # before ctx: the heartbeat thread looks at jobs with one
        job.ctx = ctx
        # A task with a timeout says at once that it started: the operator counts the
        # timeout from then. Any other says so only if it runs long enough to be seen
        # running (the heartbeat thread); a quick one sends its final event alone.
        if message.timeout_seconds is not None or self._settings.started_after <= 0:
            self._start(job)
        returned = job.deliveries[0].delivery_count
        log.info("Started task attempt=%s run=%s/%s task=%s delivery=%d", message.attempt_id,
                 message.namespace, message.run, message.task, returned + 1)
        limit = self._settings.delivery_limit
        if limit is not None and 0 < limit <= returned:
            # The last delivery the queue allows: every one before it lost its worker (a
            # crash, a kill, an OOM). Run once more, it would most likely take this worker
            # too, and the message would go to the dead-letter queue with nobody told; so
            # the operator is told it failed, and its retry policy decides.
            outcome = failed(f"the workers that took this attempt were lost {returned} "
                             f"times (the task type's deliveryLimit is {limit}); not run again",
                             True, reason=LOST)
        else:
            outcome = self._offload.attempt(self._definition, message, ctx)
        if not self._holds(job):
            self._metrics.in_flight(-1)
            return  # requeued by shutdown: another delivery will report the attempt
        self._send(job, outcome.status, outcome=outcome)

    def _start(self, job: _Job) -> None:
        """Send `started`, unless the final event went first or the job is no longer held."""
        with self._lock:
            if job.started_sent or job.outcome is not None or self._jobs.get(
                    job.message.attempt_id) is not job:
                return
            job.started_sent = True
            job.unconfirmed += 1  # counted before the final event can complete the job
        self._events.send(job.message, "started", lambda: self._confirmed(job))

    def _holds(self, job: _Job) -> bool:
        with self._lock:
            return self._jobs.get(job.message.attempt_id) is job

    def _send(self, job: _Job, status: Status, outcome: Outcome | None = None,
              progress: str | None = None) -> None:
        with self._lock:
            job.unconfirmed += 1
            if outcome is not None:
                job.outcome = outcome
        if status == "heartbeat":
            log.info("Sent heartbeat attempt=%s progress=%s", job.message.attempt_id, progress)
        self._events.send(
            job.message, status, lambda: self._confirmed(job),
            outcome=outcome, started=job.ctx.started if job.ctx else None, progress=progress,
        )

    def _confirmed(self, job: _Job) -> None:
        """An event of `job` is confirmed (I/O thread); after the last one, ack the task."""
        message = job.message
        with self._lock:
            job.unconfirmed -= 1
            outcome = job.outcome
            if outcome is None or job.unconfirmed > 0 or self._jobs.get(
                    message.attempt_id) is not job:
                return
            del self._jobs[message.attempt_id]
            deliveries, job.deliveries = job.deliveries, []
            self._idle.notify_all()
        for delivery in deliveries:
            delivery.ack()
        self._metrics.in_flight(-1)
        self._metrics.finished(outcome.label, outcome.duration)
        if outcome.status == "succeeded":
            log.info("Succeeded task attempt=%s duration=%.3fs", message.attempt_id,
                     outcome.duration)
        else:
            log.info("Failed task attempt=%s retryable=%s duration=%.3fs error=%s",
                     message.attempt_id, outcome.retryable, outcome.duration, outcome.error)

    # -- heartbeats --------------------------------------------------------------------------

    def _beat(self) -> None:
        every, started_after = self._settings.heartbeat_seconds, self._settings.started_after
        ticks = [t for t in (1.0, every / 2, started_after / 2) if t > 0]
        while not self._stop.wait(min(ticks)):
            now = time.monotonic()
            with self._lock:
                jobs = [job for job in self._jobs.values()
                        if job.ctx is not None and job.outcome is None]
            for job in jobs:
                if started_after > 0 and not job.started_sent and \
                        now - job.began >= started_after:
                    self._start(job)
                if every > 0 and job.ctx is not None and \
                        job.ctx.seconds_since_heartbeat() >= every:
                    job.ctx.heartbeat()

    # -- the main thread ---------------------------------------------------------------------

    def shutdown(self, grace: float) -> tuple[int, int]:
        """Stop taking work, let held tasks finish for up to `grace` seconds, requeue the
        rest; return (held at the start, requeued)."""
        deadline = time.monotonic() + grace
        self._draining = True
        # Without a connection the cancel cannot complete; the broker requeues what it
        # delivered anyway once it sees the connection gone.
        with contextlib.suppress(TimeoutError, BrokerError):
            self._link.cancel().result(timeout=max(0.5, min(grace, 5.0)))
        with self._lock:
            held = len(self._jobs)
            log.info("Stopped taking tasks held=%d grace=%.0fs", held, grace)
            self._idle.wait_for(lambda: not self._jobs,
                                timeout=max(0.0, deadline - time.monotonic()))
            leftover = list(self._jobs.values())
            self._jobs.clear()
            for job in leftover:
                job.deliveries, deliveries = [], job.deliveries
                for delivery in deliveries:
                    delivery.requeue()
        for job in leftover:
            log.info("Requeued task attempt=%s", job.message.attempt_id)
            self._metrics.finished("requeued")
        self._stop.set()
        for _ in range(self._settings.concurrency):
            self._work.put(None)
        return held, len(leftover)

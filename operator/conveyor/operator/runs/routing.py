"""Worker events to their runs: each delivery from the operator's events queue is decoded and
applied to its run (through the Actor, which acks it with the status write that carries its
effect), parked while its run is being rebuilt, dead-lettered with the reason when it is not
an event, or acked and dropped when it is of a run the operator does not hold (a deleted one:
only the operator dispatches tasks, so an event cannot come before its run is seen)."""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Mapping

from pydantic import ValidationError

from conveyor import engine
from conveyor.broker.codec import DETAIL_HEADER, REASON_HEADER, decode_event
from conveyor.broker.confirms import Confirmation
from conveyor.operator.metrics import Metrics
from conveyor.operator.runs.acting import Actor
from conveyor.operator.runs.attempts import Attempts
from conveyor.operator.runs.leases import Leases
from conveyor.operator.runs.records import ActiveRun
from conveyor.operator.seams import BrokerLink, Delivery

log = logging.getLogger("conveyor.operator.runs")


class EventRouter:
    """Routes worker events; holds the ones parked for runs being rebuilt."""

    def __init__(self, runs: Mapping[str, ActiveRun], actor: Actor, attempts: Attempts,
                 leases: Leases, metrics: Metrics, *, link: BrokerLink) -> None:
        self._runs = runs
        self._link = link
        self.dead_letter_queue: str | None = None  # set with the events queue it serves
        self._leases = leases
        self._actor = actor
        self._attempts = attempts
        self._metrics = metrics
        self._parked: dict[str, list[Delivery]] = defaultdict(list)

    def deliver(self, delivery: Delivery) -> None:
        """A worker event from the broker: applied to its run, parked while the run is being
        rebuilt, or acked and dropped when it belongs to no run (or is not an event)."""
        try:
            message = decode_event(delivery.body)
        except (ValidationError, ValueError) as error:
            self._dead_letter(delivery, "malformed", str(error).splitlines()[0])
            return
        parsed = engine.parse_attempt_id(message.attempt_id)
        if parsed is None:
            self._dead_letter(delivery, "not-an-attempt-id",
                              f"attemptId {message.attempt_id[:200]!r} is not <run-uid>/<task>"
                              "[<index>]/<attempt>")
            return
        self._attempts.track(message.attempt_id, message.status, message.worker)
        self._leases.renew(message.attempt_id, self._leases.now())
        run = self._runs.get(parsed[0])
        if run is None:
            log.debug("Event dropped: no such run attempt=%s", message.attempt_id)
            self._metrics.events.labels(message.status, "unknown-run").inc()
            delivery.ack()
            return
        if run.state is None:  # being rebuilt from its status: apply once it is
            self._parked[parsed[0]].append(delivery)
            return
        try:
            effect = self._actor.apply(run, engine.from_message(message), delivery)
        except Exception:
            # A bug met by this event. Requeued, it would come straight back and fail again;
            # dropped, the attempt's lease brings it back at a lease's pace, visibly.
            log.exception("Event failed to apply; dropped attempt=%s status=%s",
                          message.attempt_id, message.status)
            self._metrics.events.labels(message.status, "error").inc()
            if not delivery_settled(run, delivery):
                delivery.ack()
            return
        self._metrics.events.labels(message.status, "applied" if effect else "ignored").inc()

    def _dead_letter(self, delivery: Delivery, reason: str, detail: str) -> None:
        """Not an event: copied to the events queue's dead-letter queue with why, for a
        person to read, then acked (requeued it would only come back). Its body is never
        logged: it may be anything, of any size."""
        self._metrics.events.labels(reason, "dead-lettered").inc()
        log.error("Event dead-lettered routing_key=%s id=%s bytes=%d reason=%s detail=%s",
                  delivery.routing_key, delivery.message_id, len(delivery.body), reason,
                  detail[:500])
        queue = self.dead_letter_queue
        if queue is None:
            delivery.ack()
            return
        copied = self._link.publish("", queue, delivery.body,
                                    headers={REASON_HEADER: reason, DETAIL_HEADER: detail[:500]},
                                    message_id=delivery.message_id)

        def settle(done: Confirmation) -> None:
            if done.exception() is not None:
                log.error("Failed to copy to the dead-letter queue=%s error=%s; dropped it",
                          queue, done.exception())
            delivery.ack()

        copied.add_done_callback(settle)

    def release_parked(self, uid: str) -> None:
        """The run has its state now: its parked events are applied, in arrival order."""
        for delivery in self._parked.pop(uid, []):
            self.deliver(delivery)

    def drop_parked(self, uid: str) -> None:
        """The run is gone: its parked events need nothing more."""
        for delivery in self._parked.pop(uid, []):
            delivery.ack()


def delivery_settled(run: ActiveRun, delivery: Delivery) -> bool:
    """Whether the run already holds `delivery` to ack with its next status write."""
    return any(held is delivery for held in run.acks)

"""Worker events to their runs: each delivery from the operator's events queue is decoded and
applied to its run (through the Actor, which acks it with the status write that carries its
effect), parked while its run is being rebuilt, or acked and dropped when it is malformed or
of a run the operator does not hold (a deleted one: only the operator dispatches tasks, so an
event cannot come before its run is seen)."""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Mapping

from pydantic import ValidationError

from conveyor import engine
from conveyor.broker.codec import decode_event
from conveyor.operator.metrics import Metrics
from conveyor.operator.runs.acting import Actor
from conveyor.operator.runs.attempts import Attempts
from conveyor.operator.runs.leases import Leases
from conveyor.operator.runs.records import ActiveRun
from conveyor.operator.seams import Delivery

log = logging.getLogger("conveyor.operator.runs")


class EventRouter:
    """Routes worker events; holds the ones parked for runs being rebuilt."""

    def __init__(self, runs: Mapping[str, ActiveRun], actor: Actor, attempts: Attempts,
                 leases: Leases, metrics: Metrics) -> None:
        self._runs = runs
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
            log.error("Event dropped: malformed body routing_key=%s error=%s",
                      delivery.routing_key, str(error).splitlines()[0])
            self._metrics.events.labels("malformed", "dropped").inc()
            delivery.ack()
            return
        parsed = engine.parse_attempt_id(message.attempt_id)
        if parsed is None:
            log.error("Event dropped: not an attempt id attempt=%s", message.attempt_id)
            delivery.ack()
            return
        self._attempts.track(message.attempt_id, message.status, message.worker)
        self._leases.renew(message.attempt_id, time.monotonic())
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

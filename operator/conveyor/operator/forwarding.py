"""Run events to Kafka: every `run.<phase>` event on `conveyor.events` forwarded to the
Kafka topic of `Settings.kafka_run_events_topic`, at least once.

A bridge, so the run loop publishes its events once, to RabbitMQ, as it always did: the
install's queue `conveyor.operator.<instance>.kafka-run-events` is bound to `run.#`, and
each of its messages is produced to Kafka (key: the run's uid, so one run's events keep
their order on one partition; the body as it is, the RunEvent's JSON; headers
`conveyor-routing-key` and `conveyor-message-id`) by an idempotent producer with acks=all.
The RabbitMQ delivery is acked only after Kafka's delivery report; a failed delivery (Kafka
down past the producer's timeout) is requeued after RETRY_SECONDS and produced again. So
nothing is lost across a Kafka or operator restart; a record can be written twice (a crash
between Kafka's report and the ack), and the message id tells a reader it has seen it.
The queue is a quorum queue, so a RabbitMQ restart keeps what waits in it; at most
PREFETCH events are on their way to Kafka at once.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading

from conveyor import names
from conveyor.broker import Admin, BrokerError
from conveyor.kafka import KafkaError
from conveyor.operator.metrics import Metrics
from conveyor.operator.pools import PoolManager
from conveyor.operator.seams import BrokerLink, Delivery, RecordSink

log = logging.getLogger("conveyor.operator.forwarding")

RUN_EVENTS_PATTERN = "run.#"
PREFETCH = 200
RETRY_SECONDS = 2.0
DECLARE_SECONDS = 60.0


def run_key(delivery: Delivery) -> bytes | None:
    """The Kafka key of a run event: its run's uid (None for a body that names none)."""
    try:
        body = json.loads(delivery.body)
    except ValueError:
        return None
    uid = body.get("runUid") if isinstance(body, dict) else None
    return uid.encode() if isinstance(uid, str) and uid else None


class RunEventForwarder:
    """Consumes the install's run events queue and produces each event to Kafka."""

    def __init__(self, link: BrokerLink, sink: RecordSink, pools: PoolManager, *,
                 queue: str, topic: str, metrics: Metrics,
                 retry_seconds: float = RETRY_SECONDS) -> None:
        self.queue = queue
        self.topic = topic
        self._link = link
        self._sink = sink
        self._pools = pools
        self._metrics = metrics
        self._retry_seconds = retry_seconds

    async def declare(self) -> None:
        def work(admin: Admin) -> None:
            admin.declare_events_queue(self.queue, [RUN_EVENTS_PATTERN])

        await self._pools.admin_call(work)

    def start(self) -> None:
        self._link.consume(self.queue, PREFETCH, self._forward)

    async def run(self) -> None:
        """Declare the queue again every DECLARE_SECONDS (the background loop): after a
        broker lost it, it is back, bound, within that time."""
        while True:
            await asyncio.sleep(DECLARE_SECONDS)
            try:
                await self.declare()
            except BrokerError as error:
                log.warning("Declaring the run events queue failed queue=%s error=%s",
                            self.queue, error)

    def _forward(self, delivery: Delivery) -> None:
        headers = [("conveyor-routing-key", delivery.routing_key.encode())]
        if delivery.message_id:
            headers.append(("conveyor-message-id", delivery.message_id.encode()))
        self._sink.produce(self.topic, delivery.body, key=run_key(delivery), headers=headers,
                           on_delivered=lambda error: self._settle(delivery, error))

    def _settle(self, delivery: Delivery, error: KafkaError | None) -> None:
        if error is None:
            self._metrics.run_events_forwarded.labels("delivered").inc()
            delivery.ack()
            return
        self._metrics.run_events_forwarded.labels("failed").inc()
        log.warning("Forwarding a run event to Kafka failed; requeued topic=%s event=%s "
                    "error=%s", self.topic, delivery.message_id, error)
        timer = threading.Timer(self._retry_seconds, delivery.requeue)
        timer.daemon = True
        timer.start()


def queue_name(instance: str) -> str:
    return names.operator_queue(instance, "kafka-run-events")

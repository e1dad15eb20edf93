"""Run events to Kafka through the real RunEventForwarder over FakeLink and FakeRecordSink:
each event produced keyed by its run's uid, acked only after Kafka's delivery report, and
requeued (not acked, not lost) when the delivery fails."""

from __future__ import annotations

import asyncio
from typing import Any

from conveyor.kafka import KafkaError
from conveyor.models import RunEvent
from conveyor.operator.forwarding import RunEventForwarder, queue_name
from conveyor.operator.metrics import Metrics
from unit.fakes import FakeDelivery, FakeLink, FakeRecordSink, until

TOPIC = "conveyor.runs"


class Bridge:
    def __init__(self) -> None:
        self.link = FakeLink()
        self.sink = FakeRecordSink()
        self.metrics = Metrics()
        self.queue = queue_name("ops.conveyor-operator")
        self.forwarder = RunEventForwarder(self.link, self.sink, None,  # type: ignore[arg-type]
                                           queue=self.queue, topic=TOPIC,
                                           metrics=self.metrics, retry_seconds=0.01)
        self.forwarder.start()

    def send(self, phase: str = "Succeeded", uid: str = "uid-1") -> FakeDelivery:
        body = RunEvent(phase=phase, namespace="ns", run="r1", run_uid=uid,  # type: ignore[arg-type]
                        workflow="wf").model_dump_json(by_alias=True, exclude_none=True)
        delivery = FakeDelivery(body.encode(), f"run.{phase.lower()}", f"{uid}/run.{phase}")
        self.link.deliver(delivery, self.queue)
        return delivery

    def count(self, outcome: str) -> float:
        value = self.metrics.registry.get_sample_value("conveyor_kafka_run_events_total",
                                                       {"outcome": outcome})
        return value or 0.0


def run(scenario: Any) -> None:
    asyncio.run(asyncio.wait_for(scenario(), 10))


def test_a_run_event_is_acked_only_after_kafka_has_it() -> None:
    async def scenario() -> None:
        b = Bridge()
        assert b.queue == "conveyor.operator.ops.conveyor-operator.kafka-run-events"
        b.sink.hold = True
        delivery = b.send()
        (produced,) = b.sink.produced
        assert produced.topic == TOPIC and produced.key == b"uid-1"
        assert produced.value == delivery.body
        assert dict(produced.headers) == {"conveyor-routing-key": b"run.succeeded",
                                          "conveyor-message-id": b"uid-1/run.Succeeded"}
        assert delivery.settlements == []  # Kafka has not said yet
        b.sink.settle()
        assert delivery.settlements == ["ack"] and b.count("delivered") == 1
    run(scenario)


def test_a_failed_delivery_is_requeued_and_produced_again() -> None:
    async def scenario() -> None:
        b = Bridge()
        b.sink.fail_next(KafkaError("kafka produce: _MSG_TIMED_OUT", code="_MSG_TIMED_OUT"))
        delivery = b.send("Failed")
        await until(lambda: delivery.settlements == ["requeue"], what="the requeue")
        assert b.count("failed") == 1 and b.count("delivered") == 0
        again = b.link.deliver(delivery.redeliver(), b.queue)
        assert isinstance(again, FakeDelivery) and again.settlements == ["ack"]
        assert [p.key for p in b.sink.produced] == [b"uid-1", b"uid-1"]
    run(scenario)


def test_a_body_without_a_run_uid_is_forwarded_without_a_key() -> None:
    async def scenario() -> None:
        b = Bridge()
        delivery = FakeDelivery(b"not json", "run.succeeded", None)
        b.link.deliver(delivery, b.queue)
        assert b.sink.produced[0].key is None and delivery.settlements == ["ack"]
        assert dict(b.sink.produced[0].headers) == {"conveyor-routing-key": b"run.succeeded"}
    run(scenario)

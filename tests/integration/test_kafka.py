"""The Kafka adapter (`conveyor.kafka.client`) against the test bed's real broker: records
handed out in partition order, nothing committed unless told, a new member of the group
reads on from the last commit (so what was not committed is read again), commits of an
older assignment ignored, the in-flight bound, TLS with the test bed's CA, and the producer's
delivery reports."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator, Sequence

import pytest

from conveyor import kafka
from conveyor.kafka import KafkaError, KafkaSettings, Record
from conveyor.kafka.client import Consumer
from support import kafka as tools
from support.waiting import eventually
from testbed import kafka as testbed_kafka
from testbed.layout import paths, ports

pytestmark = pytest.mark.integration


class Collected:
    def __init__(self) -> None:
        self.records: list[Record] = []
        self._lock = threading.Lock()

    def __call__(self, records: Sequence[Record]) -> None:
        with self._lock:
            self.records.extend(records)

    def offsets(self) -> list[int]:
        with self._lock:
            return [r.offset for r in self.records]


@pytest.fixture
def topic(kafka_settings: KafkaSettings) -> str:
    name = f"it-{uuid.uuid4().hex[:8]}"
    tools.create_topic(kafka_settings, name)
    return name


@pytest.fixture
def consumers(kafka_settings: KafkaSettings) -> Iterator[list[Consumer]]:
    made: list[Consumer] = []
    yield made
    for consumer in made:
        consumer.close()


def _consumer(settings: KafkaSettings, group: str, made: list[Consumer],
              max_in_flight: int = 100) -> tuple[Consumer, Collected]:
    consumer = kafka.consumer(settings, group, name="it", max_in_flight=max_in_flight)
    made.append(consumer)
    collected = Collected()
    consumer.start(collected)
    return consumer, collected


def test_only_what_is_committed_is_not_read_again(kafka_settings, topic, consumers):
    tools.produce(kafka_settings, topic, [{"n": n} for n in range(5)])
    group = f"g-{uuid.uuid4().hex[:6]}"
    first, seen = _consumer(kafka_settings, group, consumers)
    first.subscribe([topic])
    eventually(lambda: seen.offsets() == [0, 1, 2, 3, 4], 60, what="the five records")
    assert tools.committed(kafka_settings, group, topic) == [-1001]  # nothing unless told
    record = seen.records[2]
    assert record.value == b'{"n": 2}' and record.epoch > 0 and str(record) == f"{topic}/0/2"
    first.commit(record.where, 3, record.epoch)
    first.commit(record.where, 2, record.epoch)  # commits move forward only
    first.commit(record.where, 5, record.epoch + 100)  # not this assignment's: ignored
    eventually(lambda: tools.committed(kafka_settings, group, topic) == [3], 30,
               what="the commit")
    first.close()
    second, again = _consumer(kafka_settings, group, consumers)
    second.subscribe([topic])
    eventually(lambda: again.offsets() == [3, 4], 60, what="the uncommitted records again")


def test_past_the_in_flight_bound_reading_waits_for_a_release(kafka_settings, topic,
                                                              consumers):
    tools.produce(kafka_settings, topic, [b"{}"] * 6)
    consumer, seen = _consumer(kafka_settings, f"g-{uuid.uuid4().hex[:6]}", consumers,
                               max_in_flight=2)
    consumer.subscribe([topic])
    for handed in (2, 4, 6):
        eventually(lambda n=handed: len(seen.records) == n, 60, what=f"{handed} records")
        assert consumer.in_flight == 2  # paused at the bound: no more until a release
        for record in seen.records[handed - 2:handed]:
            consumer.release(record)
    assert seen.offsets() == [0, 1, 2, 3, 4, 5]


def test_the_tls_listener_with_the_test_beds_ca(kafka_settings, topic, consumers):
    tls = KafkaSettings(testbed_kafka.tls_bootstrap(ports()), "SSL",
                        ca_file=paths().amqp_ca)
    tools.produce(tls, topic, [{"over": "tls"}])
    consumer, seen = _consumer(tls, f"g-{uuid.uuid4().hex[:6]}", consumers)
    consumer.subscribe([topic])
    eventually(lambda: [r.value for r in seen.records] == [b'{"over": "tls"}'], 60,
               what="the record over TLS")


def test_the_producer_reports_each_delivery(kafka_settings, topic):
    producer = kafka.producer(kafka_settings, name="it")
    producer.start()
    reports: list[KafkaError | None] = []
    try:
        for n in range(3):
            producer.produce(topic, f'{{"n": {n}}}'.encode(), key=b"run-uid",
                             headers=[("conveyor-routing-key", b"run.succeeded")],
                             on_delivered=reports.append)
        eventually(lambda: reports == [None, None, None], 30, what="three delivery reports")
    finally:
        producer.close()
    found = tools.read(kafka_settings, topic, expect=3)
    assert [m.key() for m in found] == [b"run-uid"] * 3
    assert found[0].headers() == [("conveyor-routing-key", b"run.succeeded")]


def test_a_producer_that_cannot_deliver_says_why(kafka_settings):
    producer = kafka.producer(kafka_settings, name="it")
    producer.start()
    reports: list[KafkaError | None] = []
    try:
        producer.produce("bad topic name!", b"{}", key=None, headers=[],
                         on_delivered=reports.append)
        eventually(lambda: len(reports) == 1, 60, what="the failed delivery's report")
    finally:
        producer.close()
    assert isinstance(reports[0], KafkaError) and "bad topic name!" in str(reports[0])

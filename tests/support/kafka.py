"""Kafka for the tests, through Confluent's client directly (the tests' own producer, reader
and group tools, apart from the adapter under test)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from conveyor.kafka import KafkaSettings


@dataclass(frozen=True)
class Written:
    topic: str
    partition: int
    offset: int


def create_topic(settings: KafkaSettings, topic: str, partitions: int = 1) -> None:
    admin = AdminClient({**settings.client_config(), "log_level": 0})
    for future in admin.create_topics([NewTopic(topic, partitions, 1)]).values():
        future.result(30)


def produce(settings: KafkaSettings, topic: str, values: Iterable[bytes | dict[str, Any]], *,
            key: bytes | None = None, partition: int | None = None,
            timeout: float = 90) -> list[Written]:
    """Write the records (a dict as JSON) with an idempotent producer, waiting until the
    broker has each; where each went."""
    producer = Producer({**settings.client_config(), "enable.idempotence": True,
                         "log_level": 0})
    written: list[Written] = []
    errors: list[Any] = []

    def report(error: Any, message: Any) -> None:
        if error is not None:
            errors.append(error)
        else:
            written.append(Written(message.topic(), message.partition(), message.offset()))

    count = 0
    for value in values:
        body = json.dumps(value).encode() if isinstance(value, dict) else value
        extra = {} if partition is None else {"partition": partition}
        producer.produce(topic, value=body, key=key, on_delivery=report, **extra)
        count += 1
    left = producer.flush(timeout)
    assert left == 0 and not errors, f"{left} records not delivered; errors {errors}"
    assert len(written) == count
    return written


def read(settings: KafkaSettings, topic: str, *, expect: int,
         timeout: float = 60) -> list[Any]:
    """The first `expect` records of the topic (each partition from its start), as Confluent's
    messages; fails after `timeout` with what it found."""
    consumer = Consumer({**settings.client_config(), "group.id": f"reader-{time.time_ns()}",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False,
                         "log_level": 0})
    consumer.subscribe([topic])
    found: list[Any] = []
    deadline = time.monotonic() + timeout
    try:
        while len(found) < expect and time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is not None and message.error() is None:
                found.append(message)
    finally:
        consumer.close()
    assert len(found) >= expect, f"read {len(found)} of {expect} records of {topic}"
    return found


def committed(settings: KafkaSettings, group: str, topic: str,
              partitions: int = 1) -> list[int]:
    """The group's committed offset of each partition (-1001: none)."""
    consumer = Consumer({**settings.client_config(), "group.id": group, "log_level": 0})
    try:
        found = consumer.committed([TopicPartition(topic, p) for p in range(partitions)],
                                   timeout=10)
    finally:
        consumer.close()
    return [tp.offset for tp in found]


def reset_offsets(settings: KafkaSettings, group: str, topic: str, offset: int = 0,
                  partitions: int = 1) -> None:
    """Move an empty group's offsets back (as `kafka-consumer-groups --reset-offsets`)."""
    admin = AdminClient({**settings.client_config(), "log_level": 0})
    from confluent_kafka import ConsumerGroupTopicPartitions  # noqa: PLC0415

    request = ConsumerGroupTopicPartitions(
        group, [TopicPartition(topic, p, offset) for p in range(partitions)])
    for future in admin.alter_consumer_group_offsets([request]).values():
        future.result(30)

"""The Kafka adapter: Kafka triggers' consumer and the run events' producer.

`client` is the only module that imports the Kafka client (`confluent_kafka`, the optional
`kafka` extra: `pip install 'conveyor[kafka]'`); it is loaded only when asked for
(`consumer()`, `producer()`), so without Kafka settings Conveyor never needs it.
`settings`, `records` and `errors` are pure.
"""

from __future__ import annotations

import importlib.util
from types import ModuleType
from typing import TYPE_CHECKING

from conveyor.kafka.errors import (
    KafkaError,
    KafkaSettingsError,
    KafkaUnavailableError,
)
from conveyor.kafka.records import Record, TopicPartition
from conveyor.kafka.settings import BOOTSTRAP_ENV, KafkaSettings

if TYPE_CHECKING:
    from conveyor.kafka.client import Consumer, Producer


def installed() -> bool:
    """Whether the Kafka client library (the `kafka` extra) can be imported."""
    return importlib.util.find_spec("confluent_kafka") is not None


def _client() -> ModuleType:
    """`conveyor.kafka.client`; KafkaUnavailableError when the Kafka client library is not
    installed."""
    try:
        from conveyor.kafka import client as module  # noqa: PLC0415 - optional extra
    except ImportError as error:
        if error.name is None or not error.name.startswith("confluent_kafka"):
            raise
        raise KafkaUnavailableError(BOOTSTRAP_ENV) from None
    return module


def consumer(settings: KafkaSettings, group_id: str, *, name: str, max_in_flight: int,
             auto_offset_reset: str = "earliest") -> Consumer:
    """A consumer group member (not started); KafkaUnavailableError without the extra."""
    made: Consumer = _client().Consumer(settings, group_id, name=name,
                                        max_in_flight=max_in_flight,
                                        auto_offset_reset=auto_offset_reset)
    return made


def producer(settings: KafkaSettings, *, name: str) -> Producer:
    """An idempotent producer (not started); KafkaUnavailableError without the extra."""
    made: Producer = _client().Producer(settings, name=name)
    return made


__all__ = [
    "KafkaError", "KafkaSettings", "KafkaSettingsError", "KafkaUnavailableError", "Record",
    "TopicPartition", "consumer", "installed", "producer",
]

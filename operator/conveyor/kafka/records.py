"""A Kafka record as Conveyor sees it, apart from the client that read it (pure)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TopicPartition:
    topic: str
    partition: int

    def __str__(self) -> str:
        return f"{self.topic}/{self.partition}"


@dataclass(frozen=True)
class Record:
    """One consumed record: where it is (topic, partition, offset) and what it carries."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes | None], ...] = ()
    timestamp_ms: int | None = None
    epoch: int = 0
    """Which assignment of its partition delivered it: a record of an earlier one (the
    partition was revoked since) must not move that partition's commits any more."""

    @property
    def where(self) -> TopicPartition:
        return TopicPartition(self.topic, self.partition)

    def __str__(self) -> str:
        return f"{self.topic}/{self.partition}/{self.offset}"

"""The Kafka client (Confluent's `confluent_kafka`, on librdkafka): the only module that
imports it. Each side runs on a thread of its own, so no blocking call of librdkafka ever
runs on the operator's asyncio loop:

- `Consumer`: one member of a consumer group, offsets committed only when told
  (`enable.auto.commit` off): `commit(where, offset, epoch)` from any thread; records are
  handed to a callback in partition order, at most `max_in_flight` records and
  `max_in_flight_bytes` of keys and values (give or take the last batch) not yet
  `release`d: past either, its partitions are paused, and the group membership is kept by
  polling on; librdkafka's own prefetch is bounded by PREFETCH_KBYTES.
- `Producer`: idempotent (`enable.idempotence`, so `acks=all` and no duplicate or reordering
  on librdkafka's own retries); each `produce` reports its delivery once, from the producer's
  thread, with None or our `KafkaError`.

librdkafka's own log lines go to the `conveyor.kafka.librdkafka` logger (the operator keeps
it quiet: the errors they repeat come once per LOG_EVERY_SECONDS through the error callback
instead); its configuration, which holds the SASL password, is never logged.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Collection, Sequence
from typing import Any

import confluent_kafka

from conveyor.kafka.errors import KafkaError, for_code
from conveyor.kafka.records import Record, TopicPartition
from conveyor.kafka.settings import KafkaSettings

log = logging.getLogger("conveyor.kafka")
_client_log = logging.getLogger("conveyor.kafka.librdkafka")

POLL_SECONDS = 0.2
# A broker that is down is reported by librdkafka at every reconnection attempt: said once
# per error code in this many seconds.
LOG_EVERY_SECONDS = 30.0
RESTART_SECONDS = 5.0
BATCH = 500
MAX_IN_FLIGHT_BYTES = 64 * 1024 * 1024
PREFETCH_KBYTES = 16 * 1024
# A topic created after the subscription is seen within this time.
METADATA_REFRESH_MS = 5000

OnRecords = Callable[[Sequence[Record]], None]
OnDelivered = Callable[[KafkaError | None], None]


def _error(error: Any, what: str) -> KafkaError:
    return for_code(error.name(), error.str(), what=what, fatal=error.fatal(),
                    retriable=error.retriable())


def _size(record: Record) -> int:
    return len(record.value or b"") + len(record.key or b"")


class _Throttle:
    """Whether to log an error now: once per code in LOG_EVERY_SECONDS."""

    def __init__(self) -> None:
        self._last: dict[str, float] = {}

    def __call__(self, code: str) -> bool:
        now = time.monotonic()
        if now - self._last.get(code, -LOG_EVERY_SECONDS) < LOG_EVERY_SECONDS:
            return False
        self._last[code] = now
        return True


class Consumer:
    """One consumer group member on its own thread; see the module's docstring."""

    def __init__(self, settings: KafkaSettings, group_id: str, *, name: str,
                 max_in_flight: int = 1000, max_in_flight_bytes: int = MAX_IN_FLIGHT_BYTES,
                 auto_offset_reset: str = "earliest") -> None:
        self._config: dict[str, Any] = {
            **settings.client_config(),
            "group.id": group_id,
            "client.id": name,
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "auto.offset.reset": auto_offset_reset,
            "topic.metadata.refresh.interval.ms": METADATA_REFRESH_MS,
            "queued.max.messages.kbytes": PREFETCH_KBYTES,
            "error_cb": self._on_error,
            "logger": _client_log,
        }
        self._max_in_flight = max_in_flight
        self._max_in_flight_bytes = max_in_flight_bytes
        self._lock = threading.Lock()
        self._in_flight = 0
        self._in_flight_bytes = 0
        self._topics: frozenset[str] | None = None  # wanted; None: not told yet
        self._subscribed: frozenset[str] = frozenset()
        self._commits: dict[TopicPartition, tuple[int, int]] = {}  # offset, epoch
        self._epochs: dict[TopicPartition, int] = {}
        self._next_epoch = 1
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._failure: KafkaError | None = None
        self._missing_logged: set[str] = set()
        self._throttle = _Throttle()
        self.group_id = group_id

    @property
    def failure(self) -> KafkaError | None:
        """The last error seen since the last record or commit that worked."""
        return self._failure

    @property
    def in_flight(self) -> int:
        with self._lock:
            return self._in_flight

    def start(self, on_records: OnRecords) -> None:
        self._thread = threading.Thread(target=self._run, args=(on_records,),
                                        name="conveyor-kafka-consumer", daemon=True)
        self._thread.start()

    def subscribe(self, topics: Collection[str]) -> None:
        with self._lock:
            self._topics = frozenset(topics)

    def commit(self, where: TopicPartition, offset: int, epoch: int) -> None:
        """Commit `offset` (the next to read) of the partition, if the record that asked
        came from its current assignment; commits move forward only."""
        with self._lock:
            if self._epochs.get(where) != epoch:
                return  # revoked (or assigned again) since: the new owner reads on
            known = self._commits.get(where)
            if known is None or known[0] < offset:
                self._commits[where] = (offset, epoch)

    def release(self, record: Record) -> None:
        """A record handed out is done (its offset committed or to be)."""
        with self._lock:
            self._in_flight = max(0, self._in_flight - 1)
            self._in_flight_bytes = max(0, self._in_flight_bytes - _size(record))

    def close(self, timeout: float = 10) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _on_error(self, error: Any) -> None:
        self._failure = _error(error, "kafka consumer")
        if self._throttle(self._failure.code):
            log.warning("Kafka consumer error error=%s", self._failure)

    def _run(self, on_records: OnRecords) -> None:
        # A client that failed in a way nobody foresaw is made again (and subscribed again):
        # the thread never ends before close().
        while not self._stopping.is_set():
            try:
                self._serve(on_records)
            except Exception:
                log.exception("Kafka consumer failed; starting it again in %.0fs",
                              RESTART_SECONDS)
                self._subscribed = frozenset()
                with self._lock:
                    self._epochs.clear()
                    self._commits.clear()
                self._stopping.wait(RESTART_SECONDS)

    def _serve(self, on_records: OnRecords) -> None:
        consumer = confluent_kafka.Consumer(self._config)
        paused = False
        try:
            while not self._stopping.is_set():
                self._resubscribe(consumer)
                self._flush_commits(consumer)
                with self._lock:
                    room = self._max_in_flight - self._in_flight
                    if self._in_flight_bytes >= self._max_in_flight_bytes:
                        room = 0
                if room <= 0:  # every turn: a rebalance may have assigned more since
                    consumer.pause(consumer.assignment())
                    paused = True
                elif room > 0 and paused:
                    consumer.resume(consumer.assignment())
                    paused = False
                if not self._subscribed:
                    self._stopping.wait(POLL_SECONDS)
                    continue
                messages = consumer.consume(max(1, min(BATCH, room)), POLL_SECONDS)
                records = self._records(messages)
                if records:
                    with self._lock:
                        self._in_flight += len(records)
                        self._in_flight_bytes += sum(map(_size, records))
                    self._failure = None
                    on_records(records)
        finally:
            self._flush_commits(consumer)
            consumer.close()

    def _records(self, messages: list[Any]) -> list[Record]:
        records = []
        for message in messages:
            error = message.error()
            if error is not None:
                self._message_error(message, error)
                continue
            where = TopicPartition(message.topic(), message.partition())
            with self._lock:
                epoch = self._epochs.get(where, 0)
            kind, stamp = message.timestamp()
            records.append(Record(
                topic=where.topic, partition=where.partition, offset=message.offset(),
                key=message.key(), value=message.value(),
                headers=tuple(message.headers() or ()),
                timestamp_ms=stamp if kind != confluent_kafka.TIMESTAMP_NOT_AVAILABLE else None,
                epoch=epoch))
        return records

    def _message_error(self, message: Any, error: Any) -> None:
        if error.code() == confluent_kafka.KafkaError._PARTITION_EOF:
            return
        topic = message.topic() or ""
        if error.code() == confluent_kafka.KafkaError.UNKNOWN_TOPIC_OR_PART:
            if topic not in self._missing_logged:  # once: it is asked again every refresh
                self._missing_logged.add(topic)
                log.warning("Kafka topic not found; waiting for it topic=%s", topic)
            return
        self._failure = _error(error, f"kafka consume {topic}")
        if self._throttle(self._failure.code):
            log.warning("Kafka consume failed error=%s", self._failure)

    def _resubscribe(self, consumer: Any) -> None:
        with self._lock:
            wanted = self._topics
        if wanted is None or wanted == self._subscribed:
            return
        if wanted:
            consumer.subscribe(sorted(wanted), on_assign=self._assigned,
                               on_revoke=self._revoked, on_lost=self._revoked)
        else:
            consumer.unsubscribe()
        self._missing_logged &= wanted
        self._subscribed = wanted
        log.info("Kafka topics subscribed group=%s topics=%s", self.group_id, sorted(wanted))

    def _assigned(self, consumer: Any, partitions: list[Any]) -> None:
        with self._lock:
            for tp in partitions:
                self._epochs[TopicPartition(tp.topic, tp.partition)] = self._next_epoch
                self._next_epoch += 1
        log.info("Kafka partitions assigned group=%s partitions=%s", self.group_id,
                 ",".join(f"{tp.topic}/{tp.partition}" for tp in partitions))

    def _revoked(self, consumer: Any, partitions: list[Any]) -> None:
        # What is done is committed before the partitions go to their next owner.
        self._flush_commits(consumer)
        with self._lock:
            for tp in partitions:
                where = TopicPartition(tp.topic, tp.partition)
                self._epochs.pop(where, None)
                self._commits.pop(where, None)
        log.info("Kafka partitions revoked group=%s partitions=%s", self.group_id,
                 ",".join(f"{tp.topic}/{tp.partition}" for tp in partitions))

    def _flush_commits(self, consumer: Any) -> None:
        with self._lock:
            commits, self._commits = self._commits, {}
        if not commits:
            return
        offsets = [confluent_kafka.TopicPartition(where.topic, where.partition, offset)
                   for where, (offset, _) in commits.items()]
        try:
            answered = consumer.commit(offsets=offsets, asynchronous=False)
        except confluent_kafka.KafkaException as error:
            self._failure = _error(error.args[0], "kafka commit")
            if self._throttle(self._failure.code):
                log.warning("Kafka commit failed; trying again error=%s", self._failure)
            self._retry_commits(commits)
            return
        failed = {TopicPartition(tp.topic, tp.partition) for tp in answered or ()
                  if tp.error is not None}
        if failed:
            log.warning("Kafka commit failed for partitions=%s; trying again",
                        ",".join(map(str, sorted(failed, key=str))))
            self._retry_commits({w: c for w, c in commits.items() if w in failed})
        else:
            self._failure = None

    def _retry_commits(self, commits: dict[TopicPartition, tuple[int, int]]) -> None:
        with self._lock:
            for where, (offset, epoch) in commits.items():
                newer = self._commits.get(where)
                if self._epochs.get(where) == epoch and (newer is None or newer[0] < offset):
                    self._commits[where] = (offset, epoch)


class Producer:
    """An idempotent producer (acks=all) and the thread that serves its delivery reports."""

    def __init__(self, settings: KafkaSettings, *, name: str) -> None:
        self._producer = confluent_kafka.Producer({
            **settings.client_config(),
            "client.id": name,
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": 5,
            "error_cb": self._on_error,
            "logger": _client_log,
        })
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._failure: KafkaError | None = None
        self._throttle = _Throttle()

    @property
    def failure(self) -> KafkaError | None:
        return self._failure

    def start(self) -> None:
        self._thread = threading.Thread(target=self._serve, name="conveyor-kafka-producer",
                                        daemon=True)
        self._thread.start()

    def produce(self, topic: str, value: bytes, *, key: bytes | None,
                headers: Sequence[tuple[str, bytes]], on_delivered: OnDelivered) -> None:
        """Hand a record to librdkafka; `on_delivered(None)` once the brokers hold it (all
        in-sync replicas), or with the error that ended its delivery."""
        def report(error: Any, _message: Any) -> None:
            if error is None:
                self._failure = None
                on_delivered(None)
            else:
                on_delivered(_error(error, f"kafka produce {topic}"))

        try:
            self._producer.produce(topic, value=value, key=key, headers=list(headers),
                                   on_delivery=report)
        except BufferError:
            on_delivered(KafkaError(f"kafka produce {topic}: the producer's queue is full",
                                    code="_QUEUE_FULL"))
        except confluent_kafka.KafkaException as error:
            on_delivered(_error(error.args[0], f"kafka produce {topic}"))

    def flush(self, timeout: float) -> int:
        """Wait up to `timeout` for the records handed over; the number still undelivered."""
        left: int = self._producer.flush(timeout)
        return left

    def close(self, timeout: float = 10) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout)
        self._producer.flush(timeout)

    def _on_error(self, error: Any) -> None:
        self._failure = _error(error, "kafka producer")
        if self._throttle(self._failure.code):
            log.warning("Kafka producer error error=%s", self._failure)

    def _serve(self) -> None:
        while not self._stopping.is_set():
            self._producer.poll(POLL_SECONDS)

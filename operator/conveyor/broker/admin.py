"""Declares, deletes and inspects the topology of DESIGN.md §3 over a short-lived blocking
connection: rare calls, where simple beats fast."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from types import TracebackType
from typing import Any, TypeVar

import pika
import pika.exceptions

from conveyor import names
from conveyor.broker import topology
from conveyor.broker.connection import open_blocking
from conveyor.broker.errors import BrokerError, ChannelClosedError, QueueMismatchError
from conveyor.broker.settings import BrokerSettings

log = logging.getLogger("conveyor.broker")

T = TypeVar("T")

NOT_FOUND = 404
PRECONDITION_FAILED = 406


@dataclass(frozen=True)
class QueueStats:
    """What a passive declare tells about a queue."""

    backlog: int
    """Messages ready for delivery (not those delivered and unacked)."""
    consumers: int


class Admin:
    """Declares, deletes and inspects queues and exchanges; every call is idempotent.

    Use as a context manager; it holds one blocking connection, made again when a broker
    restart took it (each call is retried once on a new connection). Deleting what does not
    exist succeeds; declaring what exists with the same arguments succeeds.
    """

    def __init__(self, settings: BrokerSettings) -> None:
        self._settings = settings
        self._connection: Any = None
        self._channel: Any = None
        self._connect()

    def __enter__(self) -> Admin:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        if self._connection is not None and self._connection.is_open:
            self._connection.close()

    def _connect(self) -> None:
        self.close()
        self._connection = open_blocking(self._settings)
        try:
            self._channel = self._connection.channel()
        except pika.exceptions.AMQPError as error:
            raise BrokerError(f"cannot open a channel on RabbitMQ at {self._settings.masked}: "
                              f"{error!r}") from error

    def _do(self, op: Callable[[Any], T]) -> T:
        """Run `op` on the channel: reopened if the broker closed it (a 404 or a 406 closes
        a channel), on a new connection if the old one was lost."""
        for attempt in (1, 2):
            try:
                if not self._connection.is_open:
                    self._connect()
                if not self._channel.is_open:
                    self._channel = self._connection.channel()
                return op(self._channel)
            except pika.exceptions.ChannelClosedByBroker as error:
                # Over what we asked: the callers say what it means for their request.
                raise ChannelClosedError(f"RabbitMQ refused: {error.reply_code} "
                                         f"{error.reply_text}", error.reply_code) from error
            except (pika.exceptions.AMQPConnectionError, pika.exceptions.ChannelWrongStateError,
                    pika.exceptions.ChannelClosed, OSError) as error:
                if attempt == 2:
                    raise BrokerError(f"lost RabbitMQ at {self._settings.masked}: "
                                      f"{type(error).__name__}") from error
                self._connect()
            except pika.exceptions.AMQPError as error:  # anything else of pika's: ours too
                raise BrokerError(f"RabbitMQ at {self._settings.masked} failed: "
                                  f"{type(error).__name__}") from error
        raise AssertionError("unreachable")

    def declare_exchanges(self) -> None:
        def declare(channel: Any) -> None:
            for exchange in topology.EXCHANGES:
                channel.exchange_declare(exchange.name, exchange.type, durable=True)

        self._do(declare)

    def declare_queue(self, queue: topology.Queue) -> None:
        try:
            self._do(lambda ch: ch.queue_declare(queue.name, durable=True,
                                                 arguments=queue.arguments))
        except ChannelClosedError as error:
            if error.code == PRECONDITION_FAILED:
                raise QueueMismatchError(f"queue {queue.name} exists with other arguments: "
                                         f"{error}") from error
            raise

    def declare_task_queue(self, queue: str, delivery_limit: int) -> None:
        """The task type's queue and its dead-letter queue (declared first: it must exist
        before anything can be dead-lettered into it)."""
        self.declare_exchanges()
        self.declare_queue(topology.dead_letter_queue(queue))
        self.declare_queue(topology.task_queue(queue, delivery_limit))
        self._do(lambda ch: ch.queue_bind(queue, names.TASKS_EXCHANGE, routing_key=queue))

    def delete_task_queue(self, queue: str) -> None:
        """The queue and its dead letters; a queue already gone counts as deleted."""
        for name in (queue, names.dead_letter_queue(queue)):
            self.delete_queue(name)

    def delete_queue(self, name: str) -> None:
        try:
            self._do(lambda ch: ch.queue_delete(name))
        except ChannelClosedError as error:
            if error.code != NOT_FOUND:
                raise

    def purge(self, name: str) -> int:
        """Drop every message ready in the queue (not those delivered and unacked); returns
        how many went. For operators clearing a queue by hand, and for tests of loss."""
        try:
            ok = self._do(lambda ch: ch.queue_purge(name))
        except ChannelClosedError as error:
            raise ChannelClosedError(f"cannot purge queue {name}: {error}", error.code) from error
        return int(ok.method.message_count)

    def declare_events_queue(self, name: str, patterns: Iterable[str]) -> None:
        """A queue on `conveyor.events` bound with each topic pattern."""
        self.declare_exchanges()
        self.declare_queue(topology.events_queue(name))
        for pattern in patterns:
            self.bind(name, pattern)

    def bind(self, queue: str, pattern: str) -> None:
        self._do(lambda ch: ch.queue_bind(queue, names.EVENTS_EXCHANGE, routing_key=pattern))

    def unbind(self, queue: str, pattern: str) -> None:
        self._do(lambda ch: ch.queue_unbind(queue, names.EVENTS_EXCHANGE, routing_key=pattern))

    def inspect(self, queue: str) -> QueueStats | None:
        """Backlog and consumers of `queue`, or None if it does not exist."""
        try:
            ok = self._do(lambda ch: ch.queue_declare(queue, passive=True))
        except ChannelClosedError as error:
            if error.code == NOT_FOUND:
                return None
            raise
        return QueueStats(backlog=ok.method.message_count, consumers=ok.method.consumer_count)

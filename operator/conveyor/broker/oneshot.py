"""One-off broker operations for the CLI (`publish`, `dlq list|replay`).

A short-lived blocking connection each: a command does one thing and exits, so the simplicity
of waiting for each confirm beats the Link's pipelining.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pika
import pika.exceptions
from pika.spec import BasicProperties

from conveyor.broker.codec import CONTENT_TYPE
from conveyor.broker.connection import open_blocking
from conveyor.broker.errors import BrokerError, PublishRejectedError, UnroutableError
from conveyor.broker.settings import BrokerSettings

NOT_FOUND = 404

_SPENT_HEADERS = ("x-death", "x-first-death-exchange", "x-first-death-queue",
                  "x-first-death-reason", "x-last-death-exchange", "x-last-death-queue",
                  "x-last-death-reason", "x-delivery-count")


@dataclass(frozen=True)
class PeekedMessage:
    """A message read off a queue and left on it."""

    message_id: str | None
    headers: dict[str, Any]
    body: bytes


def publish_confirmed(settings: BrokerSettings, exchange: str, routing_key: str, body: bytes,
                      *, message_id: str, headers: dict[str, Any] | None = None) -> None:
    """Publish one persistent, mandatory message and wait for the broker's confirm.

    `UnroutableError` when no queue took it (for an event: no trigger's pattern matches).
    """
    connection = open_blocking(settings)
    try:
        channel = connection.channel()
        channel.confirm_delivery()
        channel.basic_publish(exchange, routing_key, body, BasicProperties(
            delivery_mode=2, content_type=CONTENT_TYPE, message_id=message_id,
            headers=headers), mandatory=True)
    except pika.exceptions.UnroutableError as error:
        raise UnroutableError(f"no queue is bound to exchange {exchange!r} with routing key "
                              f"{routing_key!r}") from error
    except pika.exceptions.NackError as error:
        raise PublishRejectedError(f"the broker refused the message for {routing_key!r}") \
            from error
    except pika.exceptions.ChannelClosedByBroker as error:
        raise BrokerError(f"cannot publish to {exchange!r}: {error.reply_text}") from error
    except (pika.exceptions.AMQPError, OSError) as error:  # sockets fail under pika too
        raise BrokerError(f"lost RabbitMQ at {settings.masked}: {type(error).__name__}") \
            from error
    finally:
        if connection.is_open:
            connection.close()


def peek_queue(settings: BrokerSettings, queue: str, limit: int) -> list[PeekedMessage] | None:
    """Up to `limit` messages of `queue`, in order, left on it; None if it does not exist.

    Each is fetched unacked (a message held unacked is not handed out again, so none is read
    twice) and all are returned to the queue at once with `basic.nack(requeue)`, which keeps
    their order and, unlike a lost channel, does not count as a failed delivery.
    """
    connection = open_blocking(settings)
    try:
        channel = connection.channel()
        try:
            channel.queue_declare(queue, passive=True)
        except pika.exceptions.ChannelClosedByBroker as error:
            if error.reply_code == NOT_FOUND:
                return None
            raise
        found: list[PeekedMessage] = []
        while len(found) < limit:
            method, properties, body = channel.basic_get(queue, auto_ack=False)
            if method is None:
                break
            found.append(PeekedMessage(properties.message_id, dict(properties.headers or {}),
                                       body))
        if found:
            channel.basic_nack(delivery_tag=0, multiple=True, requeue=True)
        return found
    except (pika.exceptions.AMQPError, OSError) as error:  # sockets fail under pika too
        raise BrokerError(f"cannot read queue {queue}: {error!r}") from error
    finally:
        if connection.is_open:
            connection.close()


def move_messages(settings: BrokerSettings, source: str, exchange: str, routing_key: str,
                  limit: int | None = None) -> int | None:
    """Move messages from `source` to `exchange`/`routing_key`, one at a time; how many moved.

    Each is acked on `source` only after its republish was confirmed and routed, so a crash
    between the two duplicates a message and never loses one. The dead-lettering headers
    (`x-death`, the delivery count) are dropped, so the message starts afresh. None if
    `source` does not exist.
    """
    connection = open_blocking(settings)
    moved = 0
    try:
        channel = connection.channel()
        try:
            channel.queue_declare(source, passive=True)
        except pika.exceptions.ChannelClosedByBroker as error:
            if error.reply_code == NOT_FOUND:
                return None
            raise
        channel.confirm_delivery()
        while limit is None or moved < limit:
            method, properties, body = channel.basic_get(source, auto_ack=False)
            if method is None:
                break
            headers = {k: v for k, v in (properties.headers or {}).items()
                       if k not in _SPENT_HEADERS}
            try:
                channel.basic_publish(exchange, routing_key, body, BasicProperties(
                    delivery_mode=2, content_type=properties.content_type or CONTENT_TYPE,
                    message_id=properties.message_id, headers=headers), mandatory=True)
            except (pika.exceptions.UnroutableError, pika.exceptions.NackError) as error:
                channel.basic_nack(method.delivery_tag, requeue=True)
                raise UnroutableError(f"no queue took the message for {routing_key!r} on "
                                      f"{exchange!r}; it stays on {source}") from error
            channel.basic_ack(method.delivery_tag)
            moved += 1
        return moved
    except (pika.exceptions.AMQPError, OSError) as error:  # sockets fail under pika too
        raise BrokerError(f"stopped moving {source} after {moved} messages: {error!r}") \
            from error
    finally:
        if connection.is_open:
            connection.close()

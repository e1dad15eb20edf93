"""A message the Link handed to its consumer, to settle once from any thread."""

from __future__ import annotations

from typing import Any, Protocol

from pika.channel import Channel
from pika.spec import Basic, BasicProperties


class Settler(Protocol):
    """Who settles a delivery: the Link, on its I/O thread, on the channel it came from."""

    def settle(self, channel: Channel, tag: int, how: str) -> None: ...


class Delivery:
    """A message handed to the consumer: settle it once, from any thread.

    `ack` removes it; `requeue` puts it back (counts toward the delivery limit); `reject`
    dead-letters it.
    """

    __slots__ = ("_channel", "_link", "_tag", "body", "headers", "message_id", "redelivered",
                 "routing_key")

    def __init__(self, link: Settler, channel: Channel, method: Basic.Deliver,
                 properties: BasicProperties, body: bytes) -> None:
        self._link = link
        self._channel = channel
        self._tag: int = method.delivery_tag
        self.body = body
        self.headers: dict[str, Any] = dict(properties.headers or {})
        self.message_id: str | None = properties.message_id
        self.redelivered: bool = bool(method.redelivered)
        self.routing_key: str = method.routing_key

    @property
    def delivery_count(self) -> int:
        """Earlier deliveries of this message (quorum queues count them)."""
        return int(self.headers.get("x-delivery-count") or 0)

    def ack(self) -> None:
        self._link.settle(self._channel, self._tag, "ack")

    def requeue(self) -> None:
        self._link.settle(self._channel, self._tag, "requeue")

    def reject(self) -> None:
        self._link.settle(self._channel, self._tag, "reject")

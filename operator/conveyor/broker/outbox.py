"""What the Link publishes: messages waiting to be sent, and messages sent on the current
channel whose confirm has not come yet. Used on the link's I/O thread only.

Each message's Confirmation is settled from the broker's answer: confirmed on `basic.ack`,
failed with `UnroutableError` when the broker returned it first (a mandatory message no
queue took; a return always precedes the confirm of the same message on the same channel),
failed with `PublishRejectedError` on `basic.nack`. When the connection drops, messages sent
and not confirmed go back to the front of the queue, in their order, to be sent again on the
next channel: a receiver may see a message twice, never zero times.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any

from pika.channel import Channel
from pika.spec import Basic, BasicProperties

from conveyor.broker.confirms import Confirmation, ConfirmTracker
from conveyor.broker.errors import BrokerError, PublishRejectedError, UnroutableError


@dataclass(eq=False)
class Outgoing:
    """One message to publish, and the Confirmation its sender holds."""

    exchange: str
    routing_key: str
    body: bytes
    properties: BasicProperties
    mandatory: bool
    future: Confirmation


class Outbox:
    """Messages to send, in order, and messages sent and not yet settled."""

    def __init__(self) -> None:
        self._waiting: deque[Outgoing] = deque()
        self._confirms: ConfirmTracker[Outgoing] = ConfirmTracker()
        self._returned: dict[str, int] = {}  # message id -> returns not yet matched

    def add(self, outgoing: Outgoing, channel: Channel | None) -> None:
        """Queue a message and send what the channel (if there is one) can take."""
        self._waiting.append(outgoing)
        self.send(channel)

    def send(self, channel: Channel | None) -> None:
        """Publish every waiting message on `channel`, in order."""
        waiting = self._waiting
        while waiting and channel is not None and channel.is_open:
            outgoing = waiting[0]
            channel.basic_publish(outgoing.exchange, outgoing.routing_key, outgoing.body,
                                  outgoing.properties, mandatory=outgoing.mandatory)
            waiting.popleft()
            self._confirms.sent(outgoing)

    def returned(self, properties: BasicProperties) -> None:
        """The broker returned a message (`basic.return`): its confirm will follow."""
        key = properties.message_id or ""
        self._returned[key] = self._returned.get(key, 0) + 1

    def confirmed(self, frame: Any) -> None:
        """The broker's `basic.ack`/`basic.nack` for one tag, or every tag up to one."""
        method = frame.method
        acked = isinstance(method, Basic.Ack)
        for outgoing in self._confirms.settle(method.delivery_tag, method.multiple):
            key = outgoing.properties.message_id or ""
            if self._returned.get(key):
                self._returned[key] -= 1
                if not self._returned[key]:
                    del self._returned[key]
                outgoing.future.fail(UnroutableError(
                    f"no queue is bound to exchange {outgoing.exchange or '(default)'!r}"
                    f" with routing key {outgoing.routing_key!r}"))
            elif acked:
                outgoing.future.confirm()
            else:
                outgoing.future.fail(PublishRejectedError(
                    f"the broker refused a message for {outgoing.routing_key!r}"))

    def requeue_unconfirmed(self) -> None:
        """The channel is gone: what it did not confirm goes back to the front, in order."""
        self._returned.clear()
        self._waiting.extendleft(reversed(self._confirms.reset()))

    def fail_unconfirmed(self, error: BrokerError) -> None:
        """The broker closed the channel over something sent: sending the same messages
        again would close it again, so the unconfirmed ones fail."""
        self._returned.clear()
        for outgoing in self._confirms.reset():
            outgoing.future.fail(error)

    def fail_all(self, error: BrokerError) -> None:
        """The link is closed for good: nothing waiting or unconfirmed will be sent."""
        self.requeue_unconfirmed()
        while self._waiting:
            self._waiting.popleft().future.fail(error)

"""The Link: one long-lived AMQP connection on its own I/O thread, for publishing and
consuming: publisher confirms pipelined (many in flight, each publish returns a Confirmation
that the broker's confirm settles), manual acks from any thread, and reconnection with backoff
that resends what was not confirmed.

Why a SelectConnection on a dedicated thread rather than a BlockingConnection: a blocking
channel in confirm mode waits for the confirm of every message (about 2,500 msg/s here), and a
blocking connection only services heartbeats while someone calls into it. On its own thread,
the event loop keeps the connection alive whatever the callers do, confirms arrive as they
come, and other threads hand work in through `add_callback_threadsafe` (pika is not
thread-safe: every channel operation runs on the I/O thread).

Delivery guarantees: a publish's Confirmation succeeds only once the broker confirmed the
message and routed it (publishes are mandatory by default, so a message no queue takes fails
with `UnroutableError` instead of vanishing). Messages unconfirmed when the connection drops
are sent again on the next one, so a receiver may see a message twice, never zero times. A
delivery is settled on the channel it came from or not at all: once that channel is gone the
broker has already requeued it, so a late ack is dropped rather than sent to a new channel
where its tag means another message.

A connection attempt that fails on TLS (the certificate is not trusted, names another host,
the port does not speak TLS, the CA file is unusable) is a configuration to fix, not a broker
to wait for: it is logged as an error naming the cause, kept as `failure`, and raised by
`wait_connected` at once. The link still tries again (slowly: the backoff's cap), since a
rotated CA file or certificate can mend it; the CA file is read again for every attempt.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pika
import pika.exceptions
from pika.channel import Channel
from pika.spec import Basic, BasicProperties

from conveyor.broker.codec import CONTENT_TYPE
from conveyor.broker.confirms import Confirmation
from conveyor.broker.connection import Backoff, connect_failure, connection_parameters
from conveyor.broker.delivery import Delivery
from conveyor.broker.errors import BrokerError, LinkClosedError, TLSError
from conveyor.broker.iothread import IOThread
from conveyor.broker.outbox import Outbox, Outgoing
from conveyor.broker.settings import BrokerSettings

log = logging.getLogger("conveyor.broker")


@dataclass(frozen=True)
class _ConsumerSpec:
    queue: str
    prefetch: int
    on_delivery: Callable[[Delivery], None]


class Link:
    """One AMQP connection on its own I/O thread: confirmed publishing and manual-ack
    consuming, reconnecting with backoff until `close()`.

    Every public method is thread-safe. Callbacks given to `consume` and callbacks added to
    the returned Confirmations run on the I/O thread: they must be quick and must not block.
    """

    def __init__(self, settings: BrokerSettings, name: str = "conveyor") -> None:
        self._settings = settings
        self._name = name
        # Built now too, so that an unusable CA file fails the caller, not a later attempt.
        self._params = self._parameters()
        self._io = IOThread(name, self._run)
        self._ioloop = self._io.ioloop
        self._connection: pika.SelectConnection | None = None
        self._publisher: Channel | None = None
        self._subscriber: Channel | None = None
        self._consumer: _ConsumerSpec | None = None
        self._consumer_tag: str | None = None
        self._outbox = Outbox()
        self._backoff = Backoff()
        self._closing = False
        self._closed = threading.Event()
        self._connected = threading.Event()
        self._state = threading.Condition()  # notified when connected or an attempt failed
        self._failure: BrokerError | None = None

    # -- public, any thread -------------------------------------------------------------------

    def start(self) -> Link:
        self._io.start()
        return self

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    @property
    def failure(self) -> BrokerError | None:
        """Why the link is not connected: the last attempt's error (a TLSError when TLS was
        the cause); None while connected or before the first attempt ended."""
        return None if self.connected else self._failure

    def wait_connected(self, timeout: float) -> bool:
        """Wait up to `timeout` seconds for the link to connect; True once it is. A failure
        on TLS does not wait out the timeout: it raises TLSError at once."""
        deadline = time.monotonic() + timeout
        with self._state:
            while not self.connected:
                if isinstance(self._failure, TLSError):
                    raise TLSError(str(self._failure), self._failure.cause) \
                        from self._failure
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._state.wait(remaining)
        return True

    def publish(self, exchange: str, routing_key: str, body: bytes, *,
                headers: dict[str, Any] | None = None, message_id: str | None = None,
                mandatory: bool = True) -> Confirmation:
        """Send a persistent message; the Confirmation settles once the broker confirmed it.

        It fails with `UnroutableError` (mandatory and no queue took it), `PublishRejectedError` or
        `LinkClosedError`. A connection lost meanwhile does not fail it: it is sent again.
        """
        future = Confirmation()
        properties = BasicProperties(
            delivery_mode=2, content_type=CONTENT_TYPE, headers=headers,
            message_id=message_id or uuid.uuid4().hex,
        )
        outgoing = Outgoing(exchange, routing_key, body, properties, mandatory, future)
        self._call(lambda: self._enqueue(outgoing))
        return future

    def consume(self, queue: str, prefetch: int, on_delivery: Callable[[Delivery], None]) -> None:
        """Deliver messages of `queue` to `on_delivery`, at most `prefetch` unsettled at once;
        resumed on every reconnection until `cancel()`."""
        spec = _ConsumerSpec(queue, prefetch, on_delivery)
        self._call(lambda: self._start_consumer(spec))

    def cancel(self) -> Confirmation:
        """Stop deliveries; messages already delivered can still be settled."""
        done = Confirmation()
        self._call(lambda: self._cancel_consumer(done))
        return done

    def call_later(self, delay: float, fn: Callable[[], None]) -> None:
        """Run `fn` on the I/O thread after `delay` seconds (retries, without a thread each)."""
        self._call(lambda: self._ioloop.call_later(delay, fn))

    def close(self, timeout: float = 10) -> None:
        """Close the connection and stop the I/O thread; unconfirmed publishes fail."""
        if self._io.is_alive():
            self._call(self._begin_close)
            self._io.join(timeout)
        else:
            self._io.mark_stopped()
            self._io.run_calls()
            self._outbox.fail_all(LinkClosedError("the AMQP link was never started"))
        self._closed.set()

    # -- plumbing between threads -------------------------------------------------------------

    def _call(self, fn: Callable[[], None]) -> None:
        self._io.call(fn)

    def _run(self) -> None:
        self._connect()
        self._ioloop.start()
        # The loop stopped: nothing will ever confirm what is left.
        self._io.mark_stopped()
        self._closed.set()
        self._connected.clear()
        self._io.run_calls()
        self._outbox.fail_all(LinkClosedError("the AMQP link was closed"))

    # -- connection, I/O thread ---------------------------------------------------------------

    def _parameters(self) -> pika.URLParameters:
        params = connection_parameters(self._settings)
        params.client_properties = {"connection_name": self._name}
        return params

    def _connect(self) -> None:
        if self._closing:
            self._ioloop.stop()
            return
        try:
            self._params = self._parameters()  # the CA file as it is now
        except TLSError as error:
            self._failed(error)
            return
        self._connection = pika.SelectConnection(
            self._params, on_open_callback=self._on_open,
            on_open_error_callback=self._on_open_error, on_close_callback=self._on_closed,
            custom_ioloop=self._ioloop,
        )

    def _set_failure(self, failure: BrokerError | None) -> None:
        with self._state:
            self._failure = failure
            self._state.notify_all()

    def _failed(self, failure: BrokerError) -> None:
        """A connection attempt failed: say why, keep it for `failure` (after the log line,
        so whoever it wakes finds the line written), try again later."""
        if isinstance(failure, TLSError):
            # Not a broker to wait for: no quick retries, and an error, not a warning.
            self._backoff.failures = max(self._backoff.failures, 10)
            delay = self._backoff.next()
            log.error("Failed to connect over TLS cause=%s: %s; retrying in %.1fs",
                      failure.cause, failure, delay)
        else:
            delay = self._backoff.next()
            log.warning("Lost RabbitMQ connection broker=%s reason=%s; retrying in %.1fs",
                        self._settings.masked, repr(failure.__cause__ or failure), delay)
        self._set_failure(failure)
        self._ioloop.call_later(delay, self._connect)

    def _on_open_error(self, _connection: Any, error: BaseException | str) -> None:
        self._connection = None
        if self._closing:
            self._ioloop.stop()
            return
        if isinstance(error, BaseException):
            failure = connect_failure(error, self._settings)
            failure.__cause__ = error
        else:
            failure = BrokerError(f"cannot connect to RabbitMQ at {self._settings.masked}: "
                                  f"{error}")
        self._failed(failure)

    def _on_open(self, connection: pika.SelectConnection) -> None:
        log.info("Connected to RabbitMQ broker=%s", self._settings.masked)
        self._backoff.failures = 0
        connection.channel(on_open_callback=self._on_publisher_open)
        if self._consumer is not None:
            connection.channel(on_open_callback=self._on_subscriber_open)

    def _on_closed(self, _connection: Any, reason: BaseException) -> None:
        self._connection = None
        self._publisher = self._subscriber = None
        self._consumer_tag = None
        self._connected.clear()
        self._outbox.requeue_unconfirmed()
        if self._closing:
            self._ioloop.stop()
        else:
            lost = BrokerError(f"lost RabbitMQ at {self._settings.masked}: {reason!r}")
            lost.__cause__ = reason
            self._failed(lost)

    def _begin_close(self) -> None:
        self._closing = True
        connection = self._connection
        if connection is not None and not (connection.is_closing or connection.is_closed):
            try:
                connection.close()
                return  # _on_closed stops the loop
            except pika.exceptions.ConnectionWrongStateError:
                pass
        if connection is None or connection.is_closed:
            self._ioloop.stop()

    def _on_channel_closed(self, channel: Channel, reason: BaseException) -> None:
        connection = self._connection
        if self._closing or connection is None or not connection.is_open:
            return  # the connection went; _on_closed deals with it
        code = getattr(reason, "reply_code", 0)
        text = getattr(reason, "reply_text", str(reason))
        if channel is self._publisher:
            # The broker closed the channel over something we sent (an exchange that does not
            # exist): sending the same messages again would close it again, so they fail.
            self._publisher = None
            self._connected.clear()
            self._outbox.fail_unconfirmed(
                BrokerError(f"the broker closed the publishing channel: {code} {text}"))
            log.warning("Closed publishing channel code=%s reason=%s", code, text)
            connection.channel(on_open_callback=self._on_publisher_open)
        elif channel is self._subscriber:
            self._subscriber = None
            self._consumer_tag = None
            if self._consumer is None:
                return
            delay = self._backoff.next()
            log.warning("Stopped consuming queue=%s code=%s reason=%s; retrying in %.1fs",
                        self._consumer.queue, code, text, delay)
            self._ioloop.call_later(delay, self._reopen_subscriber)

    # -- publishing, I/O thread ---------------------------------------------------------------

    def _on_publisher_open(self, channel: Channel) -> None:
        channel.add_on_close_callback(self._on_channel_closed)
        channel.add_on_return_callback(
            lambda _channel, _method, properties, _body: self._outbox.returned(properties))
        channel.confirm_delivery(ack_nack_callback=self._outbox.confirmed,
                                 callback=lambda _frame: self._publisher_ready(channel))

    def _publisher_ready(self, channel: Channel) -> None:
        self._publisher = channel
        self._connected.set()
        self._set_failure(None)
        self._outbox.send(channel)

    def _enqueue(self, outgoing: Outgoing) -> None:
        if self._closing or self._closed.is_set():
            outgoing.future.fail(LinkClosedError("the AMQP link is closed"))
            return
        self._outbox.add(outgoing, self._publisher)

    # -- consuming, I/O thread ----------------------------------------------------------------

    def _start_consumer(self, spec: _ConsumerSpec) -> None:
        self._consumer = spec
        self._reopen_subscriber()

    def _reopen_subscriber(self) -> None:
        connection = self._connection
        if (self._consumer is None or self._subscriber is not None or connection is None
                or not connection.is_open):
            return  # _on_open opens it once connected
        connection.channel(on_open_callback=self._on_subscriber_open)

    def _on_subscriber_open(self, channel: Channel) -> None:
        channel.add_on_close_callback(self._on_channel_closed)
        channel.add_on_cancel_callback(self._on_cancelled_by_broker)
        spec = self._consumer
        if spec is None:
            channel.close()
            return
        self._subscriber = channel
        channel.basic_qos(prefetch_count=spec.prefetch,
                          callback=lambda _frame: self._start_consuming(channel, spec))

    def _start_consuming(self, channel: Channel, spec: _ConsumerSpec) -> None:
        if not self._is_subscriber(channel) or spec is not self._consumer:
            return
        self._consumer_tag = channel.basic_consume(spec.queue, self._on_message,
                                                   auto_ack=False)
        log.info("Started consuming queue=%s prefetch=%d", spec.queue, spec.prefetch)

    def _on_message(self, channel: Channel, method: Basic.Deliver,
                    properties: BasicProperties, body: bytes) -> None:
        spec = self._consumer
        delivery = Delivery(self, channel, method, properties, body)
        if spec is None:
            channel.basic_nack(method.delivery_tag, requeue=True)  # arrived after a cancel
            return
        spec.on_delivery(delivery)

    def _on_cancelled_by_broker(self, _frame: Any) -> None:
        """The queue was deleted under us: start over on a fresh channel, which consumes
        again (after backoff) once the queue exists again."""
        self._consumer_tag = None
        channel = self._subscriber
        if channel is not None and channel.is_open:
            log.warning("Lost the consumer of queue=%s: the broker cancelled it",
                        self._consumer.queue if self._consumer else "?")
            channel.close()

    def _cancel_consumer(self, done: Confirmation) -> None:
        self._consumer = None
        channel, tag = self._subscriber, self._consumer_tag
        self._consumer_tag = None
        if channel is None or tag is None or not channel.is_open or (
                tag not in channel.consumer_tags):  # pika would never call back
            done.confirm()
            return
        channel.basic_cancel(tag, callback=lambda _frame: done.confirm())

    def _is_subscriber(self, channel: Channel) -> bool:
        return channel is self._subscriber

    def settle(self, channel: Channel, tag: int, how: str) -> None:
        """Settle a delivery (`ack`, `requeue`, `reject`) from any thread; used by Delivery."""
        self._call(lambda: self._settle(channel, tag, how))

    def _settle(self, channel: Channel, tag: int, how: str) -> None:
        if not self._is_subscriber(channel) or not channel.is_open:
            # The channel it came on is gone, and with it the broker requeued the message:
            # settling it on another channel would settle a different message.
            log.debug("Dropped a settlement from a closed channel tag=%d how=%s", tag, how)
            return
        if how == "ack":
            channel.basic_ack(tag)
        else:
            channel.basic_nack(tag, requeue=how == "requeue")

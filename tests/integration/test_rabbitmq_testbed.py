"""The test bed's RabbitMQ is real: quorum queues, publisher confirms, manual acks."""

from __future__ import annotations

import pika
import pytest

pytestmark = pytest.mark.integration


def test_publish_with_confirms_to_a_quorum_queue_and_consume_with_manual_acks(amqp_url: str):
    connection = pika.BlockingConnection(pika.URLParameters(amqp_url))
    try:
        channel = connection.channel()
        channel.confirm_delivery()
        declared = channel.queue_declare(
            "testbed.quorum", durable=True,
            arguments={"x-queue-type": "quorum", "x-delivery-limit": 3},
        )
        assert declared.method.message_count == 0
        bodies = [f"message-{i}".encode() for i in range(50)]
        for body in bodies:
            # With confirms on, basic_publish raises unless the broker confirmed the message.
            channel.basic_publish("", "testbed.quorum", body,
                                  pika.BasicProperties(delivery_mode=2), mandatory=True)
        passive = channel.queue_declare("testbed.quorum", passive=True)
        assert passive.method.message_count == len(bodies)

        received: list[bytes] = []
        redelivered: list[int] = []
        channel.basic_qos(prefetch_count=10)
        for method, props, body in channel.consume("testbed.quorum", inactivity_timeout=5):
            assert method is not None, "the queue ran dry before every message arrived"
            if method.delivery_tag == 1:
                # Reject the first one: a quorum queue redelivers it with a delivery count.
                channel.basic_nack(method.delivery_tag, requeue=True)
                continue
            if method.redelivered:
                redelivered.append((props.headers or {}).get("x-delivery-count", 0))
            received.append(body)
            channel.basic_ack(method.delivery_tag)
            if len(received) == len(bodies):
                break
        channel.cancel()
        assert sorted(received) == sorted(bodies)
        assert redelivered == [1]
        assert channel.queue_declare("testbed.quorum", passive=True).method.message_count == 0
        channel.queue_delete("testbed.quorum")
    finally:
        connection.close()


def test_the_session_vhost_is_isolated_from_the_default_vhost(amqp_url: str):
    assert not amqp_url.endswith("/%2F"), "tests must not share the default vhost"
    connection = pika.BlockingConnection(pika.URLParameters(amqp_url))
    channel = connection.channel()
    channel.queue_declare("testbed.isolated", durable=True,
                          arguments={"x-queue-type": "quorum"})
    default = amqp_url.rsplit("/", 1)[0] + "/%2F"
    other = pika.BlockingConnection(pika.URLParameters(default))
    try:
        with pytest.raises(pika.exceptions.ChannelClosedByBroker) as info:
            other.channel().queue_declare("testbed.isolated", passive=True)
        assert info.value.reply_code == 404
    finally:
        other.close()
        channel.queue_delete("testbed.isolated")
        connection.close()

"""The test bed's fault tools (`python -m testbed kill|restart`): a part killed with SIGKILL
comes back on the data it had, so a fault test measures the system, not a wiped store."""

from __future__ import annotations

import time
import uuid

import pika
import pytest
from kubernetes import client

from support.kube import local_testbed_only
from testbed import parts, procs
from testbed.layout import paths, ports

pytestmark = [pytest.mark.e2e, local_testbed_only]


def test_etcd_and_the_api_server_killed_together_come_back_with_their_objects(
    api_client, namespace
):
    core = client.CoreV1Api(api_client)
    core.create_namespaced_config_map(namespace, {"metadata": {"name": "kept"},
                                                  "data": {"a": "1"}})
    p, ports_ = paths(), ports()
    try:
        assert parts.kill(p, "kube-apiserver") and parts.kill(p, "etcd")
        assert procs.running_pid(p.pids, "etcd") is None
        assert not parts.serving(p, ports_, "kube-apiserver")
    finally:
        parts.restart(p, ports_, "etcd")
        parts.restart(p, ports_, "kube-apiserver")
    assert core.read_namespaced_config_map("kept", namespace).data == {"a": "1"}


def test_rabbitmq_killed_comes_back_with_its_quorum_queues_messages(amqp_url: str):
    queue = f"t-faults-{uuid.uuid4().hex[:6]}"
    params = pika.URLParameters(amqp_url)
    with pika.BlockingConnection(params) as connection:
        channel = connection.channel()
        channel.queue_declare(queue, durable=True, arguments={"x-queue-type": "quorum"})
        channel.confirm_delivery()
        channel.basic_publish("", queue, b"kept", pika.BasicProperties(delivery_mode=2))
    # Spacing the fault from the declaration, not waiting for a condition: RabbitMQ 3.10's
    # single node, killed within about a second of declaring a quorum queue, brings that
    # queue back without a leader for good (nothing over AMQP tells when it is safe).
    time.sleep(3)
    p, ports_ = paths(), ports()
    try:
        assert parts.kill(p, "rabbitmq")
        assert not parts.serving(p, ports_, "rabbitmq")
    finally:
        parts.restart(p, ports_, "rabbitmq")
    # The node takes connections before its quorum queues are back (a get fails with
    # INTERNAL_ERROR, closing the connection): poll on a fresh connection, with a deadline.
    body = procs.wait_until(lambda: _get(params, queue), 60, "the message after the restart")
    assert body == b"kept"


def _get(params: pika.URLParameters, queue: str) -> bytes | None:
    with pika.BlockingConnection(params) as connection:
        channel = connection.channel()
        body: bytes | None = channel.basic_get(queue, auto_ack=True)[2]
        if body is not None:
            channel.queue_delete(queue)
        return body

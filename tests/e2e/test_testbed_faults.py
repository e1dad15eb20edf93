"""The test bed's fault tools (`python -m testbed kill|restart`): a part killed with SIGKILL
comes back on the data it had (Kafka with its records), so a fault test measures the system,
not a wiped store; the object store, in memory, comes back serving and empty."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pika
import pytest
from kubernetes import client

from conveyor.store import ObjectStore, StoreError, StoreSettings
from support.kube import local_testbed_only
from testbed import objectstore, parts, procs
from testbed.layout import paths, ports

HACK = Path(__file__).resolve().parents[2] / "hack"

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


def test_the_object_store_killed_and_restarted_serves_again_empty(
        store_settings: StoreSettings):
    store = ObjectStore(store_settings)
    store.put("faults/before.json", b"1")
    p, ports_ = paths(), ports()
    try:
        # The front door the soak and people use: `python -m testbed kill|restart s3server`.
        _testbed("kill", objectstore.NAME)
        assert procs.running_pid(p.pids, objectstore.NAME) is None
        assert not parts.serving(p, ports_, objectstore.NAME)
        with pytest.raises(StoreError) as caught:
            store.list("faults/")
        assert caught.value.retryable, "a store that is down may be back soon"
    finally:
        _testbed("restart", objectstore.NAME)
        # It keeps objects in memory: the restart emptied it, buckets too. The session's
        # bucket is made again for the tests that follow.
        s3 = objectstore.client(p, ports_)
        s3.create_bucket(Bucket=store_settings.bucket)
        s3.close()
    assert parts.serving(p, ports_, objectstore.NAME)
    assert store.list("faults/") == [], "in memory: what was stored before is gone"
    store.put("faults/after.json", b"22")
    assert store.list("faults/") == [("faults/after.json", 2)]
    store.close()


def _testbed(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "testbed", *args], check=True, timeout=120,
                   env={**os.environ, "PYTHONPATH": str(HACK)}, capture_output=True)


def test_kafka_killed_comes_back_with_its_records(kafka_settings):
    from support import kafka as tools  # noqa: PLC0415 - the kafka extra, for this test only

    topic = f"t-faults-{uuid.uuid4().hex[:6]}"
    tools.create_topic(kafka_settings, topic)
    tools.produce(kafka_settings, topic, [b"kept"])
    p, ports_ = paths(), ports()
    try:
        _testbed("kill", "kafka")
        assert procs.running_pid(p.pids, "kafka") is None
        assert not parts.serving(p, ports_, "kafka")
    finally:
        _testbed("restart", "kafka")
    assert parts.serving(p, ports_, "kafka")
    assert [m.value() for m in tools.read(kafka_settings, topic, expect=1)] == [b"kept"]

"""The broker adapter against the real RabbitMQ: topology, confirms, routing failures."""

from __future__ import annotations

import pytest

from conveyor import names
from conveyor.broker import Admin, BrokerSettings, Link, QueueMismatchError, UnroutableError
from integration.helpers import TaskQueue, drain_queue
from support.waiting import eventually

pytestmark = pytest.mark.integration


def test_declaring_a_task_queue_twice_and_deleting_it_twice_succeeds(admin: Admin):
    queue = TaskQueue("topology", "wf", "twice")
    for _ in range(2):
        admin.declare_task_queue(queue.name, delivery_limit=3)
    assert admin.inspect(queue.name) is not None
    assert admin.inspect(queue.dead) is not None
    for _ in range(2):
        admin.delete_task_queue(queue.name)
    assert admin.inspect(queue.name) is None
    assert admin.inspect(queue.dead) is None


def test_a_queue_declared_with_another_delivery_limit_is_a_mismatch(admin: Admin):
    queue = TaskQueue("topology", "wf", "limits")
    admin.declare_task_queue(queue.name, delivery_limit=3)
    try:
        with pytest.raises(QueueMismatchError, match=queue.name):
            admin.declare_task_queue(queue.name, delivery_limit=4)
        assert admin.inspect(queue.name) is not None  # the admin's channel recovered
    finally:
        admin.delete_task_queue(queue.name)


def test_inspect_reports_backlog_and_consumers(admin: Admin, publisher: Link, task_queue):
    queue = task_queue("inspect")
    futures = [publisher.publish(names.TASKS_EXCHANGE, queue.name, b"{}") for _ in range(7)]
    for future in futures:
        future.result(10)
    stats = admin.inspect(queue.name)
    assert stats is not None
    assert (stats.backlog, stats.consumers) == (7, 0)


def test_many_publishes_are_in_flight_at_once_and_all_confirmed(broker: BrokerSettings,
                                                               publisher: Link, task_queue):
    queue = task_queue("pipelined")
    futures = [publisher.publish(names.TASKS_EXCHANGE, queue.name, str(i).encode())
               for i in range(2000)]
    for future in futures:
        future.result(30)
    bodies = [body for _, body in drain_queue(broker, queue.name)]
    assert sorted(bodies, key=int) == [str(i).encode() for i in range(2000)]


def test_a_message_no_queue_takes_fails_instead_of_vanishing(publisher: Link):
    future = publisher.publish(names.TASKS_EXCHANGE, "conveyor.nowhere.wf.none", b"{}")
    with pytest.raises(UnroutableError, match="nowhere"):
        future.result(10)
    # The link is still usable afterwards.
    assert eventually(lambda: publisher.connected, 5)


def test_trigger_bindings_route_matching_events_only(admin: Admin, broker: BrokerSettings,
                                                     publisher: Link):
    queue = "test.triggers.binding"
    admin.declare_events_queue(queue, ["order.*"])
    try:
        publisher.publish(names.EVENTS_EXCHANGE, "order.created", b"1").result(10)
        with pytest.raises(UnroutableError):
            publisher.publish(names.EVENTS_EXCHANGE, "invoice.created", b"2").result(10)
        admin.unbind(queue, "order.*")
        with pytest.raises(UnroutableError):
            publisher.publish(names.EVENTS_EXCHANGE, "order.created", b"3").result(10)
        assert [body for _, body in drain_queue(broker, queue)] == [b"1"]
    finally:
        admin.delete_queue(queue)

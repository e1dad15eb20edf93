"""DESIGN.md §3 as broker arguments."""

from __future__ import annotations

from conveyor import names
from conveyor.broker import topology


def test_a_task_queue_is_quorum_bounded_and_dead_letters_to_its_dead_queue():
    queue = topology.task_queue("conveyor.shop.orders.payments", delivery_limit=5)
    assert queue.arguments == {
        "x-queue-type": "quorum",
        "x-delivery-limit": 5,
        "x-dead-letter-exchange": "",
        "x-dead-letter-routing-key": "conveyor.shop.orders.payments.dead",
        "x-dead-letter-strategy": "at-least-once",
        "x-overflow": "reject-publish",
    }


def test_the_dead_letter_queue_is_a_plain_quorum_queue():
    queue = topology.dead_letter_queue("conveyor.a.b.c")
    assert (queue.name, queue.arguments) == ("conveyor.a.b.c.dead", {"x-queue-type": "quorum"})


def test_the_exchanges_are_the_contract_s():
    assert {(e.name, e.type) for e in topology.EXCHANGES} == {
        (names.TASKS_EXCHANGE, "direct"), (names.EVENTS_EXCHANGE, "topic")}

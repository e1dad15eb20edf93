"""DESIGN.md §3 as data: the exchanges and queues Conveyor declares, with their arguments.

Pure translation from what a task type asks for to what RabbitMQ is told, so the arguments are
tested on their own (as messaging-topology-operator's GenerateQueueSettings is).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final, Literal

from conveyor import names

# An operator's queues outlive a restart or an upgrade, but not the install: unused for a week
# (no consumer), RabbitMQ deletes them, so a removed install leaves no queue filling up.
OPERATOR_QUEUE_EXPIRES_MS: Final = 7 * 24 * 3600 * 1000

# Dead letters go through the default exchange straight to `<queue>.dead`: no extra exchange
# to declare or keep in step, and the dead-letter queue is addressed by its own name.
DEAD_LETTER_EXCHANGE: Final = ""


@dataclass(frozen=True)
class Exchange:
    """An exchange Conveyor declares (durable)."""

    name: str
    type: Literal["direct", "topic"]


@dataclass(frozen=True)
class Queue:
    """A queue Conveyor declares (durable), with the arguments RabbitMQ is told."""

    name: str
    arguments: dict[str, Any] = field(default_factory=dict)


EXCHANGES: Final = (
    Exchange(names.TASKS_EXCHANGE, "direct"),
    Exchange(names.EVENTS_EXCHANGE, "topic"),
)


def quorum(**extra: Any) -> dict[str, Any]:
    return {"x-queue-type": "quorum", **extra}


def task_queue(queue: str, delivery_limit: int) -> Queue:
    """A task type's queue: quorum, bounded redeliveries, dead letters kept at least once.

    `x-delivery-limit` counts returns to the queue (a consumer's channel closed while holding
    the message, or a requeue); past it the message goes to `<queue>.dead`. The at-least-once
    strategy keeps a dead letter in the source queue until the dead-letter queue confirms it,
    and RabbitMQ requires `reject-publish` overflow for it.
    """
    return Queue(queue, quorum(**{
        "x-delivery-limit": delivery_limit,
        "x-dead-letter-exchange": DEAD_LETTER_EXCHANGE,
        "x-dead-letter-routing-key": names.dead_letter_queue(queue),
        "x-dead-letter-strategy": "at-least-once",
        "x-overflow": "reject-publish",
    }))


def dead_letter_queue(queue: str) -> Queue:
    return Queue(names.dead_letter_queue(queue), quorum())


def events_queue(name: str) -> Queue:
    """A queue of events the operator consumes; quorum so a broker restart keeps them."""
    return Queue(name, quorum(**{"x-expires": OPERATOR_QUEUE_EXPIRES_MS}))


# A dead-letter queue of an install's own (the events queue's): for people to read, so no
# expiry, but a bound, keeping the newest, and deleted with the install.
INSTALL_DEAD_LETTERS_MAX: Final = 10_000


def install_dead_letter_queue(name: str) -> Queue:
    """Where an install puts what came on its events queue and was no event."""
    return Queue(name, quorum(**{"x-max-length": INSTALL_DEAD_LETTERS_MAX,
                                 "x-overflow": "drop-head"}))

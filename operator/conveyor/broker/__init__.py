"""The RabbitMQ adapter (DESIGN.md §3): the only package that imports pika.

    settings    BrokerSettings from one URL, the password masked          (pure)
    topology    the exchanges and queues Conveyor declares, as data       (pure)
    codec       task and event bodies to and from bytes                   (pure)
    confirms    bookkeeping of publisher confirms; the Confirmation       (pure)
    errors      BrokerError and its branches                              (pure)
    connection  pika's parameters from BrokerSettings
    admin       Admin: declare, delete, inspect (blocking, rare calls)
    link        Link and Delivery: one connection on its own I/O thread, confirmed
                publishing and manual-ack consuming, reconnecting
    oneshot     one-off operations of the CLI: publish, peek, move

Only the modules marked pure may be imported where pika must not be (the import contracts in
pyproject.toml say which).
"""

from conveyor.broker.admin import Admin, QueueStats
from conveyor.broker.confirms import Confirmation
from conveyor.broker.errors import (
    BrokerError,
    LinkClosedError,
    PublishRejectedError,
    QueueMismatchError,
    UnroutableError,
)
from conveyor.broker.link import Delivery, Link
from conveyor.broker.settings import BrokerSettings, BrokerSettingsError

__all__ = [
    "Admin",
    "BrokerError",
    "BrokerSettings",
    "BrokerSettingsError",
    "Confirmation",
    "Delivery",
    "Link",
    "LinkClosedError",
    "PublishRejectedError",
    "QueueMismatchError",
    "QueueStats",
    "UnroutableError",
]

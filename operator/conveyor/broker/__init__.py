"""The RabbitMQ adapter (DESIGN.md §3): the only package that imports pika.

    settings    BrokerSettings from one URL, the password masked          (pure)
    topology    the exchanges and queues Conveyor declares, as data       (pure)
    codec       task and event bodies to and from bytes                   (pure)
    confirms    bookkeeping of publisher confirms; the Confirmation       (pure)
    errors      BrokerError and its branches                              (pure)
    tls         why a TLS connection failed, as a TLSError with its cause  (pure)
    connection  pika's parameters from BrokerSettings (the only place they are built);
                a failed connection attempt as our error; the reconnection backoff
    admin       Admin: declare, delete, inspect (blocking, rare calls)
    link        Link: one connection on its own I/O thread, confirmed publishing and
                manual-ack consuming, reconnecting; its parts: iothread (the loop's thread
                and calls onto it), outbox (publishes and their confirms), delivery (a
                message to settle once)
    oneshot     one-off operations of the CLI: publish, peek, move

Only the modules marked pure may be imported where pika must not be (the import contracts in
pyproject.toml say which).
"""

from conveyor.broker.admin import Admin, QueueStats
from conveyor.broker.confirms import Confirmation
from conveyor.broker.connection import ca_bundle
from conveyor.broker.delivery import Delivery
from conveyor.broker.errors import (
    AccessRefusedError,
    BrokerError,
    ChannelClosedError,
    LinkClosedError,
    PublishRejectedError,
    QueueMismatchError,
    TLSCause,
    TLSError,
    UnroutableError,
)
from conveyor.broker.link import Link
from conveyor.broker.settings import BrokerSettings, BrokerSettingsError

__all__ = [
    "AccessRefusedError",
    "Admin",
    "BrokerError",
    "BrokerSettings",
    "BrokerSettingsError",
    "ChannelClosedError",
    "Confirmation",
    "Delivery",
    "Link",
    "LinkClosedError",
    "PublishRejectedError",
    "QueueMismatchError",
    "QueueStats",
    "TLSCause",
    "TLSError",
    "UnroutableError",
    "ca_bundle",
]

"""What can go wrong with the broker: one branch of Conveyor's error tree.

    ConveyorError
     └── BrokerError            a broker operation failed; the pika error is the cause
          ├── UnroutableError       a mandatory message no queue took
          ├── PublishRejectedError  the broker refused a message (basic.nack)
          ├── LinkClosedError       the link closed before the operation completed
          └── QueueMismatchError    a queue exists with other arguments
"""

from __future__ import annotations

from conveyor.errors import ConveyorError


class BrokerError(ConveyorError):
    """A broker operation failed; the pika error, if any, is the cause."""


class UnroutableError(BrokerError):
    """The broker confirmed a mandatory message that no queue took (its queue is missing)."""


class PublishRejectedError(BrokerError):
    """The broker refused a message (`basic.nack`): it was not stored."""


class LinkClosedError(BrokerError):
    """The link was closed before the operation could complete."""


class QueueMismatchError(BrokerError):
    """A queue exists with other arguments than asked for (e.g. another delivery limit)."""

"""What can go wrong with the broker: one branch of Conveyor's error tree.

    ConveyorError
     └── BrokerError            a broker operation failed; the pika error is the cause;
          │                     `retryable` says whether trying again can help
          ├── UnroutableError       a mandatory message no queue took
          ├── PublishRejectedError  the broker refused a message (basic.nack)
          ├── LinkClosedError       the link closed before the operation completed
          ├── ChannelClosedError    the broker closed the channel over a request: `.code`
          │                         (404 no such queue, 403 access refused, 406 ...)
          ├── QueueMismatchError    a queue exists with other arguments   (not retryable)
          ├── AccessRefusedError    the credentials or the vhost are refused (not retryable)
          └── TLSError              no TLS connection can be made with this configuration:
                                    `.cause` says why (a TLSCause)        (not retryable)
"""

from __future__ import annotations

from enum import StrEnum

from conveyor.errors import ConveyorError


class BrokerError(ConveyorError):
    """A broker operation failed; the pika error, if any, is the cause."""

    retryable = True
    """Whether trying again can help (a broker restarting, a connection lost), as opposed to
    a configuration to fix first."""


class UnroutableError(BrokerError):
    """The broker confirmed a mandatory message that no queue took (its queue is missing)."""


class PublishRejectedError(BrokerError):
    """The broker refused a message (`basic.nack`): it was not stored."""


class LinkClosedError(BrokerError):
    """The link was closed before the operation could complete."""


class ChannelClosedError(BrokerError):
    """The broker closed the channel over a request; `code` is its AMQP reply code."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code

    @property
    def retryable(self) -> bool:  # type: ignore[override]
        # 403 access refused, 406 precondition failed, 530 not allowed: asking again will not
        # change the answer. 404 (a queue not declared yet) and the rest may.
        return self.code not in (403, 406, 530)


class QueueMismatchError(BrokerError):
    """A queue exists with other arguments than asked for (e.g. another delivery limit)."""

    retryable = False


class AccessRefusedError(BrokerError):
    """The broker refused the credentials, or the user's access to the vhost."""

    retryable = False


class TLSCause(StrEnum):
    """Why an amqps connection cannot be made; each one a configuration to fix, not a
    broker to wait for."""

    CERTIFICATE = "certificate-verify-failed"
    """The broker's certificate does not chain to the CA we trust (or has expired)."""
    HOSTNAME = "hostname-mismatch"
    """The certificate is valid, but not for the name (or IP) we connected by."""
    NOT_TLS = "not-tls"
    """The port answered, but not with TLS: a plain AMQP port given to amqps://."""
    HANDSHAKE = "handshake-failed"
    """Some other TLS failure: no common protocol version or cipher, an alert."""
    CA_FILE = "ca-file"
    """The CA file cannot be read or holds no certificate."""


class TLSError(BrokerError):
    """No TLS connection to the broker can be made as configured; trying again does not
    help until the configuration (CA, host name, port) changes. The message names the URL
    (password masked) and the cause."""

    retryable = False

    def __init__(self, message: str, cause: TLSCause) -> None:
        super().__init__(message)
        self.cause = cause

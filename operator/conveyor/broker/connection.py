"""pika's connection parameters from Conveyor's broker settings (TLS verified for amqps), what
a failed connection attempt means, and the backoff between reconnection attempts.

This is the only place pika's parameters are built: every connection, blocking or not,
verifies the broker the same way.
"""

from __future__ import annotations

import random
import ssl
from dataclasses import dataclass, field

import pika
import pika.exceptions

from conveyor.broker.errors import AccessRefusedError, BrokerError, TLSCause, TLSError
from conveyor.broker.settings import BrokerSettings, BrokerSettingsError
from conveyor.broker.tls import tls_failure


def ca_bundle(settings: BrokerSettings) -> str | None:
    """The PEM text of the CA file for amqps (None: none set, or not TLS), checked to hold a
    certificate; TLSError (cause CA_FILE) naming the file and why when it cannot be used."""
    if not settings.tls or not settings.ca_file:
        return None
    path = settings.ca_file
    try:
        with open(path, encoding="ascii") as pem:
            text = pem.read()
        if not text.strip():
            # ssl would take empty data as no CA given, and trust the system's instead.
            raise ValueError("the file is empty")
        # Loading it is the check: OpenSSL refuses data with no certificate in it.
        ssl.create_default_context(cadata=text)
    except (OSError, ValueError, ssl.SSLError) as error:
        # ValueError: empty, or binary (DER is not PEM); SSLError: no PEM certificate.
        reason = error.strerror if isinstance(error, OSError) and error.strerror else error
        raise TLSError(f"cannot use the CA file {path} to verify RabbitMQ at "
                       f"{settings.masked}: {reason}", TLSCause.CA_FILE) from error
    return text


def connection_parameters(settings: BrokerSettings) -> pika.URLParameters:
    """pika's parameters for `settings`. amqps verifies the broker's certificate against the
    CA file (or the system's CAs) and its name against `settings.server_name`; the CA file is
    read now, so a replaced file is used by the next connection."""
    try:
        params = pika.URLParameters(settings.client_url)
    except ValueError as error:  # a query parameter pika does not know, or a bad value
        raise BrokerSettingsError(f"cannot use the broker URL {settings.masked}: {error}") \
            from error
    if settings.tls:
        context = ssl.create_default_context(cadata=ca_bundle(settings))
        params.ssl_options = pika.SSLOptions(context, server_hostname=settings.server_name)
    params.client_properties = {"connection_name": settings.name}
    return params


def connect_failure(error: BaseException, settings: BrokerSettings) -> BrokerError:
    """A failed connection attempt as an error of ours: TLSError when TLS was the cause
    (a configuration to fix), else BrokerError (a broker to wait for)."""
    tls = tls_failure(error, settings)
    if tls is not None:
        return tls
    if isinstance(error, (pika.exceptions.ProbableAuthenticationError,
                          pika.exceptions.ProbableAccessDeniedError,
                          pika.exceptions.AuthenticationError)):
        return AccessRefusedError(f"RabbitMQ at {settings.masked} refused the credentials or "
                                  f"the vhost: {type(error).__name__}")
    return BrokerError(f"cannot connect to RabbitMQ at {settings.masked}: {error!r}")


def open_blocking(settings: BrokerSettings) -> pika.BlockingConnection:
    """A blocking connection, or the BrokerError (TLSError) that says why there is none."""
    try:
        return pika.BlockingConnection(connection_parameters(settings))
    except (pika.exceptions.AMQPError, OSError) as error:
        # OSError: pika raises a TLS failure as the bare ssl error, not as an AMQPError.
        raise connect_failure(error, settings) from error


@dataclass
class Backoff:
    """Reconnect delays: doubling from `first` to `cap`, with jitter so that many clients a
    broker restart disconnected do not come back in lockstep."""

    first: float = 0.2
    cap: float = 5.0
    failures: int = field(default=0)

    def next(self) -> float:
        delay = min(self.cap, self.first * 2.0 ** self.failures)
        self.failures += 1
        jitter: float = random.uniform(0.5, 1.0)
        return delay * jitter

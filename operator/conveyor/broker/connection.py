"""pika's connection parameters from Conveyor's broker settings (TLS verified for amqps), and
the backoff between reconnection attempts."""

from __future__ import annotations

import random
import ssl
from dataclasses import dataclass, field

import pika

from conveyor.broker.settings import BrokerSettings


def connection_parameters(settings: BrokerSettings) -> pika.URLParameters:
    """pika's parameters for `settings`; TLS verifies the broker's name for amqps."""
    params = pika.URLParameters(settings.url)
    if settings.tls and "ssl_options" not in settings.url:
        context = ssl.create_default_context(cafile=settings.ca_file)
        params.ssl_options = pika.SSLOptions(context, server_hostname=settings.host)
    params.client_properties = {"connection_name": settings.name}
    return params


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

"""pika's connection parameters from Conveyor's broker settings (TLS verified for amqps)."""

from __future__ import annotations

import ssl

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

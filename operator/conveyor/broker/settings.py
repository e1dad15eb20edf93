"""Broker connection settings from one URL (`CONVEYOR_AMQP_URL`), with the password masked.

The URL carries the scheme (amqp or amqps), credentials, host, port and vhost, as RabbitMQ's
URI spec defines them, and pika's query parameters (`heartbeat`, ...). The password never
reaches a log line or a repr: `masked` replaces it.

amqps always verifies the broker: its certificate must chain to the CA of
`CONVEYOR_AMQP_CA_FILE` (default: the system's CAs) and name the host of the URL, or the one
the URL's `server_name_indication` parameter gives (RabbitMQ's URI spec name: for a broker
reached by another name or an IP, e.g. through a port-forward). pika's own `ssl_options`
parameter is refused: it would replace that verification with whatever it spells.
"""

from __future__ import annotations

import os
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field

from conveyor.errors import ConveyorError

URL_ENV = "CONVEYOR_AMQP_URL"
CA_FILE_ENV = "CONVEYOR_AMQP_CA_FILE"
SCHEMES = ("amqp", "amqps")
SERVER_NAME_PARAM = "server_name_indication"
"""URL parameter: the name the broker's certificate must carry (and the TLS SNI)."""


class BrokerSettingsError(ConveyorError):
    """The broker URL is missing or cannot be used; the message never contains the password."""


@dataclass(frozen=True)
class BrokerSettings:
    """Where the broker is and how to log in to it."""

    url: str = field(repr=False)
    """The AMQP URL, password included: pass it to the adapter only."""
    ca_file: str | None = None
    """CA bundle (PEM) to verify the broker's certificate with (amqps); default the
    system's. Not read here (this module does no I/O), and unused for amqp://."""
    name: str = "conveyor"
    """Connection name shown in RabbitMQ's connection list."""

    def __post_init__(self) -> None:
        parts = urllib.parse.urlsplit(self.url)
        # Only a URL with a host part can be masked; anything else is not echoed at all (it
        # could be a password pasted into the wrong variable).
        shown = f" in {mask(self.url)}" if parts.netloc else ""
        if parts.scheme not in SCHEMES:
            raise BrokerSettingsError(
                f"{URL_ENV}: scheme must be amqp or amqps, got {parts.scheme or 'none'!r}{shown}"
            )
        if not parts.hostname:
            raise BrokerSettingsError(f"{URL_ENV}: no host{shown or ' in the URL'}")
        try:
            parts.port  # noqa: B018 - urllib checks the port only when asked for it
        except ValueError:
            raise BrokerSettingsError(f"{URL_ENV}: the port is not a number{shown}") from None
        query = urllib.parse.parse_qs(parts.query, keep_blank_values=True)
        if "ssl_options" in query:
            raise BrokerSettingsError(
                f"{URL_ENV}: the ssl_options parameter is not supported{shown}: amqps "
                f"verifies the broker against {CA_FILE_ENV} (default: the system's CAs)")
        names = query.get(SERVER_NAME_PARAM, [])
        if names and parts.scheme != "amqps":
            raise BrokerSettingsError(
                f"{URL_ENV}: {SERVER_NAME_PARAM} applies to amqps:// only{shown}")
        if len(names) > 1 or names == [""]:
            raise BrokerSettingsError(
                f"{URL_ENV}: {SERVER_NAME_PARAM} must name one host{shown}")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None,
                 name: str = "conveyor") -> BrokerSettings:
        env = os.environ if env is None else env
        url = env.get(URL_ENV, "").strip()
        if not url:
            raise BrokerSettingsError(f"{URL_ENV} is not set: it must name the RabbitMQ broker")
        return cls(url=url, ca_file=env.get(CA_FILE_ENV, "").strip() or None, name=name)

    @property
    def tls(self) -> bool:
        return urllib.parse.urlsplit(self.url).scheme == "amqps"

    @property
    def host(self) -> str:
        return urllib.parse.urlsplit(self.url).hostname or ""

    @property
    def port(self) -> int:
        """The URL's port, or RabbitMQ's default for the scheme (5671 with TLS, else 5672)."""
        return urllib.parse.urlsplit(self.url).port or (5671 if self.tls else 5672)

    @property
    def server_name(self) -> str:
        """The name the broker's certificate must carry: `server_name_indication`, else the
        URL's host."""
        query = urllib.parse.parse_qs(urllib.parse.urlsplit(self.url).query)
        return query.get(SERVER_NAME_PARAM, [self.host])[0]

    @property
    def client_url(self) -> str:
        """The URL for pika, which refuses parameters it does not know: without ours."""
        parts = urllib.parse.urlsplit(self.url)
        query = [(k, v) for k, v in urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
                 if k != SERVER_NAME_PARAM]
        return urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(query)))

    @property
    def vhost(self) -> str:
        """The vhost: the URL's path, percent-decoded; `/` when the path is empty."""
        path = urllib.parse.urlsplit(self.url).path
        return urllib.parse.unquote(path[1:]) if len(path) > 1 else "/"

    @property
    def masked(self) -> str:
        return mask(self.url)

    def __str__(self) -> str:
        return self.masked

    def __repr__(self) -> str:
        return f"BrokerSettings({self.masked!r})"


def mask(url: str) -> str:
    """`url` with its password replaced by `***` (and nothing else changed)."""
    parts = urllib.parse.urlsplit(url)
    if parts.password is None:
        return url
    userinfo, _, hostport = parts.netloc.rpartition("@")
    user = userinfo.split(":", 1)[0]
    return urllib.parse.urlunsplit(parts._replace(netloc=f"{user}:***@{hostport}"))

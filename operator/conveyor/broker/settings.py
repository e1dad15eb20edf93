"""Broker connection settings from one URL (`CONVEYOR_AMQP_URL`), with the password masked.

The URL carries the scheme (amqp or amqps), credentials, host, port and vhost, as RabbitMQ's
URI spec defines them. The password never reaches a log line or a repr: `masked` replaces it.
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


class BrokerSettingsError(ConveyorError):
    """The broker URL is missing or cannot be used; the message never contains the password."""


@dataclass(frozen=True)
class BrokerSettings:
    """Where the broker is and how to log in to it."""

    url: str = field(repr=False)
    """The AMQP URL, password included: pass it to the adapter only."""
    ca_file: str | None = None
    """CA bundle to verify the broker's certificate with (amqps); default the system's."""
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

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None,
                 name: str = "conveyor") -> BrokerSettings:
        env = os.environ if env is None else env
        url = env.get(URL_ENV, "").strip()
        if not url:
            raise BrokerSettingsError(f"{URL_ENV} is not set: it must name the RabbitMQ broker")
        return cls(url=url, ca_file=env.get(CA_FILE_ENV) or None, name=name)

    @property
    def tls(self) -> bool:
        return urllib.parse.urlsplit(self.url).scheme == "amqps"

    @property
    def host(self) -> str:
        return urllib.parse.urlsplit(self.url).hostname or ""

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

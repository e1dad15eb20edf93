"""Kafka's connection settings, read from the environment and checked before any I/O (pure).

    CONVEYOR_KAFKA_BOOTSTRAP_SERVERS   host:port[,host:port...]: unset, Kafka is off
    CONVEYOR_KAFKA_SECURITY_PROTOCOL   PLAINTEXT (default), SSL, SASL_PLAINTEXT or SASL_SSL
    CONVEYOR_KAFKA_CA_FILE             a PEM CA bundle that verifies the brokers (SSL)
    CONVEYOR_KAFKA_CERT_FILE, CONVEYOR_KAFKA_KEY_FILE   a client certificate (mutual TLS)
    CONVEYOR_KAFKA_SASL_MECHANISM      PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512 (SASL_*)
    CONVEYOR_KAFKA_SASL_USERNAME       the SASL user
    CONVEYOR_KAFKA_SASL_PASSWORD_FILE  a file holding the SASL password (a mounted Secret), or
    CONVEYOR_KAFKA_SASL_PASSWORD       the password itself; never shown, not even in repr
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from conveyor.kafka.errors import KafkaSettingsError

BOOTSTRAP_ENV = "CONVEYOR_KAFKA_BOOTSTRAP_SERVERS"
PROTOCOL_ENV = "CONVEYOR_KAFKA_SECURITY_PROTOCOL"
CA_FILE_ENV = "CONVEYOR_KAFKA_CA_FILE"
CERT_FILE_ENV = "CONVEYOR_KAFKA_CERT_FILE"
KEY_FILE_ENV = "CONVEYOR_KAFKA_KEY_FILE"
MECHANISM_ENV = "CONVEYOR_KAFKA_SASL_MECHANISM"
USERNAME_ENV = "CONVEYOR_KAFKA_SASL_USERNAME"
PASSWORD_ENV = "CONVEYOR_KAFKA_SASL_PASSWORD"
PASSWORD_FILE_ENV = "CONVEYOR_KAFKA_SASL_PASSWORD_FILE"

PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
_SERVER = re.compile(r"^[A-Za-z0-9.\-\[\]:]+:[0-9]{1,5}$")


@dataclass(frozen=True)
class KafkaSettings:
    bootstrap_servers: str
    security_protocol: str = "PLAINTEXT"
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    sasl_mechanism: str | None = None
    sasl_username: str | None = None
    sasl_password: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        servers = self.bootstrap_servers.split(",")
        if not all(_SERVER.match(s.strip()) for s in servers):
            raise KafkaSettingsError(f"{BOOTSTRAP_ENV}: {self.bootstrap_servers!r} is not a "
                                     "comma-separated list of host:port")
        if self.security_protocol not in PROTOCOLS:
            raise KafkaSettingsError(f"{PROTOCOL_ENV}: {self.security_protocol!r} is not one "
                                     f"of {', '.join(PROTOCOLS)}")
        sasl = self.security_protocol.startswith("SASL_")
        if sasl and (self.sasl_mechanism not in MECHANISMS or not self.sasl_username
                     or self.sasl_password is None):
            raise KafkaSettingsError(
                f"{PROTOCOL_ENV}={self.security_protocol} needs {MECHANISM_ENV} (one of "
                f"{', '.join(MECHANISMS)}), {USERNAME_ENV} and {PASSWORD_FILE_ENV} (or "
                f"{PASSWORD_ENV})")
        if not sasl and (self.sasl_username or self.sasl_password is not None):
            raise KafkaSettingsError(f"SASL credentials are set but {PROTOCOL_ENV} is "
                                     f"{self.security_protocol}: use SASL_SSL (or "
                                     "SASL_PLAINTEXT)")
        if (self.cert_file is None) != (self.key_file is None):
            raise KafkaSettingsError(f"{CERT_FILE_ENV} and {KEY_FILE_ENV} go together")

    @property
    def tls(self) -> bool:
        return self.security_protocol in ("SSL", "SASL_SSL")

    @property
    def masked(self) -> str:
        """For logs: where and how it connects, never the password."""
        user = f" user={self.sasl_username}" if self.sasl_username else ""
        return f"{self.bootstrap_servers} ({self.security_protocol}{user})"

    def client_config(self) -> dict[str, str]:
        """librdkafka's connection properties (with the password: never log them)."""
        config = {"bootstrap.servers": self.bootstrap_servers,
                  "security.protocol": self.security_protocol}
        if self.ca_file is not None:
            config["ssl.ca.location"] = str(self.ca_file)
        if self.cert_file is not None and self.key_file is not None:
            config["ssl.certificate.location"] = str(self.cert_file)
            config["ssl.key.location"] = str(self.key_file)
        if self.sasl_mechanism and self.security_protocol.startswith("SASL_"):
            config["sasl.mechanism"] = self.sasl_mechanism
            config["sasl.username"] = self.sasl_username or ""
            config["sasl.password"] = self.sasl_password or ""
        return config

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> KafkaSettings | None:
        """The settings the environment gives; None when BOOTSTRAP_ENV is unset (Kafka off).
        A password file is read here, once: a rotated Secret takes a restart."""
        servers = (env.get(BOOTSTRAP_ENV) or "").strip()
        if not servers:
            return None
        password = env.get(PASSWORD_ENV) or None
        password_file = env.get(PASSWORD_FILE_ENV) or None
        if password_file is not None:
            try:
                password = Path(password_file).read_text().strip()
            except OSError as error:
                raise KafkaSettingsError(f"{PASSWORD_FILE_ENV}: cannot read "
                                         f"{password_file}: {error.strerror}") from None
        files = {}
        for name in (CA_FILE_ENV, CERT_FILE_ENV, KEY_FILE_ENV):
            value = env.get(name) or None
            if value is not None and not Path(value).is_file():
                raise KafkaSettingsError(f"{name}: {value} is not a file")
            files[name] = Path(value) if value else None
        protocol = (env.get(PROTOCOL_ENV) or "").strip().upper()
        if not protocol:
            protocol = "SSL" if files[CA_FILE_ENV] else "PLAINTEXT"
        return cls(
            bootstrap_servers=servers,
            security_protocol=protocol,
            ca_file=files[CA_FILE_ENV],
            cert_file=files[CERT_FILE_ENV],
            key_file=files[KEY_FILE_ENV],
            sasl_mechanism=(env.get(MECHANISM_ENV) or "").strip().upper() or None,
            sasl_username=env.get(USERNAME_ENV) or None,
            sasl_password=password,
        )

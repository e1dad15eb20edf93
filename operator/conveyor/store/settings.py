"""The object store's settings, read from the environment and checked before any I/O.

    CONVEYOR_S3_ENDPOINT     http(s)://host[:port] of an S3-compatible store; unset: AWS S3
    CONVEYOR_S3_BUCKET       the bucket (required; Conveyor does not create it)
    CONVEYOR_S3_REGION       the signing region (default us-east-1)
    CONVEYOR_S3_ACCESS_KEY   the access key id (required)
    CONVEYOR_S3_SECRET_KEY   the secret key (required; never shown, not even in repr)
    CONVEYOR_S3_CA_FILE      a PEM CA bundle to verify an https endpoint with (optional)
    CONVEYOR_S3_PREFIX       a prefix put before every key, e.g. `conveyor/` (optional)
"""

from __future__ import annotations

import os
import re
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from conveyor.store.errors import StoreSettingsError

ENDPOINT_ENV = "CONVEYOR_S3_ENDPOINT"
BUCKET_ENV = "CONVEYOR_S3_BUCKET"
REGION_ENV = "CONVEYOR_S3_REGION"
ACCESS_KEY_ENV = "CONVEYOR_S3_ACCESS_KEY"
SECRET_KEY_ENV = "CONVEYOR_S3_SECRET_KEY"
CA_FILE_ENV = "CONVEYOR_S3_CA_FILE"
PREFIX_ENV = "CONVEYOR_S3_PREFIX"

DEFAULT_REGION = "us-east-1"
# S3's rules for a bucket name (the path-style subset every S3-compatible store accepts).
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_REGION = re.compile(r"^[a-z0-9-]{1,32}$")


@dataclass(frozen=True)
class StoreSettings:
    bucket: str
    access_key: str
    secret_key: str = field(repr=False)
    endpoint: str | None = None
    region: str = DEFAULT_REGION
    ca_file: Path | None = None
    prefix: str = ""
    """Normalized: empty, or ending in `/`."""

    def __post_init__(self) -> None:
        if self.endpoint is not None:
            _check_endpoint(self.endpoint)
        if not _BUCKET.match(self.bucket) or ".." in self.bucket:
            raise StoreSettingsError(
                f"{BUCKET_ENV}: {self.bucket!r} is not a bucket name (3-63 characters: "
                "lowercase letters, digits, '.' and '-', starting and ending alphanumeric)")
        if not _REGION.match(self.region):
            raise StoreSettingsError(f"{REGION_ENV}: {self.region!r} is not a region name")
        if not self.access_key:
            raise StoreSettingsError(f"{ACCESS_KEY_ENV} must not be empty")
        if not self.secret_key:
            raise StoreSettingsError(f"{SECRET_KEY_ENV} must not be empty")
        if self.ca_file is not None:
            if self.endpoint is not None and not self.endpoint.startswith("https://"):
                raise StoreSettingsError(
                    f"{CA_FILE_ENV} is set but {ENDPOINT_ENV} is not https: the CA would "
                    "not be used")
            if not self.ca_file.is_file():
                raise StoreSettingsError(f"{CA_FILE_ENV}: {self.ca_file} is not a file")
        prefix = self.prefix
        if prefix.startswith("/"):
            raise StoreSettingsError(f"{PREFIX_ENV}: {prefix!r} must not start with '/'")
        if prefix and not prefix.endswith("/"):
            object.__setattr__(self, "prefix", prefix + "/")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> StoreSettings:
        env = os.environ if env is None else env

        def required(name: str) -> str:
            value = env.get(name, "")
            if not value:
                raise StoreSettingsError(f"{name} is not set: the object store needs it")
            return value

        ca = env.get(CA_FILE_ENV) or None
        return cls(
            bucket=required(BUCKET_ENV),
            access_key=required(ACCESS_KEY_ENV),
            secret_key=required(SECRET_KEY_ENV),
            endpoint=env.get(ENDPOINT_ENV) or None,
            region=env.get(REGION_ENV) or DEFAULT_REGION,
            ca_file=Path(ca) if ca else None,
            prefix=env.get(PREFIX_ENV, ""),
        )

    def full_key(self, key: str) -> str:
        """The key in the bucket: the prefix, then `key`."""
        return self.prefix + key

    def __str__(self) -> str:
        where = self.endpoint or "AWS S3"
        return f"s3://{self.bucket}/{self.prefix} at {where} as {self.access_key}"


def _check_endpoint(endpoint: str) -> None:
    try:
        url = urllib.parse.urlsplit(endpoint)
        url.port  # noqa: B018 - parses the port, raising ValueError when it is not a number
    except ValueError:
        raise StoreSettingsError(f"{ENDPOINT_ENV}: the port is not a number") from None
    if url.scheme not in ("http", "https"):
        raise StoreSettingsError(f"{ENDPOINT_ENV}: the scheme must be http or https")
    if not url.hostname:
        raise StoreSettingsError(f"{ENDPOINT_ENV}: no host in the URL")
    if url.username is not None or url.password is not None:
        # Never echo the URL: it carries a credential.
        raise StoreSettingsError(
            f"{ENDPOINT_ENV} must not carry credentials: use {ACCESS_KEY_ENV} and "
            f"{SECRET_KEY_ENV}")
    if url.path not in ("", "/") or url.query or url.fragment:
        raise StoreSettingsError(
            f"{ENDPOINT_ENV}: {endpoint!r} must be scheme://host[:port] only (the bucket is "
            f"{BUCKET_ENV}, a key prefix {PREFIX_ENV})")

"""conveyor.store's pure parts: settings from the environment, references, and how client
errors map to the domain's (no store needed: botocore's exceptions are built by hand)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import botocore.exceptions
import pytest

from conveyor.errors import ConveyorError
from conveyor.store import (
    AccessDeniedError,
    IntegrityError,
    ObjectNotFoundError,
    ObjectRef,
    StoreError,
    StoreSettings,
    StoreSettingsError,
    StoreTLSError,
)
from conveyor.store.client import _mapped
from conveyor.store.errors import for_answer

SECRET = "s3cr3t-never-shown"
BASE = {"CONVEYOR_S3_BUCKET": "outputs", "CONVEYOR_S3_ACCESS_KEY": "ak",
        "CONVEYOR_S3_SECRET_KEY": SECRET}


def settings(**env: str) -> StoreSettings:
    return StoreSettings.from_env({**BASE, **env})


def test_defaults_and_normalized_prefix() -> None:
    s = settings(CONVEYOR_S3_PREFIX="conveyor/runs")
    assert (s.endpoint, s.region, s.ca_file, s.prefix) == (None, "us-east-1", None,
                                                          "conveyor/runs/")
    assert s.full_key("a/b") == "conveyor/runs/a/b"
    assert settings().full_key("a") == "a"
    assert SECRET not in repr(s) and SECRET not in str(s)


@pytest.mark.parametrize("missing", sorted(BASE))
def test_a_missing_variable_is_named(missing: str) -> None:
    env = {k: v for k, v in BASE.items() if k != missing}
    with pytest.raises(StoreSettingsError, match=f"^{missing} is not set"):
        StoreSettings.from_env(env)


@pytest.mark.parametrize(("env", "named"), [
    ({"CONVEYOR_S3_ENDPOINT": "ftp://h"}, "CONVEYOR_S3_ENDPOINT: the scheme"),
    ({"CONVEYOR_S3_ENDPOINT": "http://"}, "CONVEYOR_S3_ENDPOINT: no host"),
    ({"CONVEYOR_S3_ENDPOINT": "http://h:port"}, "CONVEYOR_S3_ENDPOINT: the port"),
    ({"CONVEYOR_S3_ENDPOINT": "http://h/bucket"}, "CONVEYOR_S3_ENDPOINT: .* only"),
    ({"CONVEYOR_S3_BUCKET": "Has_Upper"}, "CONVEYOR_S3_BUCKET: 'Has_Upper'"),
    ({"CONVEYOR_S3_BUCKET": "ab"}, "CONVEYOR_S3_BUCKET"),
    ({"CONVEYOR_S3_REGION": "Mars 1"}, "CONVEYOR_S3_REGION"),
    ({"CONVEYOR_S3_PREFIX": "/abs"}, "CONVEYOR_S3_PREFIX"),
    ({"CONVEYOR_S3_CA_FILE": "/nonexistent/ca.pem"}, "CONVEYOR_S3_CA_FILE: .* not a file"),
    ({"CONVEYOR_S3_ENDPOINT": "http://h", "CONVEYOR_S3_CA_FILE": "/etc/hostname"},
     "CONVEYOR_S3_CA_FILE is set but CONVEYOR_S3_ENDPOINT is not https"),
])
def test_bad_settings_name_their_variable(env: dict[str, str], named: str) -> None:
    with pytest.raises(StoreSettingsError, match=named) as caught:
        settings(**env)
    assert isinstance(caught.value, ConveyorError)


def test_credentials_in_the_endpoint_are_refused_without_echoing_them() -> None:
    with pytest.raises(StoreSettingsError, match="must not carry credentials") as caught:
        settings(CONVEYOR_S3_ENDPOINT=f"https://ak:{SECRET}@store.example:9000")
    assert SECRET not in str(caught.value)


def test_https_endpoint_with_ca(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    s = settings(CONVEYOR_S3_ENDPOINT="https://store.example:9000",
                 CONVEYOR_S3_CA_FILE=str(ca))
    assert s.ca_file == ca and s.endpoint == "https://store.example:9000"


def test_a_reference_verifies_size_then_digest() -> None:
    ref = ObjectRef.of("b", "k", b"abc")
    assert ref.sha256 == hashlib.sha256(b"abc").hexdigest() and ref.size == 3
    assert ref.verify(b"abc") == b"abc"
    with pytest.raises(IntegrityError, match="2 bytes read, 3 expected"):
        ref.verify(b"ab")
    with pytest.raises(IntegrityError, match="sha256"):
        ref.verify(b"abd")
    assert ObjectRef.from_json(ref.to_json()) == ref


@pytest.mark.parametrize(("value", "field"), [
    ([], "JSON object"),
    ({"bucket": "", "key": "k", "size": 1, "sha256": "0" * 64}, "bucket"),
    ({"bucket": "b", "key": "", "size": 1, "sha256": "0" * 64}, "key must not be empty"),
    ({"bucket": "b", "key": "k" * 1025, "size": 1, "sha256": "0" * 64}, "1024 bytes"),
    ({"bucket": "b", "key": "k", "size": True, "sha256": "0" * 64}, "size"),
    ({"bucket": "b", "key": "k", "size": -1, "sha256": "0" * 64}, "size"),
    ({"bucket": "b", "key": "k", "size": 1, "sha256": "A" * 64}, "sha256"),
])
def test_a_bad_reference_names_its_field(value: object, field: str) -> None:
    with pytest.raises(ValueError, match=field):
        ObjectRef.from_json(value)


@pytest.mark.parametrize(("code", "status", "kind", "retryable"), [
    ("NoSuchKey", 404, ObjectNotFoundError, False),
    ("404", 404, ObjectNotFoundError, False),  # HEAD answers have no body, only a status
    ("NoSuchBucket", 404, ObjectNotFoundError, False),
    ("SignatureDoesNotMatch", 403, AccessDeniedError, False),
    ("InvalidAccessKeyId", 403, AccessDeniedError, False),
    ("AccessDenied", 403, AccessDeniedError, False),
    ("SlowDown", 503, StoreError, True),
    ("InternalError", 500, StoreError, True),
    ("SomethingNew", 502, StoreError, True),
    ("SomethingNew", 429, StoreError, True),
    ("InvalidArgument", 400, StoreError, False),
    ("EntityTooLarge", 400, StoreError, False),
])
def test_answers_map_to_branches(code: str, status: int, kind: type[StoreError],
                                 retryable: bool) -> None:
    error = for_answer(code, status, "get s3://b/k")
    assert type(error) is kind
    assert error.retryable is retryable
    assert str(error) == f"get s3://b/k: the store answered {status} {code}"


def _client_error(code: str, status: int) -> botocore.exceptions.ClientError:
    return botocore.exceptions.ClientError(
        {"Error": {"Code": code, "Message": f"secret was {SECRET}"},
         "ResponseMetadata": {"HTTPStatusCode": status}}, "PutObject")


@pytest.mark.parametrize(("raised", "kind", "retryable"), [
    (_client_error("SignatureDoesNotMatch", 403), AccessDeniedError, False),
    (_client_error("ServiceUnavailable", 503), StoreError, True),
    (botocore.exceptions.EndpointConnectionError(endpoint_url="http://127.0.0.1:1"),
     StoreError, True),
    (botocore.exceptions.ConnectTimeoutError(endpoint_url="http://127.0.0.1:1"),
     StoreError, True),
    (botocore.exceptions.ReadTimeoutError(endpoint_url="http://127.0.0.1:1"), StoreError,
     True),
    (botocore.exceptions.SSLError(endpoint_url="https://h", error="bad cert"), StoreTLSError,
     False),
    (botocore.exceptions.NoCredentialsError(), StoreError, False),
])
def test_client_errors_are_mapped(raised: Exception, kind: type[StoreError],
                                  retryable: bool) -> None:
    with pytest.raises(StoreError) as caught, _mapped("put s3://b/k"):
        raise raised
    assert type(caught.value) is kind
    assert caught.value.retryable is retryable
    assert caught.value.__cause__ is raised
    # The server's message (which could echo anything) is not carried over.
    assert SECRET not in str(caught.value)
    assert str(caught.value).startswith("put s3://b/k: ")

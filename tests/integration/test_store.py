"""conveyor.store against the test bed's object store (a real S3 server on loopback):
round trips, verification on read, and how each failure is classified."""

from __future__ import annotations

import dataclasses
import hashlib
import secrets
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import botocore.config
import pytest

from conveyor.store import (
    AccessDeniedError,
    IntegrityError,
    ObjectNotFoundError,
    ObjectRef,
    ObjectStore,
    StoreError,
    StoreSettings,
    StoreTLSError,
)
from support.kube import local_testbed_only
from testbed import objectstore, pki
from testbed.layout import paths, ports

pytestmark = pytest.mark.integration


@pytest.fixture
def raw(store_settings: StoreSettings) -> Iterator[Any]:
    """A plain boto3 client of the same store, to change objects behind the adapter's back."""
    s3 = boto3.session.Session().client(
        "s3", endpoint_url=store_settings.endpoint, region_name=store_settings.region,
        aws_access_key_id=store_settings.access_key,
        aws_secret_access_key=store_settings.secret_key,
        config=botocore.config.Config(s3={"addressing_style": "path"},
                                      request_checksum_calculation="when_required"))
    yield s3
    s3.close()


@pytest.fixture
def store(store_settings: StoreSettings) -> Iterator[ObjectStore]:
    """The session's bucket under a prefix of this test's own, so tests never see each
    other's keys."""
    settings = dataclasses.replace(store_settings,
                                   prefix=f"{store_settings.prefix}{secrets.token_hex(4)}")
    with ObjectStore(settings) as store:
        yield store


def test_put_get_round_trip_pins_size_and_sha256(store: ObjectStore) -> None:
    data = secrets.token_bytes(300_000) + b"\0\xff"
    ref = store.put("outputs/run-1/big", data)
    assert ref == ObjectRef(store.settings.bucket, store.settings.prefix + "outputs/run-1/big",
                            len(data), hashlib.sha256(data).hexdigest())
    assert store.get(ref) == data
    empty = store.put("outputs/run-1/empty", b"")
    assert store.get(empty) == b""


def test_list_and_delete_prefix(store: ObjectStore) -> None:
    for name, size in [("run-1/a", 1), ("run-1/b", 2), ("run-10/c", 3), ("run-2/d", 4)]:
        store.put(name, b"x" * size)
    assert store.list("run-1/") == [("run-1/a", 1), ("run-1/b", 2)]
    assert store.list("run-1") == [("run-1/a", 1), ("run-1/b", 2), ("run-10/c", 3)]
    assert store.delete_prefix("run-1/") == 2
    assert store.list() == [("run-10/c", 3), ("run-2/d", 4)]
    store.delete("run-2/d")
    store.delete("run-2/d")  # deleting a missing key is not an error
    assert store.list() == [("run-10/c", 3)]
    with pytest.raises(ValueError, match="non-empty prefix"):
        store.delete_prefix("")


def test_delete_prefix_pages_past_one_batch(store: ObjectStore, raw: Any) -> None:
    # More keys than one ListObjectsV2 page and one DeleteObjects batch hold (1000 each).
    keys = [f"{store.settings.prefix}many/{i:05}" for i in range(1203)]
    for key in keys:  # the plain client: 1203 puts through the adapter only add time
        raw.put_object(Bucket=store.settings.bucket, Key=key, Body=b"")
    assert len(store.list("many/")) == 1203
    assert store.delete_prefix("many/") == 1203
    assert store.list("many/") == []


def test_a_corrupted_object_is_refused(store: ObjectStore, raw: Any) -> None:
    ref = store.put("outputs/x", b"the real output")
    # Same length, other bytes: only the sha256 can tell.
    raw.put_object(Bucket=ref.bucket, Key=ref.key, Body=b"the fake output")
    with pytest.raises(IntegrityError, match="sha256") as caught:
        store.get(ref)
    assert not caught.value.retryable
    raw.put_object(Bucket=ref.bucket, Key=ref.key, Body=b"the real output, and more")
    with pytest.raises(IntegrityError, match="bytes read"):
        store.get(ref)


def test_a_missing_object_is_not_found(store: ObjectStore) -> None:
    ref = store.put("gone", b"1")
    store.delete("gone")
    with pytest.raises(ObjectNotFoundError) as caught:
        store.get(ref)
    assert not caught.value.retryable


def test_a_wrong_secret_key_is_refused_and_not_retryable(store_settings: StoreSettings) -> None:
    wrong = "not-" + store_settings.secret_key
    settings = dataclasses.replace(store_settings, secret_key=wrong)
    with ObjectStore(settings) as store:
        for call in (lambda: store.put("k", b"v"), store.list,
                     lambda: store.get(ObjectRef.of(settings.bucket, "k", b"v"))):
            with pytest.raises(AccessDeniedError) as caught:
                call()
            assert not caught.value.retryable
            assert wrong not in str(caught.value)
            assert store_settings.secret_key not in str(caught.value)


def test_a_closed_port_is_retryable(store_settings: StoreSettings) -> None:
    with socket.socket() as s:  # a port nothing listens on: bound, then released
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    settings = dataclasses.replace(store_settings, endpoint=f"http://127.0.0.1:{port}")
    with ObjectStore(settings, connect_timeout=2) as store, \
            pytest.raises(StoreError) as caught:
        store.put("k", b"v")
    assert type(caught.value) is StoreError
    assert caught.value.retryable
    assert "no answer" in str(caught.value)
    assert store_settings.secret_key not in str(caught.value)


@local_testbed_only
def test_the_store_over_tls_is_verified_with_its_ca_and_refused_with_another(
        store_settings: StoreSettings, tmp_path: Path) -> None:
    p, ports_ = paths(), ports()
    secure = dataclasses.replace(store_settings, endpoint=objectstore.tls_endpoint(ports_),
                                 ca_file=p.amqp_ca)
    with ObjectStore(secure) as store:
        ref = store.put(f"tls/{secrets.token_hex(4)}", b"over TLS")
        assert store.get(ref) == b"over TLS"
    pki.ensure_broker(tmp_path)  # a CA of its own, which signed nothing the store shows
    wrong = dataclasses.replace(secure, ca_file=tmp_path / "amqp-ca.crt")
    with ObjectStore(wrong) as store, pytest.raises(StoreTLSError) as caught:
        store.put("tls/refused", b"x")
    assert not caught.value.retryable
    assert "CONVEYOR_S3_CA_FILE" in str(caught.value)

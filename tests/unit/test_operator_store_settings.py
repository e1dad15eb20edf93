"""The operator's object store settings: none without a bucket, every wrong variable named
(the operator's SettingsError), the worker Secret's name checked, the secret key never shown,
and the warning when the workers would share the operator's own keys."""

from __future__ import annotations

from pathlib import Path

import pytest

from conveyor.operator.settings import SettingsError, load, shared_credentials_warning
from conveyor.store.loading import DEFAULT_MAX_OBJECT_BYTES

URL = "amqp://u:secret@broker:5672/%2F"
STORE = {"CONVEYOR_S3_ENDPOINT": "http://s3.example:9000", "CONVEYOR_S3_BUCKET": "runs",
         "CONVEYOR_S3_ACCESS_KEY": "operator", "CONVEYOR_S3_SECRET_KEY": "s3cret-key",
         "CONVEYOR_S3_PREFIX": "conveyor"}


def _load(**env: str):  # type: ignore[no-untyped-def]
    return load([], {"CONVEYOR_AMQP_URL": URL, "POD_NAMESPACE": "ops", **env})


def test_without_a_bucket_there_is_no_store_even_with_other_store_variables():
    settings = _load(CONVEYOR_S3_ENDPOINT="http://s3.example:9000",
                     CONVEYOR_S3_ACCESS_KEY="a")
    assert settings.store is None and settings.store_worker_secret is None
    assert settings.store_max_object_bytes == DEFAULT_MAX_OBJECT_BYTES
    assert shared_credentials_warning(settings) is None


def test_a_bucket_makes_the_store_from_every_variable():
    settings = _load(**STORE, CONVEYOR_S3_WORKER_SECRET="conveyor-workers-s3",
                     CONVEYOR_S3_MAX_OBJECT_BYTES="1048576")
    assert settings.store is not None
    assert (settings.store.endpoint, settings.store.bucket, settings.store.prefix) == (
        "http://s3.example:9000", "runs", "conveyor/")
    assert settings.store.secret_key == "s3cret-key"
    assert "s3cret-key" not in repr(settings)
    assert settings.store_worker_secret == "conveyor-workers-s3"
    assert settings.store_max_object_bytes == 1048576
    assert shared_credentials_warning(settings) is None


def test_without_a_worker_secret_the_warning_says_how_to_give_workers_their_own():
    settings = _load(**STORE)
    warning = shared_credentials_warning(settings)
    assert warning is not None
    assert "CONVEYOR_S3_WORKER_SECRET" in warning and "store.workerSecret" in warning
    assert "namespace ops" in warning and "accessKey" in warning and "secretKey" in warning
    assert "allowed only objects under s3://runs/conveyor/" in warning
    assert "s3cret-key" not in warning


@pytest.mark.parametrize(("env", "message"), [
    ({**STORE, "CONVEYOR_S3_SECRET_KEY": ""}, "CONVEYOR_S3_SECRET_KEY is not set"),
    ({**STORE, "CONVEYOR_S3_ACCESS_KEY": ""}, "CONVEYOR_S3_ACCESS_KEY is not set"),
    ({**STORE, "CONVEYOR_S3_BUCKET": "Not_A_Bucket"}, "CONVEYOR_S3_BUCKET: 'Not_A_Bucket'"),
    ({**STORE, "CONVEYOR_S3_ENDPOINT": "ftp://x"}, "CONVEYOR_S3_ENDPOINT: the scheme"),
    ({**STORE, "CONVEYOR_S3_CA_FILE": "/nowhere.pem"}, "CONVEYOR_S3_CA_FILE is set but"),
    ({**STORE, "CONVEYOR_S3_WORKER_SECRET": "Bad_Name"},
     "CONVEYOR_S3_WORKER_SECRET: 'Bad_Name' is not a Secret name"),
    ({"CONVEYOR_S3_WORKER_SECRET": "workers"},
     "CONVEYOR_S3_WORKER_SECRET is set but CONVEYOR_S3_BUCKET is not"),
    ({**STORE, "CONVEYOR_S3_MAX_OBJECT_BYTES": "lots"},
     "CONVEYOR_S3_MAX_OBJECT_BYTES: 'lots' is not a number"),
    ({**STORE, "CONVEYOR_S3_MAX_OBJECT_BYTES": "0"}, "CONVEYOR_S3_MAX_OBJECT_BYTES: must be"),
])
def test_bad_store_settings_are_the_operators_error_naming_the_variable(
        env: dict[str, str], message: str):
    with pytest.raises(SettingsError, match=message) as caught:
        _load(**env)
    assert "s3cret-key" not in str(caught.value)


def test_an_https_endpoint_takes_a_ca_file(tmp_path: Path):
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    settings = _load(**{**STORE, "CONVEYOR_S3_ENDPOINT": "https://s3.example",
                        "CONVEYOR_S3_CA_FILE": str(ca)})
    assert settings.store is not None and settings.store.ca_file == ca

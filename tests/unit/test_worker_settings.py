"""`conveyor-worker` settings and its one-line errors."""

from __future__ import annotations

import pytest

from conveyor.store.loading import DEFAULT_MAX_OBJECT_BYTES
from conveyor.worker import main
from conveyor.worker.errors import WorkerConfigError
from conveyor.worker.settings import load

ENV = {"CONVEYOR_AMQP_URL": "amqp://u:s3cret@h/", "CONVEYOR_QUEUE": "conveyor.a.b.c",
       "CONVEYOR_TASK_TYPE": "c", "CONVEYOR_CONCURRENCY": "4", "HOSTNAME": "pod-1"}


def test_settings_from_the_environment_and_flags_over_it():
    settings = load(["--module", "shop.tasks", "--concurrency", "8"],
                    {**ENV, "CONVEYOR_METRICS_PORT": "0", "CONVEYOR_METRICS_ADDRESS": "10.0.0.7"})
    assert (settings.module, settings.queue, settings.task_type) == (
        "shop.tasks", "conveyor.a.b.c", "c")
    assert settings.concurrency == 8
    assert (settings.metrics_port, settings.metrics_address) == (0, "10.0.0.7")
    assert settings.worker_name == "pod-1"
    assert "s3cret" not in repr(settings)


@pytest.mark.parametrize(("argv", "env", "message"), [
    ([], ENV, "no module given"),
    (["--module", "m"], {**ENV, "CONVEYOR_QUEUE": ""}, "CONVEYOR_QUEUE is not set"),
    (["--module", "m"], {**ENV, "CONVEYOR_AMQP_URL": ""}, "CONVEYOR_AMQP_URL is not set"),
    (["--module", "m"], {**ENV, "CONVEYOR_CONCURRENCY": "many"}, "must be a number"),
    (["--module", "m"], {**ENV, "CONVEYOR_CONCURRENCY": "0"}, "at least 1"),
    (["--module", "m", "--bogus"], ENV, "unrecognized arguments"),
])
def test_a_bad_setting_is_one_error_naming_it(argv: list[str], env: dict[str, str],
                                              message: str):
    with pytest.raises(WorkerConfigError, match=message):
        load(argv, env)


def test_a_missing_module_exits_2_with_one_line(monkeypatch: pytest.MonkeyPatch,
                                                capsys: pytest.CaptureFixture[str]):
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    assert main(["--module", "no_such_module_here"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith("conveyor-worker: cannot import module 'no_such_module_here'")


def test_a_missing_task_type_exits_2_with_one_line(monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[str]):
    for name, value in {**ENV, "CONVEYOR_TASK_TYPE": "nope"}.items():
        monkeypatch.setenv(name, value)
    assert main(["--module", "conveyor.worker"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "defines no task of type 'nope'" in err


STORE_ENV = {"CONVEYOR_S3_BUCKET": "outputs", "CONVEYOR_S3_ACCESS_KEY": "ak",
             "CONVEYOR_S3_SECRET_KEY": "s3cret-key", "CONVEYOR_S3_ENDPOINT": "http://s3:9000"}


def test_without_a_bucket_there_is_no_store_and_outputs_are_capped_as_before():
    settings = load(["--module", "m"], {**ENV, "CONVEYOR_S3_ACCESS_KEY": "ak"})
    assert settings.store is None
    assert (settings.max_output_bytes, settings.inline_output_bytes) == (65536, 4096)
    assert settings.max_object_bytes == DEFAULT_MAX_OBJECT_BYTES


def test_a_bucket_turns_the_store_on_with_its_limits():
    settings = load(["--module", "m"], {**ENV, **STORE_ENV, "CONVEYOR_S3_PREFIX": "conveyor",
                                        "CONVEYOR_INLINE_OUTPUT_BYTES": "1000",
                                        "CONVEYOR_S3_MAX_OBJECT_BYTES": "5000000"})
    assert settings.store is not None
    assert (settings.store.bucket, settings.store.endpoint, settings.store.prefix) == (
        "outputs", "http://s3:9000", "conveyor/")
    assert (settings.inline_output_bytes, settings.max_object_bytes) == (1000, 5_000_000)
    assert "s3cret-key" not in repr(settings)


@pytest.mark.parametrize(("env", "message"), [
    ({**STORE_ENV, "CONVEYOR_S3_SECRET_KEY": ""}, "CONVEYOR_S3_SECRET_KEY is not set"),
    ({**STORE_ENV, "CONVEYOR_S3_BUCKET": "Not_A_Bucket"}, "CONVEYOR_S3_BUCKET: 'Not_A_Bucket'"),
    ({**STORE_ENV, "CONVEYOR_S3_ENDPOINT": "ftp://s3"}, "CONVEYOR_S3_ENDPOINT: the scheme"),
    ({"CONVEYOR_INLINE_OUTPUT_BYTES": "-1"}, "CONVEYOR_INLINE_OUTPUT_BYTES must be at least 0"),
    ({"CONVEYOR_S3_MAX_OBJECT_BYTES": "big"}, "CONVEYOR_S3_MAX_OBJECT_BYTES must be a number"),
])
def test_a_bad_store_setting_is_one_error_naming_it(env: dict[str, str], message: str):
    with pytest.raises(WorkerConfigError, match=message):
        load(["--module", "m"], {**ENV, **env})


def test_a_bad_store_setting_exits_2_with_one_line(monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[str]):
    for name, value in {**ENV, **STORE_ENV, "CONVEYOR_S3_ACCESS_KEY": ""}.items():
        monkeypatch.setenv(name, value)
    assert main(["--module", "conveyor.worker"]) == 2
    assert capsys.readouterr().err == (
        "conveyor-worker: CONVEYOR_S3_ACCESS_KEY is not set: the object store needs it\n")


def test_the_started_window_defaults_to_half_a_second_and_is_checked():
    assert load(["--module", "m"], ENV).started_after == 0.5
    assert load(["--module", "m"], {**ENV, "CONVEYOR_STARTED_AFTER_SECONDS": "0"}
                ).started_after == 0
    with pytest.raises(WorkerConfigError, match="CONVEYOR_STARTED_AFTER_SECONDS"):
        load(["--module", "m"], {**ENV, "CONVEYOR_STARTED_AFTER_SECONDS": "-1"})

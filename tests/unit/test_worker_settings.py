"""`conveyor-worker` settings and its one-line errors."""

from __future__ import annotations

import pytest

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

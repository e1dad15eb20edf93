"""Pure pieces of the operator: Event transitions, settings, trigger run names."""

from __future__ import annotations

import pytest

from conveyor.errors import ConveyorError
from conveyor.operator.runs.kube_events import Post, transitions
from conveyor.operator.settings import load
from conveyor.operator.triggers import run_name

URL = "amqp://u:secret@broker:5672/%2F"


def test_transitions_post_run_phases_and_task_failures_once_each():
    written: dict[str, str] = {}
    status = {"phase": "Running", "progress": "0/2",
              "tasks": [{"name": "a", "phase": "Running"}, {"name": "b", "phase": "Pending"}]}
    assert transitions(written, status) == [
        Post("", "Normal", "RunRunning", "run running (0/2 tasks)")], \
        "a task's ordinary phases are in the status, not Events"
    assert transitions(written, status) == [], "nothing changed, nothing posted"
    status = {"phase": "Running", "tasks": [{"name": "a", "phase": "Retrying",
                                             "message": "boom"}]}
    assert transitions(written, status) == [
        Post("a", "Warning", "TaskRetrying", "task a retrying: boom")]
    status = {"phase": "Failed", "message": "task a failed: boom", "progress": "2/2",
              "tasks": [{"name": "a", "phase": "Failed", "message": "boom"},
                        {"name": "b", "phase": "Skipped"}]}
    assert transitions(written, status) == [
        Post("a", "Warning", "TaskFailed", "task a failed: boom"),
        Post("", "Warning", "RunFailed", "run failed (2/2 tasks): task a failed: boom"),
    ]


def test_settings_come_from_flags_then_env_then_defaults():
    settings = load(["-n", "a", "-n", "b", "--writes-per-second", "7"],
                    {"CONVEYOR_AMQP_URL": URL, "CONVEYOR_WRITES_PER_SECOND": "9",
                     "POD_NAMESPACE": "ops"})
    assert settings.namespaces == ("a", "b")
    assert settings.writes_per_second == 7
    assert settings.lease_namespace == "ops"
    assert settings.leader_lease == "conveyor-operator"
    assert "secret" not in repr(settings.broker)
    env_only = load([], {"CONVEYOR_AMQP_URL": URL, "CONVEYOR_NAMESPACES": "x, y",
                         "CONVEYOR_LEADER_LEASE": "none", "CONVEYOR_HEALTH_PORT": "0"})
    assert env_only.namespaces == ("x", "y")
    assert env_only.leader_lease is None and env_only.health_port == 0


@pytest.mark.parametrize(("env", "message"), [
    ({}, "CONVEYOR_AMQP_URL is not set"),
    ({"CONVEYOR_AMQP_URL": "http://x"}, "scheme must be amqp or amqps"),
    ({"CONVEYOR_AMQP_URL": URL, "CONVEYOR_WRITES_PER_SECOND": "fast"},
     "CONVEYOR_WRITES_PER_SECOND: 'fast' is not a number"),
    ({"CONVEYOR_AMQP_URL": URL, "CONVEYOR_EVENTS_PER_SECOND": "0"},
     "CONVEYOR_EVENTS_PER_SECOND: must be positive"),
])
def test_bad_settings_say_what_is_wrong(env: dict[str, str], message: str):
    with pytest.raises(ConveyorError, match=message):
        load([], env)


def test_trigger_run_names_are_stable_distinct_and_valid():
    name = run_name("orders", "Evt:42/ABC", 0)
    assert name == run_name("orders", "Evt:42/ABC", 0)
    assert name != run_name("orders", "Evt:42/ABC", 1)
    assert name != run_name("orders", "Evt:43/ABC", 0)
    assert len(name) <= 52 and name.replace("-", "").isalnum() and name == name.lower()


def test_the_ca_file_comes_from_the_flag_then_the_env():
    env = {"CONVEYOR_AMQP_URL": "amqps://u:secret@broker/", "CONVEYOR_AMQP_CA_FILE": "/env.pem"}
    assert load([], env).broker.ca_file == "/env.pem"
    assert load(["--amqp-ca-file", "/flag.pem"], env).broker.ca_file == "/flag.pem"
    assert load([], {"CONVEYOR_AMQP_URL": URL}).broker.ca_file is None

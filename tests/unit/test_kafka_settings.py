"""Kafka's settings: off without bootstrap servers (and then the client library is never
needed), every wrong variable named, the SASL password read from its file and never shown,
a clear error naming the extra when the library is missing; the models' one-source rule."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from conveyor.errors import InvalidSpecError
from conveyor.kafka import KafkaSettings, KafkaSettingsError
from conveyor.models import Trigger, WorkflowSpec
from conveyor.operator.settings import SettingsError, load
from conveyor.workflow import compile_workflow
from unit.fakes import workflow_spec

URL = "amqp://u:secret@broker:5672/%2F"
BOOTSTRAP = "kafka-0.kafka:9092,kafka-1.kafka:9092"


def _load(**env: str):  # type: ignore[no-untyped-def]
    return load([], {"CONVEYOR_AMQP_URL": URL, "POD_NAMESPACE": "ops", **env})


def test_without_bootstrap_servers_kafka_is_off() -> None:
    settings = _load()
    assert settings.kafka is None and settings.kafka_run_events_topic is None
    with pytest.raises(SettingsError, match="CONVEYOR_KAFKA_BOOTSTRAP_SERVERS is not"):
        _load(CONVEYOR_KAFKA_RUN_EVENTS_TOPIC="runs")


def test_bootstrap_servers_turn_kafka_on_with_a_group_of_the_install() -> None:
    settings = _load(CONVEYOR_KAFKA_BOOTSTRAP_SERVERS=BOOTSTRAP,
                     CONVEYOR_KAFKA_RUN_EVENTS_TOPIC="conveyor.runs")
    assert settings.kafka is not None
    assert settings.kafka.client_config() == {"bootstrap.servers": BOOTSTRAP,
                                              "security.protocol": "PLAINTEXT"}
    assert settings.kafka_group == "conveyor.ops.conveyor-operator"
    assert settings.kafka_run_events_topic == "conveyor.runs"
    assert settings.kafka_auto_offset_reset == "earliest"
    assert _load(CONVEYOR_KAFKA_BOOTSTRAP_SERVERS=BOOTSTRAP,
                 CONVEYOR_KAFKA_GROUP_ID="shop").kafka_group == "shop"


@pytest.mark.parametrize(("env", "named"), [
    ({"CONVEYOR_KAFKA_BOOTSTRAP_SERVERS": "no port"}, "CONVEYOR_KAFKA_BOOTSTRAP_SERVERS"),
    ({"CONVEYOR_KAFKA_SECURITY_PROTOCOL": "TLS"}, "CONVEYOR_KAFKA_SECURITY_PROTOCOL"),
    ({"CONVEYOR_KAFKA_SECURITY_PROTOCOL": "SASL_SSL"}, "CONVEYOR_KAFKA_SASL_MECHANISM"),
    ({"CONVEYOR_KAFKA_SASL_USERNAME": "u", "CONVEYOR_KAFKA_SASL_PASSWORD": "p"}, "SASL_SSL"),
    ({"CONVEYOR_KAFKA_CA_FILE": "/no/such/ca.pem"}, "CONVEYOR_KAFKA_CA_FILE"),
    ({"CONVEYOR_KAFKA_RUN_EVENTS_TOPIC": "not a topic"}, "CONVEYOR_KAFKA_RUN_EVENTS_TOPIC"),
    ({"CONVEYOR_KAFKA_AUTO_OFFSET_RESET": "middle"}, "CONVEYOR_KAFKA_AUTO_OFFSET_RESET"),
    ({"CONVEYOR_KAFKA_MAX_IN_FLIGHT": "0"}, "CONVEYOR_KAFKA_MAX_IN_FLIGHT"),
    ({"CONVEYOR_KAFKA_SASL_PASSWORD_FILE": "/no/such/file"},
     "CONVEYOR_KAFKA_SASL_PASSWORD_FILE"),
])
def test_bad_kafka_settings_name_the_variable(env: dict[str, str], named: str) -> None:
    with pytest.raises(SettingsError, match=named):
        _load(**{"CONVEYOR_KAFKA_BOOTSTRAP_SERVERS": BOOTSTRAP, **env})


def test_the_sasl_password_comes_from_its_file_and_is_never_shown(tmp_path: Path) -> None:
    secret = tmp_path / "password"
    secret.write_text("hunter2-kafka\n")
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    settings = _load(CONVEYOR_KAFKA_BOOTSTRAP_SERVERS=BOOTSTRAP,
                     CONVEYOR_KAFKA_SECURITY_PROTOCOL="sasl_ssl",
                     CONVEYOR_KAFKA_SASL_MECHANISM="scram-sha-512",
                     CONVEYOR_KAFKA_SASL_USERNAME="conveyor",
                     CONVEYOR_KAFKA_SASL_PASSWORD_FILE=str(secret),
                     CONVEYOR_KAFKA_CA_FILE=str(ca))
    kafka = settings.kafka
    assert kafka is not None and kafka.sasl_password == "hunter2-kafka"
    assert kafka.client_config()["sasl.password"] == "hunter2-kafka"
    assert kafka.client_config()["ssl.ca.location"] == str(ca)
    for shown in (repr(kafka), repr(settings), kafka.masked):
        assert "hunter2" not in shown
    assert kafka.masked == f"{BOOTSTRAP} (SASL_SSL user=conveyor)"


def test_a_ca_file_alone_means_tls(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("x")
    found = KafkaSettings.from_env({"CONVEYOR_KAFKA_BOOTSTRAP_SERVERS": BOOTSTRAP,
                                    "CONVEYOR_KAFKA_CA_FILE": str(ca)})
    assert found is not None and found.tls and found.security_protocol == "SSL"
    with pytest.raises(KafkaSettingsError, match="go together"):
        KafkaSettings(BOOTSTRAP, "SSL", cert_file=ca)


def _operator_without_the_client(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    # The extra is missing: importing confluent_kafka fails, as on an install without it.
    code = ("import sys; sys.modules['confluent_kafka'] = None\n"
            "from conveyor.operator import main\n"
            "from conveyor.operator.settings import load\n"
            "import conveyor.operator.runtime\n"
            "if len(sys.argv) > 1: sys.exit(main(['--health-port', '0']))\n"
            "print(load([]).kafka)\n")
    return subprocess.run([sys.executable, "-c", code, *(["main"] if env else [])],
                          env={"PATH": "/usr/bin:/bin", "CONVEYOR_AMQP_URL": URL, **env},
                          capture_output=True, text=True, timeout=60, check=False)


def test_without_the_extra_and_without_kafka_settings_the_operator_is_as_it_was() -> None:
    result = _operator_without_the_client({})
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "None"


def test_kafka_settings_without_the_extra_stop_the_operator_naming_the_extra() -> None:
    result = _operator_without_the_client({"CONVEYOR_KAFKA_BOOTSTRAP_SERVERS": BOOTSTRAP})
    assert result.returncode == 2
    assert ("CONVEYOR_KAFKA_BOOTSTRAP_SERVERS is set but the Kafka client is not installed: "
            "install Conveyor with its Kafka extra, pip install 'conveyor[kafka]'"
            in result.stderr)


# -- the API: a trigger has one source ---------------------------------------------------------
def test_a_trigger_has_exactly_one_source() -> None:
    for both_or_neither in ({"event": "a.b", "kafka": {"topic": "t"}}, {"inputs": {}}):
        with pytest.raises(ValidationError, match="exactly one source"):
            Trigger.model_validate(both_or_neither)
    with pytest.raises(ValidationError):
        Trigger.model_validate({"kafka": {"topic": "not/a topic"}})


def test_kafka_triggers_compile_their_filter_and_key_or_say_where_they_fail() -> None:
    good = WorkflowSpec.model_validate(workflow_spec({"name": "a"}, triggers=[
        {"kafka": {"topic": "orders", "filter": "${{ record.value.ok }}",
                   "key": "${{ record.key }}"}, "inputs": {"v": "${{ record.value }}"}}]))
    (trigger,) = compile_workflow(good).triggers
    assert trigger.pattern is None and trigger.kafka is not None
    assert trigger.kafka.topic == "orders" and trigger.kafka.filter is not None
    bad = WorkflowSpec.model_validate(workflow_spec({"name": "a"}, triggers=[
        {"kafka": {"topic": "orders", "filter": "${{ record.value. }}", "key": "plain"}}]))
    with pytest.raises(InvalidSpecError) as caught:
        compile_workflow(bad)
    text = str(caught.value)
    assert "spec.triggers[0].kafka.filter" in text and "spec.triggers[0].kafka.key" in text

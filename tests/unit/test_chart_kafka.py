"""The chart's Kafka values (kafka.*), rendered by `helm template`: off by default, the
operator's environment (the SASL user by reference, the password as a mounted file), the CA
mount, the NetworkPolicy egress to the brokers, and the values it refuses. The environment
is read back by the operator's own settings loader, so chart and code cannot drift apart."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from conveyor.operator.settings import load
from support.helm import CHART, helm, set_args, template
from unit.test_chart_store import _container, _env, _resolved

URL = {"amqp.url": "amqp://conveyor:secret@broker:5672/"}
KAFKA = {**URL, "kafka.enabled": True, "kafka.bootstrapServers": "k0:9092,k1:9092",
         "kafka.runEventsTopic": "conveyor.runs"}
SASL = {**KAFKA, "kafka.securityProtocol": "SASL_SSL", "kafka.saslMechanism": "SCRAM-SHA-512",
        "kafka.existingSecret": "kafka-user", "kafka.caSecret": "kafka-ca"}


def _volumes(objects: list[dict[str, Any]]) -> dict[str, Any]:
    [deployment] = [o for o in objects if o["kind"] == "Deployment"]
    return {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}


def test_off_by_default_the_operator_has_no_kafka_settings():
    env = _env(_container(template(URL)))
    assert not [n for n in env if n.startswith("CONVEYOR_KAFKA_")]


def test_plain_kafka_reaches_the_operator():
    env = _env(_container(template({**KAFKA, "kafka.groupId": "shop"})))
    assert env["CONVEYOR_KAFKA_BOOTSTRAP_SERVERS"] == "k0:9092,k1:9092"
    assert env["CONVEYOR_KAFKA_RUN_EVENTS_TOPIC"] == "conveyor.runs"
    assert env["CONVEYOR_KAFKA_GROUP_ID"] == "shop"
    settings = load([], _resolved(env, {"conveyor-amqp": {"url": URL["amqp.url"]}}))
    assert settings.kafka is not None and settings.kafka.security_protocol == "PLAINTEXT"
    assert settings.kafka_group == "shop" and settings.kafka_auto_offset_reset == "earliest"


def test_sasl_credentials_come_by_reference_and_the_password_as_a_file(tmp_path: Path):
    objects = template(SASL)
    container = _container(objects)
    env = _env(container)
    assert env["CONVEYOR_KAFKA_SASL_USERNAME"] == {"secretKeyRef": {"name": "kafka-user",
                                                                    "key": "username"}}
    assert "CONVEYOR_KAFKA_SASL_PASSWORD" not in env  # never in the environment
    assert env["CONVEYOR_KAFKA_SASL_PASSWORD_FILE"] == "/etc/conveyor/kafka/password"
    assert env["CONVEYOR_KAFKA_CA_FILE"] == "/etc/conveyor/kafka-ca/ca.crt"
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    assert mounts["kafka-credentials"]["readOnly"] and mounts["kafka-ca"]["readOnly"]
    volumes = _volumes(objects)
    assert volumes["kafka-credentials"]["secret"] == {
        "secretName": "kafka-user", "items": [{"key": "password", "path": "password"}]}
    assert volumes["kafka-ca"]["secret"]["items"] == [{"key": "ca.crt", "path": "ca.crt"}]
    # What the operator makes of it, with the files where the kubelet would put them.
    (tmp_path / "password").write_text("s3cret")
    (tmp_path / "ca.crt").write_text("ca")
    resolved = _resolved(env, {"conveyor-amqp": {"url": URL["amqp.url"]},
                               "kafka-user": {"username": "conveyor"}})
    resolved.update(CONVEYOR_KAFKA_SASL_PASSWORD_FILE=str(tmp_path / "password"),
                    CONVEYOR_KAFKA_CA_FILE=str(tmp_path / "ca.crt"))
    kafka = load([], resolved).kafka
    assert kafka is not None
    assert (kafka.security_protocol, kafka.sasl_mechanism, kafka.sasl_username,
            kafka.sasl_password) == ("SASL_SSL", "SCRAM-SHA-512", "conveyor", "s3cret")


def test_the_network_policy_lets_the_operator_reach_the_brokers():
    objects = template({**KAFKA, "networkPolicy.enabled": True,
                        "networkPolicy.apiServer.cidrs": ["10.96.0.1/32"],
                        "networkPolicy.apiServer.ports": [443],
                        "networkPolicy.broker.cidrs": ["10.20.0.0/24"],
                        "networkPolicy.kafka.cidrs": ["10.30.0.0/24"]})
    [policy] = [o for o in objects if o["kind"] == "NetworkPolicy"
                and o["metadata"]["labels"].get("app.kubernetes.io/component") == "operator"]
    rules = [r for r in policy["spec"]["egress"]
             if r.get("to") == [{"ipBlock": {"cidr": "10.30.0.0/24"}}]]
    assert [[p["port"] for p in r["ports"]] for r in rules] == [[9092, 9093]]


@pytest.mark.parametrize(("values", "message"), [
    ({**URL, "kafka.enabled": True}, "kafka.bootstrapServers: Kafka triggers need"),
    ({**KAFKA, "kafka.securityProtocol": "SASL_SSL"}, "needs kafka.saslMechanism"),
    ({**KAFKA, "kafka.existingSecret": "u"}, "holds SASL credentials"),
    ({**KAFKA, "kafka.bootstrapServers": "no-port"}, "/kafka/bootstrapServers"),
    ({**KAFKA, "kafka.securityProtocol": "TLS"}, "/kafka/securityProtocol"),
    ({**KAFKA, "kafka.runEventsTopic": "a topic"}, "/kafka/runEventsTopic"),
    ({**KAFKA, "networkPolicy.enabled": True, "networkPolicy.apiServer.cidrs": ["10.0.0.1/32"],
      "networkPolicy.apiServer.ports": [443], "networkPolicy.broker.cidrs": ["10.2.0.0/24"]},
     "networkPolicy.kafka: say where the Kafka brokers are"),
])
def test_bad_kafka_values_are_refused(values: dict[str, Any], message: str):
    result = helm("template", "x", str(CHART), *set_args(values), check=False)
    assert result.returncode != 0
    assert message in result.stderr, result.stderr

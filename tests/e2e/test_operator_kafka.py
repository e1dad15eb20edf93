"""Kafka triggers and the run events' Kafka topic through a real operator, the test bed's
API server and its Kafka broker: a record read twice starts one run (offsets reset, and
records that share a `key`), a record the filter refuses starts none, a value that is not
JSON is logged with its offset and skipped, run lifecycle events reach the Kafka topic, and
a Kafka restart in the middle of a stream loses no record."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conveyor.kafka import KafkaSettings
from conveyor.operator.triggers import run_name
from support import kafka as tools
from support.kube import local_testbed_only
from support.operator import OperatorProcess, running_operator
from support.waiting import eventually
from support.workflows import as_json, run, workflow

pytestmark = pytest.mark.e2e

HACK = Path(__file__).resolve().parents[2] / "hack"


@pytest.fixture
def events_topic() -> str:
    return f"runs-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def kafka_operator(cluster, amqp_url: str, namespace: str, crds: None,  # type: ignore[no-untyped-def]
                   tmp_path: Path, request: pytest.FixtureRequest,
                   kafka_settings: KafkaSettings,
                   events_topic: str) -> Iterator[OperatorProcess]:
    """An operator with Kafka triggers and its run events forwarded to `events_topic`."""
    yield from running_operator(
        cluster, amqp_url, namespace, tmp_path, request,
        CONVEYOR_KAFKA_BOOTSTRAP_SERVERS=kafka_settings.bootstrap_servers,
        CONVEYOR_KAFKA_RUN_EVENTS_TOPIC=events_topic)


def _testbed(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "testbed", *args], check=True, timeout=180,
                   env=dict(os.environ, PYTHONPATH=str(HACK)))


def _group(namespace: str) -> str:
    return f"conveyor.{namespace}.conveyor-operator"  # the default: one group per install


def _runs(kubectl) -> dict[str, dict[str, Any]]:  # type: ignore[no-untyped-def]
    items = json.loads(kubectl("get", "cwr", "-o", "json"))["items"]
    return {r["metadata"]["name"]: r for r in items}


def _triggered(name: str, topic: str, **kafka: Any) -> dict[str, Any]:
    return workflow(name, [{"name": "t", "type": "work", "inputs": {"echo": "${{ inputs }}"}}],
                    triggers=[{"kafka": {"topic": topic, **kafka},
                               "inputs": {"order": "${{ record.value }}"}}])


def _apply_and_wait_subscribed(kubectl, operator: OperatorProcess,  # type: ignore[no-untyped-def]
                               *manifests: dict[str, Any]) -> None:
    kubectl("apply", "-f", "-", stdin=as_json(*manifests))
    topics = sorted({t["kafka"]["topic"] for m in manifests for t in m["spec"]["triggers"]})
    eventually(lambda: f"Kafka trigger topics synced topics={topics}" in operator.tail(400),
               60, what=f"the subscription to {topics}")


def _topic(settings: KafkaSettings, partitions: int = 1) -> str:
    name = f"orders-{uuid.uuid4().hex[:8]}"
    tools.create_topic(settings, name, partitions)
    return name


def test_a_record_read_again_starts_no_second_run(kafka_operator, kubectl, namespace,
                                                  kafka_settings):
    topic = _topic(kafka_settings)
    _apply_and_wait_subscribed(kubectl, kafka_operator, _triggered("kt", topic))
    (written,) = tools.produce(kafka_settings, topic, [{"type": "created", "id": 1}])
    name = run_name("kt", f"{topic}-0-{written.offset}", 0)
    eventually(lambda: name in _runs(kubectl), 60, what="the record's run")
    assert _runs(kubectl)[name]["spec"]["inputs"] == {"order": {"type": "created", "id": 1}}
    eventually(lambda: tools.committed(kafka_settings, _group(namespace), topic) == [1], 30,
               what="the commit after the run exists")
    # The group reads the record again (its offsets moved back while the operator was away).
    kafka_operator.stop()
    tools.reset_offsets(kafka_settings, _group(namespace), topic, 0)
    kafka_operator.start()
    eventually(lambda: f"Run exists for event run={namespace}/{name} record={topic}/0/0"
               in kafka_operator.tail(400), 90, what="the second read to find the run")
    eventually(lambda: tools.committed(kafka_settings, _group(namespace), topic) == [1], 30,
               what="the commit of the second read")
    assert list(_runs(kubectl)) == [name]


def test_records_with_one_key_start_one_run(kafka_operator, kubectl, kafka_settings):
    topic = _topic(kafka_settings)
    _apply_and_wait_subscribed(kubectl, kafka_operator,
                               _triggered("keyed", topic, key="${{ record.value.order }}"))
    tools.produce(kafka_settings, topic, [{"order": "o-7"}, {"order": "o-7", "again": True},
                                          {"order": "o-8"}])
    expected = {run_name("keyed", "o-7", 0), run_name("keyed", "o-8", 0)}
    eventually(lambda: set(_runs(kubectl)) == expected, 60, what="one run per key")
    eventually(lambda: "Run exists for event" in kafka_operator.tail(400), 30,
               what="the second o-7 record to find its run")
    assert set(_runs(kubectl)) == expected


def test_a_filtered_out_record_and_a_malformed_one_start_nothing(kafka_operator, kubectl,
                                                                 namespace, kafka_settings):
    topic = _topic(kafka_settings)
    _apply_and_wait_subscribed(
        kubectl, kafka_operator,
        _triggered("filtered", topic, filter="${{ record.value.type == 'created' }}"))
    written = tools.produce(kafka_settings, topic, [
        {"type": "deleted", "id": 1},  # offset 0: the filter says no
        b'{"type": "created", "id": ',  # offset 1: not JSON
        {"type": "created", "id": 3},  # offset 2: a run
    ])
    assert [w.offset for w in written] == [0, 1, 2]
    later = run_name("filtered", f"{topic}-0-2", 0)
    eventually(lambda: later in _runs(kubectl), 60, what="the run of the later record")
    eventually(lambda: tools.committed(kafka_settings, _group(namespace), topic) == [3], 30,
               what="every record committed")
    assert list(_runs(kubectl)) == [later]  # none for offsets 0 and 1
    log = kafka_operator.tail(400)
    assert (f"Dropped a Kafka record record={topic}/0/1 topic={topic} partition=0 offset=1 "
            "reason=malformed-json") in log
    assert kafka_operator.alive


def test_run_lifecycle_events_reach_the_kafka_topic(kafka_operator, kubectl,
                                                    kafka_settings, events_topic):
    wf = workflow("evented", [{"name": "t", "type": "work", "inputs": {"echo": 1}}])
    kubectl("apply", "-f", "-", stdin=as_json(wf, run("ev-1", "evented")))
    eventually(lambda: _runs(kubectl).get("ev-1", {}).get("status", {}).get("phase")
               == "Succeeded", 120, what="the run to succeed")
    uid = _runs(kubectl)["ev-1"]["metadata"]["uid"]
    found = tools.read(kafka_settings, events_topic, expect=2, timeout=60)
    events = [(m.key(), json.loads(m.value())) for m in found]
    assert [e["phase"] for _, e in events] == ["Running", "Succeeded"]
    assert all(key == uid.encode() and e["runUid"] == uid and e["run"] == "ev-1"
               for key, e in events)
    assert dict(found[1].headers())["conveyor-routing-key"] == b"run.succeeded"


@local_testbed_only  # it restarts the test bed's broker
def test_a_kafka_restart_mid_stream_loses_no_record(kafka_operator, kubectl, namespace,
                                                    kafka_settings):
    topic = _topic(kafka_settings, partitions=3)
    _apply_and_wait_subscribed(kubectl, kafka_operator, _triggered("stream", topic))
    first = tools.produce(kafka_settings, topic, [{"n": n} for n in range(15)])
    try:
        _testbed("kill", "kafka")
    finally:
        _testbed("restart", "kafka")  # Kafka is left running, whatever happened
    second = tools.produce(kafka_settings, topic, [{"n": n} for n in range(15, 30)])
    expected = {run_name("stream", f"{w.topic}-{w.partition}-{w.offset}", 0)
                for w in first + second}
    assert len(expected) == 30
    eventually(lambda: set(_runs(kubectl)) == expected, 120, interval=0.5,
               what="a run for each of the 30 records")
    ends = [0, 0, 0]
    for w in first + second:
        ends[w.partition] = max(ends[w.partition], w.offset + 1)
    eventually(lambda: tools.committed(kafka_settings, _group(namespace), topic, 3) == ends,
               60, what="every record committed")

"""Kafka triggers through the real KafkaTriggers over the fakes (FakeRecordSource, FakeKube):
one run per record however often it is read, nothing committed past a record not done, a
filter that says no starts nothing, a value that is not JSON is dropped with its offset and
committed, never a crash or a loop; and the pure parts (`Offsets`, `view`, `plan`).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from conveyor.broker.settings import BrokerSettings
from conveyor.kafka import Record, TopicPartition
from conveyor.kube import KubeError
from conveyor.operator.metrics import Metrics
from conveyor.operator.reconcile import KAFKA_OFF, Reconciler
from conveyor.operator.settings import Settings
from conveyor.operator.triggers import KafkaTriggers, run_name
from conveyor.operator.triggers.offsets import Offsets
from conveyor.operator.triggers.records import offset_ident, plan, view
from conveyor.operator.triggers.starting import Unusable
from conveyor.operator.workflows import Workflows
from unit.fakes import (
    Bed,
    FakeKube,
    FakeRecordSource,
    drive,
    until,
    workflow_body,
    workflow_spec,
)
from unit.test_operator_worker_store import Pools, _ready

TOPIC = "orders"
SPEC = workflow_spec({"name": "a"}, triggers=[
    {"kafka": {"topic": TOPIC, "filter": "${{ record.value.type == 'created' }}"},
     "inputs": {"order": "${{ record.value }}", "key": "${{ record.key }}"}},
    {"kafka": {"topic": "customers", "key": "${{ record.value.customer }}"},
     "inputs": {"customer": "${{ record.value.customer }}"}},
])


class Router:
    """KafkaTriggers over a FakeRecordSource, with one Workflow of two Kafka triggers."""

    def __init__(self, spec: dict[str, Any] = SPEC) -> None:
        self.kube = FakeKube()
        self.source = FakeRecordSource()
        self.metrics = Metrics()
        self.workflows = Workflows(self.kube)
        assert self.workflows.observe(workflow_body(spec)).problem is None
        self.triggers = KafkaTriggers(self.kube, self.workflows, self.source,
                                      metrics=self.metrics, retry_seconds=0.01)
        self.triggers.start(asyncio.get_running_loop())
        self.triggers.sync()

    async def hand(self, *records: Record) -> None:
        released = self.source.released
        self.source.hand(*records)
        await until(lambda: self.source.released == released + len(records),
                    what="the records to be done")

    def committed(self, topic: str = TOPIC, partition: int = 0) -> int | None:
        return self.source.committed.get(TopicPartition(topic, partition))

    def dropped(self, reason: str) -> float:
        value = self.metrics.registry.get_sample_value(
            "conveyor_trigger_events_dropped_total", {"reason": reason})
        return value or 0.0

    def runs(self) -> list[str]:
        return [r["metadata"]["name"] for r in self.kube.created_runs]


def run(scenario: Any) -> None:
    asyncio.run(asyncio.wait_for(scenario(), 10))


def created(offset: int, **fields: Any) -> bytes:
    return json.dumps({"type": "created", "id": offset, **fields}).encode()


def test_a_record_read_twice_starts_one_run_and_both_reads_commit() -> None:
    async def scenario() -> None:
        r = Router()
        record = r.source.record(TOPIC, 5, created(5), key=b"k-5")
        await r.hand(record)
        assert r.runs() == [run_name("wf", "orders-0-5", 0)]
        assert r.kube.created_runs[0]["spec"]["inputs"] == {
            "order": {"type": "created", "id": 5}, "key": "k-5"}
        annotations = r.kube.created_runs[0]["metadata"]["annotations"]
        assert annotations["conveyor.dev/kafka-record"] == "orders/0/5"
        assert r.committed() == 6
        # A rebalance (or a restart before the commit) reads it again: the run is there.
        r.source.reassign(TOPIC)
        await r.hand(r.source.record(TOPIC, 5, created(5), key=b"k-5"))
        assert len(r.kube.created_runs) == 1
        assert r.committed() == 6 and r.dropped("rejected") == 0
    run(scenario)


def test_records_with_the_same_key_start_one_run() -> None:
    async def scenario() -> None:
        r = Router()
        first = r.source.record("customers", 0, b'{"customer": "c-1"}')
        again = r.source.record("customers", 1, b'{"customer": "c-1", "retry": true}')
        other = r.source.record("customers", 2, b'{"customer": "c-2"}')
        await r.hand(first, again, other)
        assert r.runs() == [run_name("wf", "c-1", 1), run_name("wf", "c-2", 1)]
        assert r.committed("customers") == 3
    run(scenario)


def test_a_record_the_filter_refuses_starts_nothing_and_is_committed() -> None:
    async def scenario() -> None:
        r = Router()
        await r.hand(r.source.record(TOPIC, 0, json.dumps({"type": "deleted"}).encode()))
        assert r.runs() == [] and r.committed() == 1
        await r.hand(r.source.record(TOPIC, 1, created(1)))
        assert r.runs() == [run_name("wf", "orders-0-1", 0)] and r.committed() == 2
        assert r.dropped("filter-failed") == 0  # refused is not failed
    run(scenario)


@pytest.mark.parametrize(("value", "reason"), [
    (b"{not json", "malformed-json"),
    (b"\xff\xfe", "malformed-json"),
    (b"[" * 100_000, "too-deep"),
    (b"1" * (1024 * 1024 + 1), "too-large"),
])
def test_an_unreadable_value_is_dropped_with_its_offset_and_committed(
        value: bytes, reason: str, caplog: pytest.LogCaptureFixture) -> None:
    async def scenario() -> None:
        r = Router()
        await r.hand(r.source.record(TOPIC, 3, value, partition=2))
        assert r.runs() == [] and r.dropped(reason) == 1
        assert r.committed(partition=2) == 4
        await r.hand(r.source.record(TOPIC, 4, created(4), partition=2))
        assert r.runs() == [run_name("wf", "orders-2-4", 0)]
    run(scenario)
    assert (f"Dropped a Kafka record record=orders/2/3 topic=orders partition=2 offset=3 "
            f"reason={reason}") in caplog.text


def test_a_filter_error_or_an_empty_key_drops_that_trigger_only() -> None:
    async def scenario() -> None:
        r = Router()
        await r.hand(r.source.record(TOPIC, 0, b'"just text"'))  # record.value.type fails
        assert r.dropped("filter-failed") == 1 and r.committed() == 1
        other = Router(workflow_spec({"name": "a"}, triggers=[
            {"kafka": {"topic": TOPIC, "filter": "${{ record.value.type }}"}}]))
        await other.hand(other.source.record(TOPIC, 0, created(0)))  # "created": no bool
        assert other.dropped("filter-failed") == 1 and other.runs() == []
        await r.hand(r.source.record("customers", 0, b'{"customer": ""}'))
        assert r.dropped("key-failed") == 1 and r.committed("customers") == 1
        assert r.runs() == []
    run(scenario)


def test_an_api_server_that_fails_holds_the_commit_until_the_run_exists() -> None:
    async def scenario() -> None:
        r = Router()
        r.kube.fail_next("create_run", KubeError("create: unavailable", 503), times=3)
        r.kube.block("create_run")
        r.source.hand(r.source.record(TOPIC, 0, created(0)),
                      r.source.record(TOPIC, 1, b"{bad"))
        await until(lambda: r.source.released == 1, what="the malformed record to be done")
        assert r.committed() is None  # record 1 is done, record 0 is not: nothing moves
        r.kube.unblock("create_run")
        await until(lambda: r.source.released == 2, what="record 0 to be done")
        assert r.runs() == [run_name("wf", "orders-0-0", 0)] and r.committed() == 2
        assert r.kube.faults_left("create_run") == 0  # tried again until it worked
    run(scenario)


def test_an_api_server_that_refuses_for_good_drops_the_record() -> None:
    async def scenario() -> None:
        r = Router()
        r.kube.fail_next("create_run", KubeError("create: invalid", 422))
        await r.hand(r.source.record(TOPIC, 0, created(0)))
        assert r.dropped("rejected") == 1 and r.committed() == 1
        r.kube.fail_next("create_run", ValueError("unforeseen"))
        await r.hand(r.source.record(TOPIC, 1, created(1)))
        assert r.dropped("failed") == 1 and r.committed() == 2
    run(scenario)


def test_the_subscription_follows_the_workflows() -> None:
    async def scenario() -> None:
        r = Router()
        assert r.source.subscriptions == [frozenset({TOPIC, "customers"})]
        r.triggers.sync()
        assert len(r.source.subscriptions) == 1  # unchanged: not subscribed again
        spec = workflow_spec({"name": "a"}, triggers=[
            {"event": "order.created"}, {"kafka": {"topic": "refunds"}}])
        r.workflows.observe(workflow_body(spec, generation=2))
        r.triggers.sync()
        assert r.source.subscriptions[-1] == frozenset({"refunds"})
        r.workflows.forget("ns", "wf")
        r.triggers.sync()
        assert r.source.subscriptions[-1] == frozenset()
    run(scenario)


def test_no_kafka_trigger_subscribes_to_nothing() -> None:
    async def scenario() -> None:
        r = Router(workflow_spec({"name": "a"}, triggers=[{"event": "order.created"}]))
        assert r.source.subscriptions == []
    run(scenario)


# -- the pure parts ---------------------------------------------------------------------------
def rec(offset: int, partition: int = 0, epoch: int = 0) -> Record:
    return Record(TOPIC, partition, offset, None, b"{}", epoch=epoch)


def test_offsets_never_pass_a_record_that_is_not_done() -> None:
    offsets = Offsets()
    for o in (5, 6, 7):
        offsets.arrived(rec(o))
    assert offsets.done(rec(7)) is None  # 5 and 6 pending: nothing may be committed
    assert offsets.done(rec(5)) == 6  # 6 pending: up to it
    assert offsets.done(rec(6)) == 8
    assert offsets.waiting() == 0
    offsets.arrived(rec(8))
    assert offsets.done(rec(8)) == 9


def test_offsets_keep_partitions_and_assignments_apart() -> None:
    offsets = Offsets()
    offsets.arrived(rec(1, partition=0))
    offsets.arrived(rec(1, partition=1))
    offsets.arrived(rec(1, epoch=1))  # the same record under a new assignment
    assert offsets.done(rec(1, partition=1)) == 2
    assert offsets.done(rec(1, epoch=1)) == 2
    assert offsets.waiting() == 1
    assert offsets.done(rec(1)) == 2
    assert offsets.done(rec(1)) is None  # done twice: nothing the second time


def test_the_record_as_cel_sees_it() -> None:
    record = Record(TOPIC, 2, 9, b"k\xff", b'{"a": [1]}', (("h", b"v"), ("h", b"w"),
                                                        ("empty", None)), 123)
    assert view(record) == {"topic": TOPIC, "partition": 2, "offset": 9, "key": "k\ufffd",
                            "headers": {"h": "w", "empty": ""}, "value": {"a": [1]},
                            "timestamp": 123}
    bare = view(Record(TOPIC, 0, 0, None, None))
    assert bare["key"] == "" and bare["value"] is None and bare["headers"] == {}
    with pytest.raises(Unusable) as caught:
        view(Record(TOPIC, 0, 0, None, b"text"))
    assert caught.value.reason == "malformed-json"


def test_plan_names_runs_by_place_or_by_key() -> None:
    async def scenario() -> None:
        r = Router()
        entries = r.workflows.entries()
        record = Record(TOPIC, 1, 4, None, created(4))
        starts, failed = plan(entries, record, view(record))
        assert [(s.index, s.ident) for s in starts] == [(0, offset_ident(record))] == [
            (0, "orders-1-4")]
        assert failed == []
        keyed = Record("customers", 0, 0, None, b'{"customer": 42}')
        starts, _ = plan(entries, keyed, view(keyed))
        assert [s.ident for s in starts] == ["42"]
        other = Record("elsewhere", 0, 0, None, b"{}")
        assert plan(entries, other, view(other)) == ([], [])
    run(scenario)


def test_kafka_triggers_without_kafka_settings_say_so_in_ready() -> None:
    async def scenario() -> None:
        bed = Bed()
        settings = Settings(broker=BrokerSettings(url="amqp://u:p@localhost/"))
        reconciler = Reconciler(settings, bed.kube, bed.workflows, Pools(settings, bed),
                                bed.manager)
        await reconciler.reconcile(workflow_body(SPEC))
        ready = _ready(bed.kube)
        assert (ready["status"], ready["reason"]) == ("True", "Provisioned")
        assert ready["message"] == (f"1 worker pools provisioned; {KAFKA_OFF}: its Kafka "
                                    "triggers start no run")
        assert [e.kind for e in bed.kube.events] == ["Warning"]

    drive(scenario)

"""External events on the triggers queue, through the real TriggerRouter over the fakes:
malformed and oversized events are dropped with a reason (a log line and a metric), never
crash the router, never stay unsettled and never loop; good events still start their runs.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from conveyor.kube import KubeError
from conveyor.operator.metrics import Metrics
from conveyor.operator.triggers import MAX_EVENT_BYTES, TriggerRouter
from conveyor.operator.workflows import Workflows
from unit.fakes import FakeDelivery, FakeKube, FakeLink, until, workflow_body, workflow_spec

QUEUE = "conveyor.operator.test.triggers"
SPEC = workflow_spec({"name": "a"}, triggers=[
    {"event": "order.*", "inputs": {"order": "${{ event }}"}},
    {"event": "order.created", "inputs": {"id": "${{ event.id }}"}},
])


class Router:
    """A TriggerRouter consuming from a FakeLink, with one Workflow whose triggers match."""

    def __init__(self) -> None:
        self.kube = FakeKube()
        self.link = FakeLink()
        self.metrics = Metrics()
        workflows = Workflows(self.kube)
        assert workflows.observe(workflow_body(SPEC)).problem is None
        self.router = TriggerRouter(self.kube, workflows, None, self.link,  # type: ignore[arg-type]
                                    QUEUE, metrics=self.metrics, retry_seconds=0.01)
        self.router.start(asyncio.get_running_loop())

    async def send(self, body: bytes, key: str = "order.created",
                   ident: str | None = "e1") -> FakeDelivery:
        delivery = FakeDelivery(body, key, ident)
        self.link.deliver(delivery, QUEUE)
        await until(lambda: delivery.settled, what="the event to be settled")
        return delivery

    def dropped(self, reason: str) -> float:
        value = self.metrics.registry.get_sample_value(
            "conveyor_trigger_events_dropped_total", {"reason": reason})
        return value or 0.0


def run(scenario: Any) -> None:
    asyncio.run(asyncio.wait_for(scenario(), 10))


def test_malformed_and_oversized_events_are_dropped_with_a_reason() -> None:
    async def scenario() -> None:
        r = Router()
        cases = [
            (b"x" * (MAX_EVENT_BYTES + 1), "too-large"),
            (b"[" * 100_000, "too-deep"),
            (b"\xff\xfe not utf-8", "inputs-failed"),  # text: `event.id` has nothing to read
        ]
        for body, reason in cases:
            delivery = await r.send(body, ident=reason)
            assert delivery.settlements == ["ack"], reason
            assert r.dropped(reason) == 1, reason
        assert r.kube.created_runs[0]["spec"]["inputs"] == {
            "order": "\ufffd\ufffd not utf-8"}  # the trigger that could render still started
        good = await r.send(json.dumps({"id": 7}).encode(), ident="good")
        assert good.settlements == ["ack"]
        assert [run["spec"]["inputs"] for run in r.kube.created_runs[1:]] == [
            {"order": {"id": 7}}, {"id": 7}]
    run(scenario)


def test_an_api_server_that_refuses_for_good_drops_the_event_one_that_fails_requeues() -> None:
    async def scenario() -> None:
        r = Router()
        r.kube.fail_next("create_run", KubeError("create: invalid", 422))
        refused = await r.send(b"{}", key="order.shipped", ident="refused")
        assert refused.settlements == ["ack"] and r.dropped("rejected") == 1
        r.kube.fail_next("create_run", KubeError("create: unavailable", 503))
        busy = await r.send(b"{}", key="order.shipped", ident="busy")
        assert busy.settlements == ["requeue"]
        again = await r.send(b"{}", key="order.shipped", ident="busy")  # the redelivery
        assert again.settlements == ["ack"] and len(r.kube.created_runs) == 1
        r.kube.fail_next("create_run", ValueError("unforeseen"))
        odd = await r.send(b"{}", key="order.shipped", ident="odd")
        assert odd.settlements == ["ack"] and r.dropped("failed") == 1
    run(scenario)


@settings(max_examples=200)
@given(body=st.one_of(st.binary(max_size=200), st.text(max_size=100).map(str.encode),
                      st.recursive(st.none() | st.integers() | st.text(max_size=5),
                                   lambda inner: st.lists(inner, max_size=3)
                                   | st.dictionaries(st.text(max_size=3), inner, max_size=3),
                                   max_leaves=10).map(lambda v: json.dumps(v).encode())),
       key=st.sampled_from(["order.created", "order.x", "task.started", "other"]),
       ident=st.one_of(st.none(), st.text(max_size=300)))
def test_any_event_is_settled_once_and_the_router_goes_on(body: bytes, key: str,
                                                          ident: str | None) -> None:
    async def scenario() -> None:
        r = Router()
        delivery = await r.send(body, key, ident)
        assert delivery.settlements == ["ack"]
        for created in r.kube.created_runs:
            assert len(created["metadata"]["name"]) <= 63
        after = await r.send(b'{"id": 1}', "order.created", "after")
        assert after.settlements == ["ack"]
    run(scenario)

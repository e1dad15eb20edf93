"""A Worker (serving.py) whose attempt waits on the object store: heartbeats keep flowing
while an input is downloaded or an output uploaded, and the final event carries the
reference. The link is an in-memory stand-in that confirms every publish at once; the store
holds the call until the test lets it go."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable
from typing import Any, cast

import pytest

from conveyor.broker import Delivery, Link
from conveyor.broker.codec import decode_event, encode_task
from conveyor.broker.confirms import Confirmation
from conveyor.models import TaskEvent
from conveyor.store import Values
from conveyor.stored import is_ref
from conveyor.worker import context
from conveyor.worker.metrics import Metrics
from conveyor.worker.offload import Offload
from conveyor.worker.serving import Worker
from support.waiting import eventually
from unit.blobs import MemoryBlobs
from unit.test_worker_offload import BUCKET, MESSAGE, WITH_STORE, Recorder, sized


def _confirmed() -> Confirmation:
    confirmation = Confirmation()
    confirmation.confirm()
    return confirmation


class ConfirmingLink:
    """What a Worker uses of a Link: every publish confirmed at once, one consumer."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.bodies: list[bytes] = []
        self.on_delivery: Callable[[Delivery], None] | None = None

    def publish(self, exchange: str, routing_key: str, body: bytes, **_: Any) -> Confirmation:
        with self._lock:
            self.bodies.append(body)
        return _confirmed()

    def consume(self, queue: str, prefetch: int,
                on_delivery: Callable[[Delivery], None]) -> None:
        self.on_delivery = on_delivery

    def cancel(self) -> Confirmation:
        return _confirmed()

    def call_later(self, delay: float, fn: Callable[[], None]) -> None:
        raise AssertionError("nothing is retried: every publish is confirmed")

    def events(self, status: str) -> list[TaskEvent]:
        with self._lock:
            bodies = list(self.bodies)
        return [e for e in map(decode_event, bodies) if e.status == status]


class OneDelivery:
    def __init__(self, body: bytes) -> None:
        self.body = body
        self.headers: dict[str, Any] = {}
        self.message_id = None
        self.delivery_count = 0
        self.settlements: list[str] = []

    def ack(self) -> None:
        self.settlements.append("ack")

    def requeue(self) -> None:
        self.settlements.append("requeue")


@pytest.mark.parametrize("held", ["get", "put"])
def test_heartbeats_flow_while_the_store_holds_the_attempt(held: str,
                                                           monkeypatch: pytest.MonkeyPatch):
    # Heartbeats every 50 ms instead of every second: three of them take a moment, not 3 s.
    monkeypatch.setattr(context, "MIN_HEARTBEAT_INTERVAL", 0.01)
    blobs = MemoryBlobs(BUCKET)
    upstream = Values(blobs).save("ns/wf/uid/upstream/-/1/outputs.json", sized(10_000))
    gate = blobs.hold(held)
    settings = dataclasses.replace(WITH_STORE, heartbeat_seconds=0.05)
    recorder = Recorder(sized(6000))  # over the inline limit: uploaded
    link = ConfirmingLink()
    worker = Worker(settings, recorder.definition, cast(Link, link), Metrics("kind"),
                    Offload(settings, blobs))
    worker.start()
    try:
        delivery = OneDelivery(encode_task(MESSAGE.model_copy(
            update={"inputs": {"report": upstream}})))
        assert link.on_delivery is not None
        link.on_delivery(cast(Delivery, delivery))

        eventually(blobs.waiting.is_set, 10, 0.01, what=f"the {held} held")
        eventually(lambda: len(link.events("heartbeat")) >= 3, 10, 0.01,
                   what=f"heartbeats while the {held} is held")
        assert not link.events("succeeded") and delivery.settlements == []

        gate.set()
        [succeeded] = eventually(lambda: link.events("succeeded"), 10, 0.01,
                                 what="the succeeded event")
        assert is_ref(succeeded.outputs)
        assert recorder.seen == [{"report": sized(10_000)}]
        eventually(lambda: delivery.settlements == ["ack"], 10, 0.01, what="the ack")
    finally:
        gate.set()
        worker.shutdown(1)

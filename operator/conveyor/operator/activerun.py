"""The operator's record of one WorkflowRun it drives, and of what the record waits for."""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass
from typing import Any

from conveyor import names
from conveyor.broker import Delivery
from conveyor.messaging.confirms import Confirmation
from conveyor.runstate import RunState


@dataclass(frozen=True)
class RunRef:
    namespace: str
    name: str
    uid: str
    workflow: str

    def involved(self) -> dict[str, str]:
        return {"apiVersion": names.API_VERSION, "kind": names.RUN_KIND,
                "namespace": self.namespace, "name": self.name, "uid": self.uid}


@dataclass
class Send:
    """A publish whose confirm must arrive before the status that records it is written."""

    exchange: str
    routing_key: str
    body: bytes
    message_id: str
    mandatory: bool
    confirmation: Confirmation


class ActiveRun:
    __slots__ = ("acks", "admitted", "cancel_sent", "created", "dirty", "flush_at", "flushing",
                 "inputs", "last_write", "ref", "reuse", "sends", "state", "timer", "waiting",
                 "written_tasks")

    def __init__(self, ref: RunRef, inputs: dict[str, Any], created: str,
                 reuse: dict[str, Any] | None = None) -> None:
        self.ref = ref
        self.inputs = inputs
        self.reuse = reuse or {}  # spec.reuse: outputs of an earlier run's succeeded tasks
        self.created = created
        self.state: RunState | None = None
        self.waiting: tuple[str, str] | None = None  # (reason, message) while not started
        self.admitted = False
        self.cancel_sent = False
        self.dirty = False
        self.flushing = False
        self.flush_at: asyncio.TimerHandle | None = None
        self.acks: list[Delivery] = []
        self.sends: list[Send] = []
        self.last_write = 0.0
        self.timer: asyncio.TimerHandle | None = None
        self.written_tasks: dict[str, str] = {}

    @property
    def phase(self) -> str:
        return self.state.phase if self.state is not None else "Pending"



async def settled(confirmations: list[Confirmation]) -> None:
    """Wait until the broker settled every one (confirmed or failed), without a thread or an
    asyncio future per message: the last one to settle wakes the loop once."""
    pending = [c for c in confirmations if not c.done()]
    if not pending:
        return
    loop = asyncio.get_running_loop()
    done: asyncio.Future[None] = loop.create_future()
    lock = threading.Lock()
    remaining = [len(pending)]

    def wake() -> None:
        if not done.done():
            done.set_result(None)

    def one_settled(_: Confirmation) -> None:
        with lock:
            remaining[0] -= 1
            last = remaining[0] == 0
        if last:
            loop.call_soon_threadsafe(wake)

    for confirmation in pending:
        confirmation.add_done_callback(one_settled)
    await done

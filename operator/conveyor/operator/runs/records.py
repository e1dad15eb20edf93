"""The operator's record of one WorkflowRun it drives, and of what the record waits for:
the publishes whose confirms must come, the worker events to ack once the status is written."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

from conveyor import names
from conveyor.broker.confirms import Confirmation
from conveyor.engine import RunState
from conveyor.operator.seams import Delivery


@dataclass(frozen=True)
class RunRef:
    """Which WorkflowRun: where it is, its uid, and the Workflow it runs."""

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
    """One run the operator drives: its engine state (None while it cannot start yet) and
    what stands between that state and the API server (dirty, pending acks and sends)."""

    __slots__ = (
        "acks",
        "activating",
        "admitted",
        "cancel_sent",
        "created",
        "dirty",
        "flush_at",
        "flushing",
        "inputs",
        "last_write",
        "reactivate",
        "ref",
        "reuse",
        "seen_at",
        "seen_status",
        "sends",
        "state",
        "store_failing",
        "timer",
        "waiting",
        "written_tasks",
    )

    def __init__(self, ref: RunRef, inputs: dict[str, Any], created: str,
                 reuse: dict[str, Any] | None = None,
                 seen_status: dict[str, Any] | None = None) -> None:
        self.ref = ref
        # The status the run was first seen with: what every activation rebuilds it from,
        # whichever path starts it (its first sight, a retry, its Workflow appearing).
        self.seen_status = seen_status or {}
        self.activating = False  # an activation is under way: no second one meanwhile
        # Its Workflow changed during that activation: activate once more when it ends, for
        # an activation that found the Workflow not ready may still be writing so.
        self.reactivate = False
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
        self.last_write = 0.0  # monotonic; 0: never written by this operator
        self.seen_at = time.monotonic()
        self.timer: asyncio.TimerHandle | None = None
        self.written_tasks: dict[str, str] = {}
        self.store_failing: float | None = None  # since when item chunks fail to be written

    @property
    def phase(self) -> str:
        return self.state.phase if self.state is not None else "Pending"

"""In-memory fakes of the operator's seams (`conveyor.operator.seams`), with fault injection,
and a bed that wires a real `RunManager` over them.

In the spirit of httpx's `MockTransport`: the operator talks to one narrow interface per
adapter, so a test hands it these objects instead and nothing is monkeypatched.

    FakeKube      every `KubeApi` call, in memory: statuses written, Events posted, runs
                  deleted, ConfigMaps...; `fail_next` makes the next calls of a method raise,
                  `block` holds them in flight until released, `slow_next` delays their
                  answers; `calls` lists every call
    FakeLink      a `BrokerLink`: every publish with its `Confirmation`, auto-confirmed or held
                  for the test to `confirm` / `fail`; `deliver` hands a message to the consumer
    FakeDelivery  a `Delivery` that records how it was settled; `worker_event` builds one of a
                  worker's `TaskEvent`s, `redeliver` the same message again
    FakeRecordSource  a `RecordSource` (Kafka consumer): `hand` gives records to the operator
                  as the consumer thread would, `reassign` starts a new assignment (epoch),
                  `committed` is what a real group would have stored
    FakeRecordSink  a `RecordSink` (Kafka producer): every record produced; delivered at once,
                  or failed (`fail_next`), or held until `settle`
    Journal       one ordered log shared by the three, for assertions on what came first
    Bed           a real RunManager (Flusher, Actor, Admission, Expiry) over the fakes, with
                  tiny intervals; `until` polls a condition with a deadline on the running loop

Make a Bed inside the coroutine that `asyncio.run` drives: the run loop needs a running loop.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import defaultdict, deque
from collections.abc import Callable, Coroutine, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from conveyor import names
from conveyor.broker.codec import decode_task, encode_event
from conveyor.broker.confirms import Confirmation
from conveyor.broker.errors import BrokerError
from conveyor.broker.settings import BrokerSettings
from conveyor.kafka import KafkaError, Record, TopicPartition
from conveyor.kube import KubeError
from conveyor.kube.client import DeploymentState
from conveyor.models import TaskEvent, TaskMessage
from conveyor.operator.metrics import Metrics
from conveyor.operator.runs import RunManager
from conveyor.operator.runs.records import ActiveRun
from conveyor.operator.runs.storage import RunStorage
from conveyor.operator.seams import Delivery
from conveyor.operator.settings import Settings
from conveyor.operator.workflows import Workflows

T = TypeVar("T")

NAMESPACE = "ns"
WORKFLOW = "wf"
RUNS = "workflowruns"
EVENTS_QUEUE = "conveyor.operator.test.events"
IMAGE = "example.com/workers:1"


# -- one log of everything, in order --------------------------------------------------------
@dataclass(frozen=True)
class Entry:
    """One thing that happened: `what` is `kube.<method>`, `publish`, `confirmed`, `failed`
    (a confirm), `ack` or `requeue` (a delivery); `key` is the object's name for Kubernetes
    calls and the message id otherwise; `data` what came with it (the status written...)."""

    seq: int
    what: str
    key: str
    data: Any = None
    error: BaseException | None = None
    at: float = field(default_factory=time.time)  # wall clock, as statuses' times are

    @property
    def ok(self) -> bool:
        return self.error is None


class Journal:
    """The fakes' shared, ordered log."""

    def __init__(self) -> None:
        self.entries: list[Entry] = []

    def add(self, what: str, key: str, data: Any = None,
            error: BaseException | None = None) -> Entry:
        entry = Entry(len(self.entries), what, key, data, error)
        self.entries.append(entry)
        return entry

    def of(self, what: str, key: str | None = None, *, ok: bool | None = None) -> list[Entry]:
        return [e for e in self.entries if e.what == what and (key is None or e.key == key)
                and (ok is None or e.ok == ok)]

    def first(self, what: str, key: str | None = None, *, ok: bool | None = None,
              where: Callable[[Entry], bool] = lambda e: True) -> Entry | None:
        return next((e for e in self.of(what, key, ok=ok) if where(e)), None)

    def find(self, what: str, key: str | None = None, *, ok: bool | None = None,
             where: Callable[[Entry], bool] = lambda e: True) -> Entry:
        """The first such entry; AssertionError when there is none."""
        found = self.first(what, key, ok=ok, where=where)
        assert found is not None, f"no {what} {key or ''} in the journal"
        return found


def _stored(value: Any) -> Any:
    """`value` through JSON, as the API server would store it (and detached from the caller)."""
    return json.loads(json.dumps(value))


# -- Kubernetes -----------------------------------------------------------------------------
@dataclass(frozen=True)
class Call:
    """One call the operator made of the Kubernetes fake, and what it raised (if anything)."""

    method: str
    args: tuple[Any, ...]
    error: BaseException | None = None


@dataclass(frozen=True)
class PostedEvent:
    involved: dict[str, str]
    kind: str
    reason: str
    message: str


class FakeKube:
    """Implements `conveyor.operator.seams.KubeApi` in memory.

    Fault injection: `fail_next(method, error, times=n)` makes the next `n` calls of `method`
    raise `error` (any exception: a `KubeError` as the real facade raises, or something the
    facade would never let through, to check the operator copes anyway); `block(method)`
    holds its calls in flight until `unblock(method)`, `slow_next(method, seconds...)` delays
    the next answers; `gone(namespace, name)` makes the
    WorkflowRun's status writes answer 404. `calls` holds every call, failed ones too.
    """

    def __init__(self, journal: Journal | None = None) -> None:
        self.journal = journal or Journal()
        self.calls: list[Call] = []
        self._faults: dict[str, deque[BaseException]] = defaultdict(deque)
        self._gates: dict[str, asyncio.Event] = {}
        self._latency: dict[str, deque[float]] = defaultdict(deque)
        self.waiting: dict[str, int] = defaultdict(int)  # calls held by a block, by method
        self.statuses: dict[tuple[str, str, str], list[dict[str, Any]]] = defaultdict(list)
        self.patches: dict[tuple[str, str, str], list[dict[str, Any]]] = defaultdict(list)
        self.events: list[PostedEvent] = []
        self.deleted_runs: list[tuple[str, str, str | None]] = []
        self.created_runs: list[dict[str, Any]] = []
        self.deployments: dict[tuple[str, str], dict[str, Any]] = {}
        self.ready_replicas: dict[tuple[str, str], int] = {}
        self.deleted_deployments: list[tuple[str, str]] = []
        self.secrets: dict[tuple[str, str], dict[str, Any]] = {}
        self.config_maps: dict[tuple[str, str], dict[str, Any]] = {}
        self.pods: dict[tuple[str, str], dict[str, Any]] = {}  # labels, annotations, status
        self.objects: dict[str, list[dict[str, Any]]] = defaultdict(list)  # list_custom
        self._gone: set[tuple[str, str]] = set()

    # -- fault injection ----------------------------------------------------------------------
    def fail_next(self, method: str, *errors: BaseException, times: int = 1) -> None:
        """The next calls of `method` raise `errors` in order, each `times` times."""
        if not callable(getattr(self, method, None)) or method.startswith("_"):
            raise AttributeError(f"FakeKube has no call {method!r}")
        for error in errors:
            self._faults[method].extend([error] * times)

    def slow_next(self, method: str, *seconds: float) -> None:
        """The next calls of `method` take these many seconds each to answer (a slow API
        server: calls made in one order may complete in another)."""
        self._latency[method].extend(seconds)

    def faults_left(self, method: str) -> int:
        return len(self._faults[method])

    def block(self, method: str) -> None:
        """Hold every call of `method` in flight (recorded when it completes) until unblocked."""
        self._gates[method] = asyncio.Event()

    def unblock(self, method: str) -> None:
        gate = self._gates.pop(method, None)
        if gate is not None:
            gate.set()

    def gone(self, namespace: str, name: str) -> None:
        """The WorkflowRun was deleted: writes of its status answer 404."""
        self._gone.add((namespace, name))

    # -- what the operator wrote --------------------------------------------------------------
    def written(self, name: str, namespace: str = NAMESPACE,
                plural: str = RUNS) -> list[dict[str, Any]]:
        """Statuses of the object that `replace_status` wrote successfully, oldest first."""
        return self.statuses[(plural, namespace, name)]

    def last_status(self, name: str, namespace: str = NAMESPACE,
                    plural: str = RUNS) -> dict[str, Any] | None:
        written = self.written(name, namespace, plural)
        return written[-1] if written else None

    def calls_of(self, method: str, *, ok: bool | None = None) -> list[Call]:
        return [c for c in self.calls if c.method == method
                and (ok is None or (c.error is None) == ok)]

    # -- plumbing -------------------------------------------------------------------------------
    async def _enter(self, method: str, key: str, args: tuple[Any, ...],
                     data: Any = None) -> None:
        """Every call: wait if blocked or slow, then fail if told to, and record it."""
        gate = self._gates.get(method)
        if gate is not None:
            self.waiting[method] += 1
            try:
                await gate.wait()
            finally:
                self.waiting[method] -= 1
        if self._latency[method]:
            await asyncio.sleep(self._latency[method].popleft())
        error: BaseException | None = None
        if self._faults[method]:
            error = self._faults[method].popleft()
        elif method in ("replace_status", "patch_status") and args[0] == RUNS and \
                (args[1], args[2]) in self._gone:
            error = KubeError(f"{method} of {args[2]}: not found", 404)
        self.calls.append(Call(method, args, error))
        self.journal.add(f"kube.{method}", key, data, error)
        if error is not None:
            raise error

    # -- KubeApi --------------------------------------------------------------------------------
    async def apply_deployment(self, manifest: Mapping[str, Any]) -> None:
        key = _where(manifest)
        await self._enter("apply_deployment", key[1], (_stored(manifest),))
        self.deployments[key] = _stored(manifest)

    async def apply_secret(self, manifest: Mapping[str, Any]) -> None:
        key = _where(manifest)
        await self._enter("apply_secret", key[1], (_stored(manifest),))
        self.secrets[key] = _stored(manifest)

    async def apply_config_map(self, manifest: Mapping[str, Any]) -> None:
        key = _where(manifest)
        await self._enter("apply_config_map", key[1], (_stored(manifest),))
        self.config_maps[key] = _stored(manifest)

    async def get_config_map_data(self, namespace: str, name: str) -> dict[str, str] | None:
        await self._enter("get_config_map_data", name, (namespace, name))
        found = self.config_maps.get((namespace, name))
        return None if found is None else dict(found.get("data") or {})

    async def get_secret_data(self, namespace: str, name: str) -> dict[str, str] | None:
        await self._enter("get_secret_data", name, (namespace, name))
        found = self.secrets.get((namespace, name))
        if found is None:
            return None
        return {**(found.get("data") or {}), **(found.get("stringData") or {})}

    async def list_deployments(self, namespace: str,
                               labels: Mapping[str, str]) -> list[DeploymentState]:
        await self._enter("list_deployments", "", (namespace, dict(labels)))
        found = []
        for (ns, name), manifest in self.deployments.items():
            have = manifest["metadata"].get("labels") or {}
            if ns == namespace and all(have.get(k) == v for k, v in labels.items()):
                found.append(DeploymentState(
                    name=name, workflow=have.get(names.LABEL_WORKFLOW, ""),
                    task_type=have.get(names.LABEL_TASK_TYPE, ""),
                    replicas=int((manifest.get("spec") or {}).get("replicas") or 0),
                    ready_replicas=self.ready_replicas.get((ns, name), 0)))
        return found

    async def delete_deployment(self, namespace: str, name: str) -> None:
        await self._enter("delete_deployment", name, (namespace, name))
        self.deployments.pop((namespace, name), None)
        self.deleted_deployments.append((namespace, name))

    async def scale_deployment(self, namespace: str, name: str, replicas: int) -> None:
        await self._enter("scale_deployment", name, (namespace, name, replicas))
        manifest = self.deployments.get((namespace, name))
        if manifest is None:
            raise KubeError(f"scale Deployment {namespace}/{name}: not found", 404)
        manifest.setdefault("spec", {})["replicas"] = replicas

    async def list_pods(self, namespace: str, labels: Mapping[str, str]) -> list[str]:
        await self._enter("list_pods", "", (namespace, dict(labels)))
        return [name for (ns, name), pod in self.pods.items() if ns == namespace
                and all(pod.get("labels", {}).get(k) == v for k, v in labels.items())]

    async def list_pod_states(self, namespace: str,
                              labels: Mapping[str, str]) -> list[dict[str, Any]]:
        await self._enter("list_pod_states", "", (namespace, dict(labels)))
        return [{"metadata": {"name": name, "namespace": ns, "labels": pod.get("labels", {})},
                 "status": pod.get("status", {})}
                for (ns, name), pod in self.pods.items() if ns == namespace
                and all(pod.get("labels", {}).get(k) == v for k, v in labels.items())]

    async def annotate_pod(self, namespace: str, name: str,
                           annotations: Mapping[str, str]) -> None:
        await self._enter("annotate_pod", name, (namespace, name, dict(annotations)))
        pod = self.pods.get((namespace, name))
        if pod is not None:
            pod.setdefault("annotations", {}).update(annotations)

    async def patch_status(self, plural: str, namespace: str, name: str,
                           status: Mapping[str, Any]) -> None:
        stored = _stored(status)
        await self._enter("patch_status", name, (plural, namespace, name, stored), stored)
        self.patches[(plural, namespace, name)].append(stored)

    async def replace_status(self, plural: str, namespace: str, name: str,
                             status: Mapping[str, Any]) -> None:
        stored = _stored(status)
        await self._enter("replace_status", name, (plural, namespace, name, stored), stored)
        self.statuses[(plural, namespace, name)].append(stored)

    async def post_event(self, involved: Mapping[str, str], kind: str, reason: str,
                         message: str) -> None:
        posted = PostedEvent(dict(involved), kind, reason, message)
        await self._enter("post_event", involved.get("name", ""),
                          (dict(involved), kind, reason, message), posted)
        self.events.append(posted)

    async def list_custom(self, plural: str, namespace: str | None = None,
                          limit: int | None = None) -> list[dict[str, Any]]:
        await self._enter("list_custom", "", (plural, namespace, limit))
        found = [_stored(o) for o in self.objects[plural]
                 if namespace is None or o["metadata"].get("namespace") == namespace]
        return found[:limit] if limit else found

    async def create_run(self, namespace: str, body: Mapping[str, Any]) -> None:
        stored = _stored(body)
        name = stored.get("metadata", {}).get("name", "")
        await self._enter("create_run", name, (namespace, stored), stored)
        if any(o["metadata"].get("namespace") == namespace and o["metadata"]["name"] == name
               for o in self.objects[RUNS]):
            raise KubeError(f"create WorkflowRun {namespace}/{name}: already exists", 409)
        stored.setdefault("metadata", {})["namespace"] = namespace
        self.created_runs.append(stored)
        self.objects[RUNS].append(stored)

    async def delete_run(self, namespace: str, name: str, uid: str | None = None) -> None:
        await self._enter("delete_run", name, (namespace, name, uid), uid)
        self.deleted_runs.append((namespace, name, uid))
        self._gone.add((namespace, name))


def _where(manifest: Mapping[str, Any]) -> tuple[str, str]:
    meta = manifest["metadata"]
    return meta.get("namespace", ""), meta["name"]


# -- the broker -----------------------------------------------------------------------------
class FakeConfirmation(Confirmation):
    """A real Confirmation that also tells whether anyone waits for it (`awaited`)."""

    def __init__(self) -> None:
        super().__init__()
        self.awaited = False

    def add_done_callback(self, callback: Callable[[Confirmation], None]) -> None:
        if not self.done():
            self.awaited = True
        super().add_done_callback(callback)

    def _watch(self, callback: Callable[[Confirmation], None]) -> None:
        """The fake's own callback: does not count as someone waiting."""
        super().add_done_callback(callback)


@dataclass
class Published:
    """One publish the operator made, with the Confirmation it got back."""

    seq: int
    exchange: str
    routing_key: str
    body: bytes
    message_id: str | None
    mandatory: bool
    headers: dict[str, Any] | None
    confirmation: FakeConfirmation
    held: bool = False

    @property
    def is_task(self) -> bool:
        return self.exchange == names.TASKS_EXCHANGE

    def task(self) -> TaskMessage:
        return decode_task(self.body)

    @property
    def settled(self) -> bool:
        return self.confirmation.done()

    @property
    def confirmed(self) -> bool:
        return self.confirmation.done() and self.confirmation.exception(0) is None

    @property
    def awaited(self) -> bool:
        """Someone (the flusher) waits for this confirm."""
        return self.confirmation.awaited


class FakeLink:
    """Implements `conveyor.operator.seams.BrokerLink` in memory.

    Confirms settle on their own soon after the publish (on the running loop, as a real
    broker's come later on the link's thread), unless held: `FakeLink(auto_confirm=False)`
    holds all, `hold_when(predicate)` those that match. The test settles held ones with
    `confirm(...)` / `fail(..., error)`; `fail_next_confirms(error, times)` makes the next
    auto-settled confirms fail instead.
    """

    def __init__(self, journal: Journal | None = None, *, auto_confirm: bool = True) -> None:
        self.journal = journal or Journal()
        self.auto_confirm = auto_confirm
        self._hold: Callable[[Published], bool] | None = None
        self._confirm_faults: deque[BaseException] = deque()
        self.published: list[Published] = []
        self.consumers: dict[str, tuple[int, Callable[[Delivery], None]]] = {}
        self.is_connected = True
        self.last_failure: BrokerError | None = None

    # -- BrokerLink -----------------------------------------------------------------------------
    @property
    def connected(self) -> bool:
        return self.is_connected

    @property
    def failure(self) -> BrokerError | None:
        return None if self.is_connected else self.last_failure

    def publish(self, exchange: str, routing_key: str, body: bytes, *,
                headers: dict[str, Any] | None = None, message_id: str | None = None,
                mandatory: bool = True) -> Confirmation:
        confirmation = FakeConfirmation()
        published = Published(len(self.published), exchange, routing_key, body, message_id,
                              mandatory, None if headers is None else dict(headers),
                              confirmation)
        self.published.append(published)
        key = message_id or ""
        self.journal.add("publish", key, published)

        def settled(c: Confirmation) -> None:
            error = c.exception(0)
            self.journal.add("confirmed" if error is None else "failed", key, published, error)

        confirmation._watch(settled)
        held = not self.auto_confirm or (self._hold is not None and self._hold(published))
        if held:
            published.held = True
        else:
            error = self._confirm_faults.popleft() if self._confirm_faults else None
            self._settle_soon(confirmation, error)
        return confirmation

    def consume(self, queue: str, prefetch: int,
                on_delivery: Callable[[Delivery], None]) -> None:
        self.consumers[queue] = (prefetch, on_delivery)

    # -- fault injection and settling ---------------------------------------------------------
    def hold_when(self, predicate: Callable[[Published], bool] | None) -> None:
        """Hold the confirms of future publishes that match (None: hold none of them)."""
        self._hold = predicate

    def fail_next_confirms(self, error: BaseException, times: int = 1) -> None:
        self._confirm_faults.extend([error] * times)

    def confirm(self, which: Published | str) -> Published:
        """Confirm a held publish (or the oldest unsettled one with that message id)."""
        published = self._find(which)
        published.confirmation.confirm()
        return published

    def fail(self, which: Published | str, error: BaseException) -> Published:
        """Fail a held publish's confirm with `error` (say `LinkClosedError`: a dropped
        confirm, or `PublishRejectedError`: a nack)."""
        published = self._find(which)
        published.confirmation.fail(error)
        return published

    def confirm_held(self) -> list[Published]:
        """Confirm every publish still unsettled."""
        pending = self.unsettled()
        for published in pending:
            published.confirmation.confirm()
        return pending

    def unsettled(self) -> list[Published]:
        return [p for p in self.published if not p.settled]

    def _find(self, which: Published | str) -> Published:
        if isinstance(which, Published):
            return which
        for published in self.published:
            if published.message_id == which and not published.settled:
                return published
        raise LookupError(f"no unsettled publish with message id {which!r}")

    @staticmethod
    def _settle_soon(confirmation: Confirmation, error: BaseException | None) -> None:
        def settle() -> None:
            if error is None:
                confirmation.confirm()
            else:
                confirmation.fail(error)
        try:
            asyncio.get_running_loop().call_soon(settle)
        except RuntimeError:  # no loop: settle now
            settle()

    # -- what was published ---------------------------------------------------------------------
    def tasks(self) -> list[Published]:
        return [p for p in self.published if p.is_task]

    def task_ids(self) -> list[str]:
        return [p.message_id or "" for p in self.tasks()]

    def with_id(self, message_id: str) -> list[Published]:
        return [p for p in self.published if p.message_id == message_id]

    # -- consuming --------------------------------------------------------------------------
    def deliver(self, delivery: Delivery, queue: str | None = None) -> Delivery:
        """Hand `delivery` to the consumer of `queue` (the only one, when not named), as the
        link's I/O thread would."""
        if queue is None:
            if len(self.consumers) != 1:
                raise LookupError(f"deliver to which queue? consumers: {list(self.consumers)}")
            queue = next(iter(self.consumers))
        _, on_delivery = self.consumers[queue]
        on_delivery(delivery)
        return delivery


class FakeDelivery:
    """Implements `conveyor.operator.seams.Delivery`; records each settlement (a real one is
    settled once: `settlements` shows whether the operator did so twice)."""

    def __init__(self, body: bytes, routing_key: str, message_id: str | None, *,
                 journal: Journal | None = None, redelivered: bool = False) -> None:
        self.body = body
        self.routing_key = routing_key
        self.message_id = message_id
        self.redelivered = redelivered
        self.journal = journal or Journal()
        self.settlements: list[str] = []

    def ack(self) -> None:
        self._settle("ack")

    def requeue(self) -> None:
        self._settle("requeue")

    def reject(self) -> None:
        self._settle("reject")

    def _settle(self, how: str) -> None:
        self.settlements.append(how)
        self.journal.add(how, self.message_id or "", self)

    @property
    def acked(self) -> bool:
        return "ack" in self.settlements

    @property
    def settled(self) -> bool:
        return bool(self.settlements)

    def ack_entry(self) -> Entry | None:
        return next((e for e in self.journal.of("ack") if e.data is self), None)

    @property
    def acked_at(self) -> Entry:
        """The journal entry of its ack; AssertionError when it was not acked."""
        entry = self.ack_entry()
        assert entry is not None, f"{self.message_id} was not acked"
        return entry

    def redeliver(self) -> FakeDelivery:
        """The same message, delivered again (the broker's redelivery after a lost ack)."""
        return FakeDelivery(self.body, self.routing_key, self.message_id, journal=self.journal,
                            redelivered=True)


def worker_event(attempt_id: str, status: str = "succeeded", *,
                 outputs: dict[str, Any] | None = None, error: str | None = None,
                 retryable: bool = True, worker: str | None = "pod-1",
                 journal: Journal | None = None) -> FakeDelivery:
    """The delivery of a worker's event, as the SDK sends it on conveyor.events."""
    event = TaskEvent(status=status, attempt_id=attempt_id, worker=worker,  # type: ignore[arg-type]
                      outputs=outputs, error=error, retryable=retryable)
    return FakeDelivery(encode_event(event), f"task.{status}", f"{attempt_id}:{status}",
                        journal=journal)


# -- Kafka ------------------------------------------------------------------------------------
class FakeRecordSource:
    """Implements `conveyor.operator.seams.RecordSource`: records are handed out by the test;
    commits of the current assignment (epoch) of a partition move `committed` forward only,
    as a real consumer's do; `commits` lists every call."""

    def __init__(self) -> None:
        self.subscriptions: list[frozenset[str]] = []
        self.commits: list[tuple[TopicPartition, int, int]] = []
        self.committed: dict[TopicPartition, int] = {}
        self.epochs: dict[TopicPartition, int] = defaultdict(int)
        self.released = 0
        self.handed = 0
        self._on_records: Callable[[Any], None] | None = None

    def start(self, on_records: Callable[[Any], None]) -> None:
        self._on_records = on_records

    def subscribe(self, topics: Iterable[str]) -> None:
        self.subscriptions.append(frozenset(topics))

    def commit(self, where: TopicPartition, offset: int, epoch: int) -> None:
        self.commits.append((where, offset, epoch))
        if self.epochs[where] == epoch:
            self.committed[where] = max(self.committed.get(where, 0), offset)

    def release(self, record: Record) -> None:
        self.released += 1

    def reassign(self, topic: str, partition: int = 0) -> int:
        """A rebalance gave the partition back: a new epoch, records to be read again."""
        self.epochs[TopicPartition(topic, partition)] += 1
        return self.epochs[TopicPartition(topic, partition)]

    def record(self, topic: str, offset: int, value: bytes | None, *, partition: int = 0,
               key: bytes | None = None,
               headers: tuple[tuple[str, bytes | None], ...] = ()) -> Record:
        return Record(topic, partition, offset, key, value, headers, 1_700_000_000_000,
                      epoch=self.epochs[TopicPartition(topic, partition)])

    def hand(self, *records: Record) -> None:
        """Hand records to the operator, as the consumer's thread does."""
        assert self._on_records is not None, "not started"
        self.handed += len(records)
        self._on_records(list(records))

    @property
    def in_flight(self) -> int:
        return self.handed - self.released


@dataclass
class Produced:
    topic: str
    value: bytes
    key: bytes | None
    headers: list[tuple[str, bytes]]
    on_delivered: Callable[[KafkaError | None], None]


class FakeRecordSink:
    """Implements `conveyor.operator.seams.RecordSink`: `produced` holds every record; each
    is reported delivered at once unless `hold` is set (then `settle` reports them) or
    `fail_next` made it fail."""

    def __init__(self) -> None:
        self.produced: list[Produced] = []
        self.hold = False
        self.held: list[Produced] = []
        self._failures: deque[KafkaError] = deque()

    def fail_next(self, error: KafkaError, times: int = 1) -> None:
        self._failures.extend([error] * times)

    def produce(self, topic: str, value: bytes, *, key: bytes | None,
                headers: Iterable[tuple[str, bytes]],
                on_delivered: Callable[[KafkaError | None], None]) -> None:
        record = Produced(topic, value, key, list(headers), on_delivered)
        self.produced.append(record)
        if self._failures:
            on_delivered(self._failures.popleft())
        elif self.hold:
            self.held.append(record)
        else:
            on_delivered(None)

    def settle(self, error: KafkaError | None = None) -> None:
        held, self.held = self.held, []
        for record in held:
            record.on_delivered(error)


# -- bodies as the API server shows them ------------------------------------------------------
def workflow_spec(*tasks: dict[str, Any], final: Iterable[dict[str, Any]] = (),
                  **fields: Any) -> dict[str, Any]:
    """A Workflow spec (camelCase JSON): tasks of type `pool` unless they say otherwise, and
    the task types they name."""
    main = [{"type": "pool", **t} for t in tasks]
    finally_ = [{"type": "pool", **t} for t in final]
    types = sorted({t["type"] for t in [*main, *finally_]})
    spec = {"taskTypes": [{"name": n, "image": IMAGE} for n in types], "tasks": main, **fields}
    if finally_:
        spec["finally"] = finally_
    return spec


def workflow_body(spec: dict[str, Any], *, name: str = WORKFLOW, namespace: str = NAMESPACE,
                  generation: int = 1, uid: str | None = None) -> dict[str, Any]:
    return {"apiVersion": names.API_VERSION, "kind": "Workflow",
            "metadata": {"namespace": namespace, "name": name, "uid": uid or f"uid-{name}",
                         "generation": generation},
            "spec": spec}


def run_body(name: str, *, uid: str | None = None, workflow: str = WORKFLOW,
             namespace: str = NAMESPACE, inputs: dict[str, Any] | None = None,
             status: dict[str, Any] | None = None, cancel: bool = False) -> dict[str, Any]:
    body: dict[str, Any] = {
        "apiVersion": names.API_VERSION, "kind": names.RUN_KIND,
        "metadata": {"namespace": namespace, "name": name, "uid": uid or f"uid-{name}",
                     "creationTimestamp": "2024-01-01T00:00:00Z"},
        "spec": {"workflowRef": {"name": workflow}, "inputs": inputs or {}},
    }
    if cancel:
        body["spec"]["cancel"] = True
    if status is not None:
        body["status"] = _stored(status)
    return body


def task_entry(status: dict[str, Any] | None, task: str) -> dict[str, Any] | None:
    """The entry of `task` in a run's status."""
    if status is None:
        return None
    return next((t for t in status.get("tasks") or [] if t["name"] == task), None)


def task_of(status: dict[str, Any] | None, task: str) -> dict[str, Any]:
    """The entry of `task` in a run's status; AssertionError when there is none."""
    entry = task_entry(status, task)
    assert entry is not None, f"no task {task} in {status}"
    return entry


# -- polling --------------------------------------------------------------------------------
async def until(predicate: Callable[[], T], *, timeout: float = 3.0,
                what: str = "the condition") -> T:
    """Poll `predicate` on the running loop until it is truthy; its value. AssertionError
    after `timeout` seconds (the only thing that waits here is the deadline)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.001)


async def until_found(find: Callable[[], T | None], *, timeout: float = 3.0,
                      what: str = "the thing") -> T:
    """Poll `find` until it returns something other than None; that."""
    found: list[T] = []

    def probe() -> bool:
        value = find()
        if value is not None:
            found.append(value)
        return bool(found)

    await until(probe, timeout=timeout, what=what)
    return found[0]


async def turns(count: int = 20) -> None:
    """Let the loop run `count` rounds of ready callbacks (not a wait for a condition:
    for checking that something does *not* happen once the work at hand has run)."""
    for _ in range(count):
        await asyncio.sleep(0)


def drive(scenario: Callable[[], Coroutine[Any, Any, None]], *, timeout: float = 8.0) -> None:
    """Run one scenario on a fresh loop, bounded so that a broken rule fails instead of
    hanging; the beds it made are closed before the loop ends, whatever happened."""
    async def bounded() -> None:
        first = len(_OPEN_BEDS)
        try:
            await asyncio.wait_for(scenario(), timeout)
        finally:
            while len(_OPEN_BEDS) > first:
                await _OPEN_BEDS.pop().close()
    asyncio.run(bounded())


# -- the run loop over the fakes --------------------------------------------------------------
_OPEN_BEDS: list[Bed] = []


@dataclass
class Bed:
    """A real RunManager wired over the fakes, with tiny intervals. Build it in a coroutine."""

    status_interval: float = 0.0
    retry_seconds: float = 0.01
    writes_per_second: float = 1000.0
    event_hold: float = 0.0  # Kubernetes Events posted at once, none superseded
    first_status_delay: float | None = None  # None: the status interval
    auto_confirm: bool = True
    lease_seconds: float = 120.0
    journal: Journal = field(default_factory=Journal)
    storage: RunStorage | None = None

    def __post_init__(self) -> None:
        self.kube = FakeKube(self.journal)
        self.link = FakeLink(self.journal, auto_confirm=self.auto_confirm)
        self.workflows = Workflows(self.kube)
        self.metrics = Metrics()
        self.dispatches: list[tuple[str, str, str]] = []
        self.deliveries: list[FakeDelivery] = []
        settings = Settings(broker=BrokerSettings(url="amqp://u:p@localhost/"),
                            status_interval=self.status_interval,
                            first_status_delay=(self.status_interval
                                                if self.first_status_delay is None
                                                else self.first_status_delay),
                            writes_per_second=self.writes_per_second,
                            events_per_second=1000.0, event_hold=self.event_hold,
                            lease_seconds=self.lease_seconds)
        self.manager = RunManager(settings, self.kube, self.link, self.workflows,
                                  metrics=self.metrics, on_dispatch=self._dispatched,
                                  retry_seconds=self.retry_seconds, storage=self.storage)
        self.uids: set[str] = set()  # every run the bed showed the manager
        _OPEN_BEDS.append(self)

    async def close(self) -> None:
        """Stop the run loop's work (flushes, timers, TTLs, tasks) so nothing outlives the
        event loop: the runs go first, so a cancelled flush does not schedule another."""
        runs = list(self.manager.runs.values())
        self.manager.runs.clear()
        for run in runs:
            for handle in (run.flush_at, run.timer):
                if handle is not None:
                    handle.cancel()
        for uid in self.uids:
            self.manager.expiry.forget(uid)
        for _ in range(3):  # a task cancelled may still have spawned one
            tasks = asyncio.all_tasks() - {asyncio.current_task()}
            if not tasks:
                break
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    def _dispatched(self, namespace: str, workflow: str, task_type: str) -> None:
        self.dispatches.append((namespace, workflow, task_type))

    # -- setting the scene ----------------------------------------------------------------------
    def start(self, existing: Iterable[dict[str, Any]] = ()) -> None:
        """Track the runs that exist, then consume events (as the operator's start does)."""
        existing = list(existing)
        self.uids.update(body["metadata"]["uid"] for body in existing)
        self.manager.start(asyncio.get_running_loop(), EVENTS_QUEUE, list(existing))

    def add_workflow(self, spec: dict[str, Any], *, name: str = WORKFLOW, generation: int = 1,
                     provisioned: bool = True) -> dict[str, Any]:
        """Observe the Workflow and (by default) report its pools provisioned."""
        body = workflow_body(spec, name=name, generation=generation)
        entry = self.workflows.observe(body)
        assert entry.problem is None, entry.problem
        if provisioned:
            self.workflows.provisioned(NAMESPACE, name, generation)
        return body

    def add_run(self, name: str, **fields: Any) -> dict[str, Any]:
        body = run_body(name, **fields)
        self.uids.add(body["metadata"]["uid"])
        self.manager.observe(body)
        return body

    # -- workers ------------------------------------------------------------------------------
    def send(self, attempt_id: str, status: str = "succeeded", **fields: Any) -> FakeDelivery:
        """A worker's event for `attempt_id`, delivered to the operator's consumer."""
        delivery = worker_event(attempt_id, status, journal=self.journal, **fields)
        return self.deliver(delivery)

    def deliver(self, delivery: FakeDelivery) -> FakeDelivery:
        self.deliveries.append(delivery)
        self.link.deliver(delivery)
        return delivery

    def redeliver(self, delivery: FakeDelivery) -> FakeDelivery:
        return self.deliver(delivery.redeliver())

    # -- looking ------------------------------------------------------------------------------
    def written(self, run: str) -> list[dict[str, Any]]:
        return self.kube.written(run)

    def status(self, run: str) -> dict[str, Any] | None:
        """The run's last status written, if any."""
        return self.kube.last_status(run)

    def last(self, run: str) -> dict[str, Any]:
        """The run's last status written; AssertionError when none was."""
        status = self.kube.last_status(run)
        assert status is not None, f"no status of {run} written"
        return status

    def task(self, run: str, task: str) -> dict[str, Any] | None:
        return task_entry(self.status(run), task)

    def run(self, uid: str) -> ActiveRun | None:
        return self.manager.runs.get(uid)

    def quiet(self) -> bool:
        """Nothing left to do: every delivery settled, no run with pending writes, sends or
        acks, no flush due or under way."""
        return all(d.settled for d in self.deliveries) and all(
            not r.dirty and not r.flushing and r.flush_at is None and not r.acks
            and not r.sends for r in self.manager.runs.values())

    async def until(self, predicate: Callable[[], T], *, timeout: float = 3.0,
                    what: str = "the condition") -> T:
        return await until(predicate, timeout=timeout, what=what)

    async def until_found(self, find: Callable[[], T | None], *, timeout: float = 3.0,
                          what: str = "the thing") -> T:
        return await until_found(find, timeout=timeout, what=what)

    async def settle(self, timeout: float = 3.0) -> None:
        """Wait until the bed is `quiet`."""
        await until(self.quiet, timeout=timeout, what="the run loop to be quiet")


# -- workers --------------------------------------------------------------------------------
Script = Callable[[TaskMessage], list[tuple[str, dict[str, Any]]]]
"""What a worker does with a task: the events it sends, as (status, TaskEvent fields)."""


class Workers:
    """Scripted workers: they take every confirmed task publish of `sources` (the links whose
    messages sit in the broker's queues; more than one across an operator restart) that
    `takes` accepts, and send the events `script` gives for it to the bed's consumer."""

    def __init__(self, bed: Bed, script: Script, *, sources: Iterable[FakeLink] = (),
                 takes: Callable[[str], bool] = lambda attempt_id: True,
                 done: Iterable[str] = ()) -> None:
        self.bed = bed
        self.script = script
        self.sources = list(sources) or [bed.link]
        self.takes = takes
        self.done: list[str] = list(done)  # attempt ids taken, in order

    def pump(self) -> int:
        """Answer every task waiting for a worker; how many were answered."""
        count = 0
        for link in self.sources:
            for published in link.tasks():
                attempt = published.message_id or ""
                if not published.confirmed or attempt in self.done or not self.takes(attempt):
                    continue
                self.done.append(attempt)
                count += 1
                for status, fields in self.script(published.task()):
                    self.bed.send(attempt, status, **fields)
        return count

    async def serve_until(self, predicate: Callable[[], Any], *, timeout: float = 3.0,
                          what: str = "the condition") -> None:
        def step() -> Any:
            self.pump()
            return predicate()
        await until(step, timeout=timeout, what=what)

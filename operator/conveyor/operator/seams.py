"""The operator's seams: what it needs of Kubernetes, of the broker and of Kafka, as Protocols.

The operator's modules depend on these, never on the adapters' classes, the way httpx's client
depends on `BaseTransport`: the runtime wires in the real adapters (`conveyor.kube.AsyncKube`,
`conveyor.broker.Link`, `conveyor.kafka.client.Consumer` and `.Producer`), the unit tests
wire in in-memory fakes with fault injection (`tests/unit/fakes.py`), and neither needs
monkeypatching.

Contracts the fakes honour too:
- every `KubeApi` call fails only with `KubeError` (the facade maps urllib3, socket and TLS
  errors onto it), with `status` 404 when the object is gone;
- a `BrokerLink.publish` returns at once; its `Confirmation` settles later, on another thread,
  confirmed or failed (`UnroutableError`, `PublishRejectedError`, `LinkClosedError`);
- a `Delivery` is settled once (`ack`, `requeue` or `reject`), from any thread; one never
  settled is redelivered by the broker once the link drops;
- a `RecordSource` hands records out in each partition's order, from its own thread, and
  commits only what it is told to (a commit from an older assignment of the partition does
  nothing); a `RecordSink` reports each `produce` once, from its own thread.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any, Protocol

from conveyor.broker.confirms import Confirmation
from conveyor.broker.errors import BrokerError
from conveyor.kafka.errors import KafkaError
from conveyor.kafka.records import Record, TopicPartition
from conveyor.kube.client import DeploymentState


class KubeApi(Protocol):
    """The Kubernetes calls the operator makes besides kopf's own watches and patches."""

    async def apply_deployment(self, manifest: Mapping[str, Any]) -> None: ...
    async def apply_secret(self, manifest: Mapping[str, Any]) -> None: ...
    async def apply_config_map(self, manifest: Mapping[str, Any]) -> None: ...
    async def get_config_map_data(self, namespace: str,
                                  name: str) -> dict[str, str] | None: ...
    async def get_secret_data(self, namespace: str, name: str) -> dict[str, str] | None: ...
    async def list_deployments(self, namespace: str,
                               labels: Mapping[str, str]) -> list[DeploymentState]: ...
    async def delete_deployment(self, namespace: str, name: str) -> None: ...
    async def scale_deployment(self, namespace: str, name: str, replicas: int) -> None: ...
    async def list_pods(self, namespace: str, labels: Mapping[str, str]) -> list[str]: ...
    async def list_pod_states(self, namespace: str,
                              labels: Mapping[str, str]) -> list[dict[str, Any]]: ...
    async def annotate_pod(self, namespace: str, name: str,
                           annotations: Mapping[str, str]) -> None: ...
    async def patch_status(self, plural: str, namespace: str, name: str,
                           status: Mapping[str, Any]) -> None: ...
    async def replace_status(self, plural: str, namespace: str, name: str,
                             status: Mapping[str, Any]) -> None: ...
    async def post_event(self, involved: Mapping[str, str], kind: str, reason: str,
                         message: str) -> None: ...
    async def list_custom(self, plural: str, namespace: str | None = None,
                          limit: int | None = None) -> list[dict[str, Any]]: ...
    async def create_run(self, namespace: str, body: Mapping[str, Any]) -> None: ...
    async def delete_run(self, namespace: str, name: str, uid: str | None = None) -> None: ...


class Delivery(Protocol):
    """A message the broker handed to the operator, to settle once."""

    body: bytes
    routing_key: str
    message_id: str | None

    def ack(self) -> None: ...
    def requeue(self) -> None: ...


class BrokerLink(Protocol):
    """One connection to the broker: confirmed publishing and manual-ack consuming."""

    @property
    def connected(self) -> bool: ...

    @property
    def failure(self) -> BrokerError | None:
        """Why it is not connected (a TLSError for a TLS misconfiguration), if known."""
        ...

    def publish(self, exchange: str, routing_key: str, body: bytes, *,
                headers: dict[str, Any] | None = None, message_id: str | None = None,
                mandatory: bool = True) -> Confirmation: ...

    def consume(self, queue: str, prefetch: int,
                on_delivery: Callable[[Delivery], None]) -> None: ...


class RecordSource(Protocol):
    """A Kafka consumer group member that commits only when told."""

    def start(self, on_records: Callable[[Sequence[Record]], None]) -> None: ...
    def subscribe(self, topics: Collection[str]) -> None: ...
    def commit(self, where: TopicPartition, offset: int, epoch: int) -> None: ...
    def release(self, record: Record) -> None: ...


class RecordSink(Protocol):
    """A Kafka producer whose every record is reported delivered (None) or failed."""

    def produce(self, topic: str, value: bytes, *, key: bytes | None,
                headers: Sequence[tuple[str, bytes]],
                on_delivered: Callable[[KafkaError | None], None]) -> None: ...

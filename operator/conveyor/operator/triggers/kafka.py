"""Record-driven starts: records on the Kafka topics that Workflows' `kafka` triggers name
create WorkflowRuns.

The operator is one member of its consumer group (`Settings.kafka_group`), subscribed to
the union of the topics its Workflows' triggers name, kept in step every SYNC_SECONDS.
Each record that passes a trigger's filter makes exactly one run of it, named from the
record's topic, partition and offset (or from the trigger's `key`), so a record read again
(after a crash before its commit, a rebalance, offsets reset) finds its run there (409).

Offsets are committed only after every run a record makes exists, or the record is dropped
for good (at least once in, exactly one run out), in each partition's order (`Offsets`). A
record that cannot start a run is logged as an error with its topic, partition and offset,
counted in `conveyor_trigger_events_dropped_total{reason}` and committed: `malformed-json`,
`too-large`, `too-deep` (its value), `filter-failed`, `inputs-failed`, `key-failed` (a
trigger's expressions; the other triggers still run), `rejected` (the API server refused
the run for good), `failed` (an error nobody foresaw). An API server that did not answer or
asked to wait has the record tried again after RETRY_SECONDS, for as long as it takes; its
partition's commits wait for it, and past the consumer's in-flight bound, its reading.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from conveyor import names
from conveyor.kafka import Record
from conveyor.kube import KubeError
from conveyor.operator.metrics import Metrics
from conveyor.operator.seams import KubeApi, RecordSource
from conveyor.operator.triggers.offsets import Offsets
from conveyor.operator.triggers.records import plan, view
from conveyor.operator.triggers.starting import Unusable, start_run
from conveyor.operator.workflows import Workflows

log = logging.getLogger("conveyor.operator.triggers")

RETRY_SECONDS = 2.0
SYNC_SECONDS = 1.0


class KafkaTriggers:
    """Subscribes to the topics Workflows' Kafka triggers name; turns records into runs."""

    def __init__(self, kube: KubeApi, workflows: Workflows, source: RecordSource, *,
                 metrics: Metrics, retry_seconds: float = RETRY_SECONDS,
                 sync_seconds: float = SYNC_SECONDS) -> None:
        self._kube = kube
        self._workflows = workflows
        self._source = source
        self._metrics = metrics
        self._retry_seconds = retry_seconds
        self._sync_seconds = sync_seconds
        self._offsets = Offsets()
        self._topics: frozenset[str] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def topics(self) -> frozenset[str]:
        return self._topics or frozenset()

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._source.start(self._from_consumer_thread)

    async def run(self) -> None:
        """Keep the subscription in step with the Workflows (the background loop)."""
        while True:
            self.sync()
            await asyncio.sleep(self._sync_seconds)

    def sync(self) -> None:
        """Subscribe to every topic some Workflow's Kafka triggers name, and no other."""
        wanted = frozenset(t.kafka.topic for entry in self._workflows.entries()
                           if entry.compiled for t in entry.compiled.triggers
                           if t.kafka is not None)
        if wanted == self._topics or (self._topics is None and not wanted):
            return
        self._source.subscribe(wanted)
        self._topics = wanted
        log.info("Kafka trigger topics synced topics=%s", sorted(wanted))

    def _from_consumer_thread(self, records: Sequence[Record]) -> None:
        assert self._loop is not None
        self._loop.call_soon_threadsafe(self._accept, list(records))

    def _accept(self, records: list[Record]) -> None:
        loop = asyncio.get_running_loop()
        for record in records:
            self._offsets.arrived(record)  # in the order the consumer handed them out
            task = loop.create_task(self._handle(record))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _handle(self, record: Record) -> None:
        try:
            await self._start_runs(record)
        except Unusable as error:
            self._drop(record, error.reason, error.detail)
        except KubeError as error:
            self._drop(record, "rejected", str(error))
        except Exception as error:  # never leave a record undone: it would hold the commits
            log.exception("Failed to handle a Kafka record record=%s", record)
            self._drop(record, "failed", f"{type(error).__name__}: {error}")
        finally:
            offset = self._offsets.done(record)
            if offset is not None:
                self._source.commit(record.where, offset, record.epoch)
            self._source.release(record)

    async def _start_runs(self, record: Record) -> None:
        starts, failed = plan(self._workflows.entries(), record, view(record))
        for failure in failed:
            log.error("Kafka trigger failed on a record workflow=%s/%s trigger=%d record=%s "
                      "reason=%s detail=%s", failure.namespace, failure.workflow,
                      failure.index, record, failure.reason, failure.detail[:1000])
            self._metrics.trigger_events_dropped.labels(failure.reason).inc()
        for start in starts:
            while True:
                try:
                    await start_run(
                        self._kube, start.namespace, start.workflow, start.ident,
                        index=start.index, inputs=start.inputs,
                        annotations={f"{names.GROUP}/kafka-record": str(record)[:253]},
                        described=f"record={record} key={start.ident}")
                    break
                except KubeError as error:
                    if not error.retryable:
                        raise
                    log.warning("Run creation failed; record tried again record=%s "
                                "error=%s", record, error)
                    await asyncio.sleep(self._retry_seconds)

    def _drop(self, record: Record, reason: str, detail: str) -> None:
        log.error("Dropped a Kafka record record=%s topic=%s partition=%d offset=%d "
                  "reason=%s detail=%s", record, record.topic, record.partition,
                  record.offset, reason, detail[:1000])
        self._metrics.trigger_events_dropped.labels(reason).inc()

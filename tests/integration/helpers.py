"""Helpers of the broker tests: task queues, collected events, worker processes."""

from __future__ import annotations

import secrets
import subprocess
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pika

from conveyor import names
from conveyor.broker import Admin, BrokerSettings, Delivery, Link
from conveyor.broker.codec import decode_event, encode_task
from conveyor.broker.connection import connection_parameters
from conveyor.models import TaskEvent, TaskMessage
from conveyor.store import StoreSettings
from support.waiting import eventually


@dataclass
class TaskQueue:
    """One task type's queue in a namespace of its own, and the test's run uid."""

    namespace: str
    workflow: str
    task_type: str
    run_uid: str = field(default_factory=lambda: secrets.token_hex(6))

    @property
    def name(self) -> str:
        return names.queue_name(self.namespace, self.workflow, self.task_type)

    @property
    def dead(self) -> str:
        return names.dead_letter_queue(self.name)

    def message(self, index: int, inputs: dict[str, Any] | None = None,
                attempt: int = 1) -> TaskMessage:
        return TaskMessage(
            attempt_id=names.attempt_id(self.run_uid, "step", index, attempt),
            namespace=self.namespace, workflow=self.workflow, run="run", run_uid=self.run_uid,
            task="step", index=index, attempt=attempt, task_type=self.task_type,
            inputs=inputs or {},
        )


class Events:
    """Every task event published while the test runs, in arrival order (one queue)."""

    def __init__(self, link: Link) -> None:
        self.link = link
        self._lock = threading.Lock()
        self._events: list[TaskEvent] = []

    def on_delivery(self, delivery: Delivery) -> None:
        event = decode_event(delivery.body)
        with self._lock:
            self._events.append(event)
        delivery.ack()

    def all(self, run_uid: str | None = None) -> list[TaskEvent]:
        with self._lock:
            return [e for e in self._events
                    if run_uid is None or e.attempt_id.startswith(run_uid + "/")]

    def with_status(self, status: str, run_uid: str | None = None) -> list[TaskEvent]:
        return [e for e in self.all(run_uid) if e.status == status]

    def finished(self, run_uid: str) -> set[str]:
        return {e.attempt_id for e in self.all(run_uid) if e.status in ("succeeded", "failed")}


def publish_tasks(link: Link, queue: TaskQueue, messages: list[TaskMessage],
                  timeout: float = 30) -> None:
    """Publish and wait for every confirm (they are pipelined, not one by one)."""
    futures = [link.publish(names.TASKS_EXCHANGE, queue.name, encode_task(m),
                            message_id=m.attempt_id) for m in messages]
    for future in futures:
        future.result(timeout)


def drain_queue(broker: BrokerSettings, queue: str) -> list[tuple[dict[str, Any], bytes]]:
    """Take every message off `queue` (headers, body), on a connection of the test's own."""
    connection = pika.BlockingConnection(connection_parameters(broker))
    try:
        channel = connection.channel()
        taken = []
        while True:
            method, properties, body = channel.basic_get(queue, auto_ack=True)
            if method is None:
                return taken
            taken.append((dict(properties.headers or {}), body))
    finally:
        connection.close()


@dataclass
class WorkerProcess:
    name: str
    process: subprocess.Popen[bytes]
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def signal(self, number: int) -> None:
        self.process.send_signal(number)

    def exited(self) -> int | None:
        return self.process.poll()


def wait_consuming(admin: Admin, queue: TaskQueue, consumers: int, timeout: float = 30) -> None:
    def check() -> bool:
        stats = admin.inspect(queue.name)
        return stats is not None and stats.consumers >= consumers

    eventually(check, timeout, what=f"{consumers} consumers on {queue.name}")


def store_env(settings: StoreSettings) -> dict[str, str]:
    """The CONVEYOR_S3_* settings a worker reads, for `settings` (every one of them, so
    nothing of the test's own environment leaks in)."""
    return {
        "CONVEYOR_S3_BUCKET": settings.bucket,
        "CONVEYOR_S3_ENDPOINT": settings.endpoint or "",
        "CONVEYOR_S3_REGION": settings.region,
        "CONVEYOR_S3_ACCESS_KEY": settings.access_key,
        "CONVEYOR_S3_SECRET_KEY": settings.secret_key,
        "CONVEYOR_S3_CA_FILE": str(settings.ca_file or ""),
        "CONVEYOR_S3_PREFIX": settings.prefix,
    }

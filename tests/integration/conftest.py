"""Fixtures for tests against the test bed's RabbitMQ: queues, event collectors, real
`conveyor-worker` processes, and a broker restart that always leaves RabbitMQ running."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from conveyor.broker import Admin, Link
from conveyor.broker.settings import BrokerSettings
from integration.helpers import Events, TaskQueue, WorkerProcess

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
WORKER = Path(sys.executable).parent / "conveyor-worker"


@pytest.fixture(scope="session")
def broker(amqp_url: str) -> BrokerSettings:
    return BrokerSettings(amqp_url, name="conveyor-tests")


@pytest.fixture
def admin(broker: BrokerSettings) -> Iterator[Admin]:
    with Admin(broker) as admin:
        yield admin


# --- queues and messages ---------------------------------------------------------------------


@pytest.fixture
def task_queue(admin: Admin) -> Iterator[Callable[..., TaskQueue]]:
    """Declare a task type's queue (and dead-letter queue); delete both after the test."""
    made: list[TaskQueue] = []

    def make(task_type: str, delivery_limit: int = 5) -> TaskQueue:
        queue = TaskQueue(f"t{secrets.token_hex(3)}", "wf", task_type)
        admin.declare_task_queue(queue.name, delivery_limit)
        made.append(queue)
        return queue

    yield make
    for queue in made:
        admin.delete_task_queue(queue.name)


@pytest.fixture
def events(admin: Admin, broker: BrokerSettings) -> Iterator[Events]:
    """A quorum queue bound to `task.*`, consumed by a Link (so it survives restarts too)."""
    queue = f"test.events.{secrets.token_hex(3)}"
    admin.declare_events_queue(queue, ["task.*"])
    link = Link(broker, name="test-events").start()
    collected = Events(link)
    link.consume(queue, 500, collected.on_delivery)
    yield collected
    link.close()
    admin.delete_queue(queue)


@pytest.fixture
def publisher(broker: BrokerSettings) -> Iterator[Link]:
    link = Link(broker, name="test-publisher").start()
    yield link
    link.close()


# --- worker processes ------------------------------------------------------------------------


@pytest.fixture
def workers(broker: BrokerSettings, tmp_path: Path) -> Iterator[Callable[..., WorkerProcess]]:
    """Start `conveyor-worker` processes serving tests/integration/tasks_under_test.py; any
    still running at the end are killed."""
    started: list[WorkerProcess] = []

    def start(queue: TaskQueue, concurrency: int = 1, module: str = "tasks_under_test",
              **env: str) -> WorkerProcess:
        name = f"worker-{len(started)}"
        log = tmp_path / f"{name}.log"
        environment = {
            # A store only for the tests that give one (store_env): CONVEYOR_S3_BUCKET in the
            # test's own environment (external mode) would change what every worker does.
            **{k: v for k, v in os.environ.items() if not k.startswith("CONVEYOR_S3_")},
            "CONVEYOR_AMQP_URL": broker.url, "CONVEYOR_QUEUE": queue.name,
            "CONVEYOR_TASK_TYPE": queue.task_type, "CONVEYOR_CONCURRENCY": str(concurrency),
            "CONVEYOR_WORKER_NAME": name, "CONVEYOR_METRICS_PORT": "0",
            "PYTHONPATH": str(HERE), **env,
        }
        with log.open("wb") as sink:
            process = subprocess.Popen([str(WORKER), "--module", module], env=environment,
                                       stdout=sink, stderr=subprocess.STDOUT, cwd=tmp_path)
        worker = WorkerProcess(name, process, log)
        started.append(worker)
        return worker

    yield start
    for worker in started:
        if worker.process.poll() is None:
            worker.process.kill()
        worker.process.wait(10)


# --- the broker restart ----------------------------------------------------------------------


@pytest.fixture
def restart_rabbitmq() -> Iterator[Callable[[], None]]:
    """Restart the test bed's RabbitMQ; afterwards it runs again even if the test failed."""
    if os.environ.get("CONVEYOR_TEST_USE_KUBECONFIG") == "1":
        pytest.skip("restarts only the local test bed's broker")
    sys.path.insert(0, str(REPO / "hack"))
    from testbed import rabbitmq  # noqa: PLC0415 (hack/ is on the path only from here)
    from testbed.layout import paths, ports  # noqa: PLC0415

    def restart() -> None:
        rabbitmq.stop(paths())
        rabbitmq.start(paths(), ports())
        rabbitmq.wait(paths(), ports())

    yield restart
    try:
        rabbitmq.wait(paths(), ports(), timeout=5)
    except Exception:
        rabbitmq.stop(paths())
        rabbitmq.start(paths(), ports())
        rabbitmq.wait(paths(), ports())

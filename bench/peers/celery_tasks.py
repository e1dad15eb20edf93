"""The peer's side of the no-op: a Celery app with one task that does nothing, so what is
measured is Celery's own cost (broker round trips, result backend), as Conveyor's no-op worker
(bench/workers/bench_tasks.py) does for Conveyor.

Configured from the environment by bench/bench_peers.py: PEERS_BROKER_URL (the test bed's
RabbitMQ, a vhost of the bench's own), PEERS_RESULT_BACKEND (a redis-server the bench
started), PEERS_QUEUE. Runs under the peers' virtualenv (bench/peers/setup.sh), never the
product's. Everything else is Celery's default.
"""

from __future__ import annotations

import os
from typing import Any

from celery import Celery  # type: ignore[import-not-found, unused-ignore]

app = Celery("peers", broker=os.environ["PEERS_BROKER_URL"],
             backend=os.environ["PEERS_RESULT_BACKEND"])
app.conf.update(
    task_default_queue=os.environ["PEERS_QUEUE"],
    task_default_exchange=os.environ["PEERS_QUEUE"],
    task_default_routing_key=os.environ["PEERS_QUEUE"],
    broker_connection_retry_on_startup=True,
    result_expires=3600,
    worker_hijack_root_logger=False,
)


@app.task(name="peers.noop")
def noop(*args: Any, **kwargs: Any) -> None:
    return None

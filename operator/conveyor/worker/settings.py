"""`conveyor-worker`'s settings: flags first, then the environment the operator sets.

Every mistake becomes one `WorkerConfigError` line that names the setting.
"""

from __future__ import annotations

import argparse
import socket
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import NoReturn

from conveyor.broker.settings import BrokerSettings, BrokerSettingsError
from conveyor.store.errors import StoreSettingsError
from conveyor.store.loading import DEFAULT_MAX_OBJECT_BYTES, MAX_OBJECT_ENV
from conveyor.store.settings import BUCKET_ENV, StoreSettings
from conveyor.worker.errors import WorkerConfigError
from conveyor.worker.executing import DEFAULT_MAX_OUTPUT_BYTES

DEFAULT_METRICS_PORT = 9464
DEFAULT_GRACE_SECONDS = 25.0  # below Kubernetes' default terminationGracePeriodSeconds (30)
DEFAULT_HEARTBEAT_SECONDS = 30.0
# A task that ends sooner sends no `started` event: its final event says it all, and a
# message less per task is a third less broker and operator work for short tasks.
DEFAULT_STARTED_AFTER_SECONDS = 0.5
# A task body past this is dead-lettered unread (reason too-large): decoding it would take the
# worker's memory, and the operator never sends one (its renderings stop at 4 MiB).
DEFAULT_MAX_TASK_BYTES = 8 * 1024 * 1024
# The operator keeps at most this much of one attempt's outputs inline in the run's status
# (engine/tasks.py OUTPUT_LIMIT); with a store, anything larger travels by reference.
DEFAULT_INLINE_OUTPUT_BYTES = 4 * 1024


@dataclass(frozen=True)
class WorkerSettings:
    """Everything a worker is configured with, from its environment."""

    module: str
    broker: BrokerSettings
    queue: str
    task_type: str | None
    """None: the module's only task type."""
    concurrency: int = 1
    grace_seconds: float = DEFAULT_GRACE_SECONDS
    heartbeat_seconds: float = DEFAULT_HEARTBEAT_SECONDS
    started_after: float = DEFAULT_STARTED_AFTER_SECONDS
    """Seconds a task runs before its `started` event is sent (CONVEYOR_STARTED_AFTER_SECONDS;
    0: at once); a task with a timeout sends it at once."""
    max_output_bytes: int = DEFAULT_MAX_OUTPUT_BYTES
    """The cap on outputs without a store (with one, `max_object_bytes` is)."""
    store: StoreSettings | None = None
    """The object store for values passed by reference; None: no store (CONVEYOR_S3_BUCKET
    unset), outputs travel inline and inputs that are references fail."""
    inline_output_bytes: int = DEFAULT_INLINE_OUTPUT_BYTES
    """Outputs larger than this (compact JSON) are stored when there is a store."""
    max_object_bytes: int = DEFAULT_MAX_OBJECT_BYTES
    """The largest value this worker stores or reads (CONVEYOR_S3_MAX_OBJECT_BYTES)."""
    max_task_bytes: int = DEFAULT_MAX_TASK_BYTES
    delivery_limit: int | None = None
    """The queue's `x-delivery-limit` (`CONVEYOR_DELIVERY_LIMIT`, set by the operator): the
    last delivery it allows is reported failed instead of run once more (see serving.py)."""
    metrics_port: int = DEFAULT_METRICS_PORT
    metrics_address: str = "0.0.0.0"  # scraped from outside the pod
    worker_name: str = "worker"
    log_level: str = "INFO"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise WorkerConfigError(message)


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="conveyor-worker",
                     description="Serve the Conveyor tasks a Python module defines.")
    add = parser.add_argument
    add("--module", help="module that defines the tasks (env CONVEYOR_MODULE)")
    add("--queue", help="queue to consume (env CONVEYOR_QUEUE)")
    add("--task-type", help="task type to serve (env CONVEYOR_TASK_TYPE)")
    add("--concurrency", help="tasks at once (env CONVEYOR_CONCURRENCY; default 1)")
    add("--grace-seconds", help="on SIGTERM, time to finish held tasks before requeueing them"
        f" (env CONVEYOR_GRACE_SECONDS; default {DEFAULT_GRACE_SECONDS:g})")
    add("--metrics-port", help="Prometheus port, 0 for none"
        f" (env CONVEYOR_METRICS_PORT; default {DEFAULT_METRICS_PORT})")
    add("--metrics-address", help="address to serve metrics on"
        " (env CONVEYOR_METRICS_ADDRESS; default 0.0.0.0)")
    return parser


def _number(name: str, raw: str, kind: type[int] | type[float], least: float) -> float:
    try:
        value = kind(raw)
    except ValueError:
        raise WorkerConfigError(f"{name} must be a number, got {raw!r}") from None
    if value < least:
        raise WorkerConfigError(f"{name} must be at least {least:g}, got {raw!r}")
    return value


def load(argv: Sequence[str], env: Mapping[str, str]) -> WorkerSettings:
    args = _parser().parse_args(list(argv))

    def pick(flag: str | None, var: str, default: str | None = None) -> str | None:
        value = flag if flag is not None else env.get(var, "").strip()
        return value or default

    module = pick(args.module, "CONVEYOR_MODULE")
    if not module:
        raise WorkerConfigError("no module given: pass --module pkg.mod or set CONVEYOR_MODULE")
    queue = pick(args.queue, "CONVEYOR_QUEUE")
    if not queue:
        raise WorkerConfigError("CONVEYOR_QUEUE is not set: it names the queue to consume")
    try:
        broker = BrokerSettings.from_env(env, name="conveyor-worker")
    except BrokerSettingsError as error:
        raise WorkerConfigError(str(error)) from None
    store = _store(env)
    worker = (env.get("CONVEYOR_WORKER_NAME") or env.get("POD_NAME") or env.get("HOSTNAME")
              or socket.gethostname())
    return WorkerSettings(
        module=module,
        broker=BrokerSettings(broker.url, broker.ca_file, name=f"conveyor-worker {worker}"),
        queue=queue,
        task_type=pick(args.task_type, "CONVEYOR_TASK_TYPE"),
        concurrency=int(_number("CONVEYOR_CONCURRENCY",
                                pick(args.concurrency, "CONVEYOR_CONCURRENCY", "1") or "1",
                                int, 1)),
        grace_seconds=_number("CONVEYOR_GRACE_SECONDS",
                              pick(args.grace_seconds, "CONVEYOR_GRACE_SECONDS")
                              or str(DEFAULT_GRACE_SECONDS), float, 0),
        started_after=_number("CONVEYOR_STARTED_AFTER_SECONDS",
                              env.get("CONVEYOR_STARTED_AFTER_SECONDS")
                              or str(DEFAULT_STARTED_AFTER_SECONDS), float, 0),
        heartbeat_seconds=_number("CONVEYOR_HEARTBEAT_SECONDS",
                                  env.get("CONVEYOR_HEARTBEAT_SECONDS")
                                  or str(DEFAULT_HEARTBEAT_SECONDS), float, 0),
        max_output_bytes=int(_number("CONVEYOR_MAX_OUTPUT_BYTES",
                                     env.get("CONVEYOR_MAX_OUTPUT_BYTES")
                                     or str(DEFAULT_MAX_OUTPUT_BYTES), int, 2)),
        store=store,
        inline_output_bytes=int(_number("CONVEYOR_INLINE_OUTPUT_BYTES",
                                        env.get("CONVEYOR_INLINE_OUTPUT_BYTES")
                                        or str(DEFAULT_INLINE_OUTPUT_BYTES), int, 0)),
        max_object_bytes=int(_number(MAX_OBJECT_ENV, env.get(MAX_OBJECT_ENV)
                                     or str(DEFAULT_MAX_OBJECT_BYTES), int, 2)),
        max_task_bytes=int(_number("CONVEYOR_MAX_TASK_BYTES",
                                   env.get("CONVEYOR_MAX_TASK_BYTES")
                                   or str(DEFAULT_MAX_TASK_BYTES), int, 1024)),
        delivery_limit=(int(_number("CONVEYOR_DELIVERY_LIMIT",
                                    env["CONVEYOR_DELIVERY_LIMIT"], int, 0))
                        if env.get("CONVEYOR_DELIVERY_LIMIT") else None),
        metrics_port=int(_number("CONVEYOR_METRICS_PORT",
                                 pick(args.metrics_port, "CONVEYOR_METRICS_PORT")
                                 or str(DEFAULT_METRICS_PORT), int, 0)),
        metrics_address=pick(args.metrics_address, "CONVEYOR_METRICS_ADDRESS", "0.0.0.0")
        or "0.0.0.0",
        worker_name=worker,
        log_level=(env.get("CONVEYOR_LOG_LEVEL") or "INFO").upper(),
    )


def _store(env: Mapping[str, str]) -> StoreSettings | None:
    """The object store, if CONVEYOR_S3_BUCKET names one: the bucket is what turns it on (the
    operator sets the other CONVEYOR_S3_* with it); a bad setting stops the worker at start,
    not at its first large output."""
    if not env.get(BUCKET_ENV, "").strip():
        return None
    try:
        return StoreSettings.from_env(env)
    except StoreSettingsError as error:
        raise WorkerConfigError(str(error)) from None

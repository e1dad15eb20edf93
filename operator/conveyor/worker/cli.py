"""`conveyor-worker --module pkg.mod`: serve one task type until SIGTERM, then drain, exit 0.

Exit status: 0 after a drain, 2 when the worker cannot start (one line on stderr says why),
which includes a broker that refuses TLS as configured (a CA that did not sign its
certificate, a name it is not valid for, a plain port): no retry mends those.
"""

from __future__ import annotations

import importlib
import logging
import os
import signal
import sys
import threading
from collections.abc import Sequence
from types import FrameType, ModuleType

from conveyor.broker import BrokerSettingsError, Link, TLSError
from conveyor.store import ObjectStore
from conveyor.worker.errors import WorkerConfigError
from conveyor.worker.metrics import Metrics
from conveyor.worker.offload import Offload
from conveyor.worker.registry import TaskDefinition, select
from conveyor.worker.serving import Worker
from conveyor.worker.settings import WorkerSettings, load

log = logging.getLogger("conveyor.worker")

# How long a starting worker waits for its first connection before it serves anyway (and
# keeps reconnecting): long enough for a TLS verdict from a broker that answers at all.
FIRST_CONNECT_SECONDS = 10.0


def import_module(name: str) -> ModuleType:
    # A console script's sys.path lacks the working directory, where a user's module
    # usually is (`conveyor-worker --module tasks` next to tasks.py, or in an image's WORKDIR).
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as error:
        raise WorkerConfigError(f"cannot import module {name!r}: {error}") from None
    except Exception as error:
        raise WorkerConfigError(
            f"module {name!r} failed to import: {type(error).__name__}: {error}") from None


def main(argv: Sequence[str] | None = None) -> int:
    try:
        settings = load(sys.argv[1:] if argv is None else argv, os.environ)
        logging.basicConfig(level=settings.log_level, stream=sys.stderr,
                            format="%(asctime)s %(levelname)s %(name)s %(message)s")
        # pika narrates every socket step at INFO; our own lines say what matters.
        logging.getLogger("pika").setLevel(logging.WARNING)
        definition = select(import_module(settings.module), settings.task_type)
    except WorkerConfigError as error:
        print(f"conveyor-worker: {error}", file=sys.stderr)
        return 2
    return serve(settings, definition)


def serve(settings: WorkerSettings, definition: TaskDefinition) -> int:
    """Serve until SIGTERM or SIGINT, then drain within the grace period."""
    task_type = definition.task_type
    stop = threading.Event()

    def on_signal(number: int, _frame: FrameType | None) -> None:
        log.info("Received signal=%s", signal.Signals(number).name)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    metrics = Metrics(task_type)
    metrics.serve(settings.metrics_address, settings.metrics_port)
    if settings.broker.ca_file and not settings.broker.tls:
        log.warning("Ignored the CA file ca_file=%s: the broker URL is amqp://, not amqps://",
                    settings.broker.ca_file)
    try:
        link = Link(settings.broker, name=settings.broker.name).start()
    except (TLSError, BrokerSettingsError) as error:  # the CA file, a URL pika refuses
        print(f"conveyor-worker: {error}", file=sys.stderr)
        return 2
    try:
        link.wait_connected(FIRST_CONNECT_SECONDS)
    except TLSError as error:
        print(f"conveyor-worker: {error}", file=sys.stderr)
        link.close()
        return 2
    # One client for every task thread (boto3 clients are thread-safe), with a connection
    # for each of them: a smaller pool would drop and reopen connections under load.
    store = (ObjectStore(settings.store, max_connections=max(10, settings.concurrency))
             if settings.store else None)
    worker = Worker(settings, definition, link, metrics, Offload(settings, store))
    log.info("Started worker name=%s task_type=%s handler=%s queue=%s concurrency=%d broker=%s"
             " store=%s", settings.worker_name, task_type, definition.qualified_name,
             settings.queue, settings.concurrency, settings.broker.masked,
             settings.store or "none")
    worker.start()
    stop.wait()
    held, requeued = worker.shutdown(settings.grace_seconds)
    link.close()
    if store is not None:
        store.close()
    log.info("Stopped worker held=%d requeued=%d", held, requeued)
    return 0

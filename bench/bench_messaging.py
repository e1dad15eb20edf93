"""Messaging throughput: raw pika (the ceiling) against the worker SDK, same broker, same run.

    eval "$(make -s testbed-env)"
    .venv/bin/python bench/bench_messaging.py [--messages 5000] [--runs 3] [--concurrency 16]

ceiling   one process publishes N messages with plain pika (BlockingConnection, persistent,
          no confirms: the fastest pika can put them on the wire) while another consumes them
          with manual acks (prefetch 100) from a quorum queue; rate = N / (last ack - start).
sdk       this process publishes N TaskMessages with the broker Link (pipelined confirms);
          `conveyor-worker` processes run a no-op task, each attempt publishing `started` and
          `succeeded` with confirms before its ack; this process consumes the events;
          rate = N / (last `succeeded` - start). A task costs three persistent messages and
          their confirms, so this is tasks/s against the ceiling's messages/s.

The median of `--runs` runs of each is printed with the ratio. Queues are the bench's own
(`bench.<random>...`) and deleted at the end.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pika

from conveyor import names
from conveyor.broker import Admin, Delivery, Link
from conveyor.broker.codec import encode_task
from conveyor.broker.settings import BrokerSettings
from conveyor.broker.topology import events_queue
from conveyor.models import TaskMessage

NOOP_MODULE = '''
from conveyor.worker import task

@task("noop")
def noop(inputs, ctx):
    return None
'''


# --- the ceiling: plain pika ---------------------------------------------------------------


def _raw_publish(url: str, queue: str, count: int, body: bytes) -> None:
    connection = pika.BlockingConnection(pika.URLParameters(url))
    channel = connection.channel()
    properties = pika.BasicProperties(delivery_mode=2)
    for _ in range(count):
        channel.basic_publish("", queue, body, properties)
    connection.close()


def _raw_consume(url: str, queue: str, count: int, done: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    connection = pika.BlockingConnection(pika.URLParameters(url))
    channel = connection.channel()
    channel.basic_qos(prefetch_count=100)
    received = 0

    def on_message(ch, method, _properties, _body) -> None:  # type: ignore[no-untyped-def]
        nonlocal received
        ch.basic_ack(method.delivery_tag)
        received += 1
        if received == count:
            ch.stop_consuming()

    channel.basic_consume(queue, on_message)
    done.put(("ready", time.time()))
    channel.start_consuming()
    done.put(("done", time.time()))
    connection.close()


def ceiling(settings: BrokerSettings, admin: Admin, count: int, body: bytes) -> float:
    queue = f"bench.raw.{secrets.token_hex(3)}"
    admin.declare_queue(events_queue(queue))  # a plain quorum queue
    try:
        # Spawned, not forked: a fork copies this process's threads' locks and sockets.
        spawn = multiprocessing.get_context("spawn")
        done: multiprocessing.Queue = spawn.Queue()  # type: ignore[type-arg]
        consumer = spawn.Process(target=_raw_consume, args=(settings.url, queue, count, done))
        consumer.start()
        assert done.get(timeout=30)[0] == "ready"
        began = time.time()
        publisher = spawn.Process(target=_raw_publish, args=(settings.url, queue, count, body))
        publisher.start()
        kind, ended = done.get(timeout=120)
        assert kind == "done"
        publisher.join(30)
        consumer.join(30)
        return count / (float(ended) - began)
    finally:
        admin.delete_queue(queue)


# --- the SDK -------------------------------------------------------------------------------


def sdk(settings: BrokerSettings, admin: Admin, count: int, pool: tuple[int, int],
        module_dir: Path) -> float:
    workers, concurrency = pool
    run = secrets.token_hex(3)
    queue = names.queue_name("bench", run, "noop")
    events = f"bench.events.{run}"
    admin.declare_task_queue(queue, delivery_limit=5)
    admin.declare_events_queue(events, ["task.*"])
    env = dict(os.environ, CONVEYOR_AMQP_URL=settings.url, CONVEYOR_QUEUE=queue,
               CONVEYOR_TASK_TYPE="noop", CONVEYOR_CONCURRENCY=str(concurrency),
               CONVEYOR_METRICS_PORT="0", CONVEYOR_LOG_LEVEL="WARNING",
               PYTHONPATH=str(module_dir))
    worker_bin = Path(sys.executable).parent / "conveyor-worker"
    procs = [subprocess.Popen([str(worker_bin), "--module", "bench_noop"], env=env)
             for _ in range(workers)]
    link = Link(settings, name="bench").start()
    finished = threading.Event()
    succeeded = 0
    ended = 0.0

    def on_event(delivery: Delivery) -> None:
        nonlocal succeeded, ended
        delivery.ack()
        if delivery.routing_key == names.task_routing_key("succeeded"):
            succeeded += 1
            if succeeded == count:
                ended = time.time()
                finished.set()

    try:
        link.consume(events, 1000, on_event)
        deadline = time.monotonic() + 30
        while (stats := admin.inspect(queue)) is None or stats.consumers < workers:
            if time.monotonic() > deadline:
                raise RuntimeError("the workers did not start consuming")
            time.sleep(0.05)
        bodies = [encode_task(TaskMessage(
            attempt_id=names.attempt_id(run, "noop", i, 1), namespace="bench", workflow=run,
            run="bench", run_uid=run, task="noop", index=i, attempt=1, task_type="noop",
            inputs={"i": i})) for i in range(count)]
        began = time.time()
        futures = [link.publish(names.TASKS_EXCHANGE, queue, body) for body in bodies]
        for future in futures:
            future.result(300)
        if not finished.wait(300):
            raise RuntimeError(f"only {succeeded} of {count} tasks succeeded")
        return count / (ended - began)
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(30)
        link.close()
        admin.delete_task_queue(queue)
        admin.delete_queue(events)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=5000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2, help="worker processes")
    parser.add_argument("--concurrency", type=int, default=32, help="tasks at once per worker")
    args = parser.parse_args()
    settings = BrokerSettings.from_env(name="conveyor-bench")
    body = encode_task(TaskMessage(attempt_id="bench/noop[0]/1", namespace="bench",
                                   workflow="bench", run="bench", run_uid="bench", task="noop",
                                   index=0, attempt=1, task_type="noop", inputs={"i": 0}))
    raw: list[float] = []
    ours: list[float] = []
    with tempfile.TemporaryDirectory() as folder, Admin(settings) as admin:
        (Path(folder) / "bench_noop.py").write_text(NOOP_MODULE)
        for run in range(args.runs):
            raw.append(ceiling(settings, admin, args.messages, body))
            ours.append(sdk(settings, admin, args.messages, (args.workers, args.concurrency),
                            Path(folder)))
            print(f"run {run + 1}: ceiling {raw[-1]:8.0f} msg/s   sdk {ours[-1]:8.0f} tasks/s",
                  file=sys.stderr)
    top, sdk_rate = statistics.median(raw), statistics.median(ours)
    print(f"\n{args.messages} messages, median of {args.runs} runs, broker {settings.masked}")
    print(f"  {'measure':<58} {'rate':>10}")
    print(f"  {'ceiling: raw pika publish + consume with ack (msg/s)':<58} {top:>10.0f}")
    print(f"  {'sdk: no-op tasks, events confirmed before ack (tasks/s)':<58} {sdk_rate:>10.0f}")
    print(f"  {'ratio sdk / ceiling':<58} {sdk_rate / top:>10.2f}")
    # Other work on a shared machine moves both figures; pairs measured back to back agree
    # better than medians taken apart.
    paired = statistics.median(s / r for s, r in zip(ours, raw, strict=True))
    print(f"  {'median of per-run ratios':<58} {paired:>10.2f}")
    # A task is three persistent messages (the task, `started`, `succeeded`), each published
    # with a confirm and consumed with an ack: the broker's side of the comparison.
    print(f"  {'sdk in broker messages (3 per task, msg/s)':<58} {3 * sdk_rate:>10.0f}")
    print(f"  {'ratio sdk messages / ceiling':<58} {3 * sdk_rate / top:>10.2f}")
    print(f"  ({args.workers} worker process(es), concurrency {args.concurrency})")
    return 0


if __name__ == "__main__":
    sys.exit(main())

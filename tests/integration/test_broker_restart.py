"""RabbitMQ restarted while tasks stream in: every party reconnects and no confirmed task is
lost (some may run twice: delivery is at least once)."""

from __future__ import annotations

import threading

import pytest

from conveyor import names
from conveyor.broker.codec import encode_task
from conveyor.broker.confirms import Confirmation
from integration.helpers import drain_queue, wait_consuming
from support.waiting import eventually

pytestmark = pytest.mark.integration


def test_publishers_and_consumers_reconnect_and_no_confirmed_task_is_lost(
        admin, broker, task_queue, events, workers, publisher, restart_rabbitmq):
    queue = task_queue("echo")
    pool = [workers(queue, concurrency=4) for _ in range(2)]
    wait_consuming(admin, queue, 2)

    published: list[tuple[str, Confirmation]] = []
    stop = threading.Event()

    def stream() -> None:
        # A steady stream, one task every 5 ms, until told to stop: it runs before, during
        # and after the restart.
        index = 0
        while not stop.wait(0.005):
            message = queue.message(index)
            published.append((message.attempt_id, publisher.publish(
                names.TASKS_EXCHANGE, queue.name, encode_task(message),
                message_id=message.attempt_id)))
            index += 1

    streamer = threading.Thread(target=stream)
    streamer.start()
    try:
        eventually(lambda: len(events.finished(queue.run_uid)) >= 100, 30,
                   what="100 tasks done before the restart")
        restart_rabbitmq()
        after = len(published)
        eventually(lambda: len(published) >= after + 200, 30,
                   what="200 more tasks published after the restart")
    finally:
        stop.set()
        streamer.join()

    for _, future in published:
        future.result(timeout=60)  # every publish is confirmed in the end: none failed
    wanted = {attempt_id for attempt_id, _ in published}
    eventually(lambda: events.finished(queue.run_uid) >= wanted, 60,
               what=f"all {len(wanted)} confirmed tasks finished")
    assert {e.attempt_id for e in events.with_status("succeeded", queue.run_uid)} == wanted
    assert all(worker.exited() is None for worker in pool)
    # One worker may have drained the queue while the other was still backing off: give the
    # slower one time to come back rather than requiring both to have by now.
    def reconnected(output: str) -> bool:
        _, lost, after = output.partition("Lost RabbitMQ connection")
        return bool(lost) and "Connected to RabbitMQ" in after

    eventually(lambda: all(reconnected(worker.output()) for worker in pool), 30,
               what="every worker to log its reconnection")
    eventually(lambda: admin.inspect(queue.name).backlog == 0, 20, what="an empty queue")
    assert drain_queue(broker, queue.dead) == []

"""Acceptance of the worker SDK: real `conveyor-worker` processes on the real RabbitMQ.

Workers serve tests/integration/tasks_under_test.py; events are collected from a queue bound to
`task.*`. Every wait polls a condition with a deadline.
"""

from __future__ import annotations

import json
import random
import secrets
import signal
import socket
import time
import urllib.request
from collections import defaultdict
from pathlib import Path

import pytest

from conveyor import names
from conveyor.broker.codec import DETAIL_HEADER, REASON_HEADER, encode_task
from integration.helpers import TaskQueue, drain_queue, publish_tasks, wait_consuming
from support.waiting import eventually

pytestmark = pytest.mark.integration


def test_a_thousand_tasks_through_three_workers_report_each_final_event_once(
        admin, broker, task_queue, events, workers, publisher):
    queue = task_queue("echo")
    for _ in range(3):
        workers(queue, concurrency=4, CONVEYOR_LOG_LEVEL="WARNING")
    wait_consuming(admin, queue, 3)
    count = 1000
    publish_tasks(publisher, queue, [queue.message(i, {"i": i}) for i in range(count)])

    eventually(lambda: len(events.with_status("succeeded", queue.run_uid)) >= count, 90,
               what=f"{count} succeeded events")
    seen: dict[str, list[str]] = defaultdict(list)
    for event in events.all(queue.run_uid):
        seen[event.attempt_id].append(event.status)
    assert len(seen) == count
    # No-op tasks end within the started window: their final event is the only one.
    wrong = {key: statuses for key, statuses in seen.items() if statuses != ["succeeded"]}
    assert not wrong, f"{len(wrong)} attempts with other events, e.g. {list(wrong.items())[:3]}"
    workers_used = {e.worker for e in events.with_status("succeeded", queue.run_uid)}
    assert len(workers_used) == 3
    stats = admin.inspect(queue.name)
    assert stats is not None and stats.backlog == 0
    assert drain_queue(broker, queue.dead) == []


def _hold(queue, tmp_path: Path, index: int):
    release, holding = tmp_path / f"release-{index}", tmp_path / f"holding-{index}"
    return queue.message(index, {"release": str(release), "holding": str(holding)}), release, \
        holding


@pytest.mark.parametrize(("window", "timeout"), [
    ("0.3", None),  # still running after the window: started is sent then
    ("600", 60),  # a window it never reaches, but a timeout: started is sent at once
])
def test_a_task_seen_running_says_started_before_it_succeeds(
        admin, broker, task_queue, events, workers, publisher, tmp_path,
        window: str, timeout: int | None):
    queue = task_queue("hold")
    workers(queue, CONVEYOR_STARTED_AFTER_SECONDS=window)
    wait_consuming(admin, queue, 1)
    message, release, _ = _hold(queue, tmp_path, 0)
    publish_tasks(publisher, queue, [message.model_copy(update={"timeout_seconds": timeout})])
    eventually(lambda: events.with_status("started", queue.run_uid), 20,
               what="the started event of a task still running")
    assert not events.with_status("succeeded", queue.run_uid)
    release.touch()
    eventually(lambda: events.with_status("succeeded", queue.run_uid), 20,
               what="the succeeded event")
    assert [e.status for e in events.all(queue.run_uid)] == ["started", "succeeded"]


def test_a_task_whose_worker_is_killed_is_redelivered_to_another_and_finishes(
        admin, broker, task_queue, events, workers, publisher, tmp_path):
    queue = task_queue("hold")
    first = workers(queue)
    wait_consuming(admin, queue, 1)
    message, release, holding = _hold(queue, tmp_path, 0)
    publish_tasks(publisher, queue, [message])
    eventually(holding.exists, 20, what="the first worker holding the task")
    assert holding.read_text() == first.name

    first.signal(signal.SIGKILL)
    second = workers(queue)
    eventually(lambda: holding.read_text() == second.name, 30,
               what="the task redelivered to the second worker")
    release.touch()
    eventually(lambda: events.with_status("succeeded", queue.run_uid), 20,
               what="the succeeded event")
    [succeeded] = events.with_status("succeeded", queue.run_uid)
    assert succeeded.worker == second.name
    assert succeeded.outputs == {"released": True, "worker": second.name}
    eventually(lambda: admin.inspect(queue.name).backlog == 0, 10, what="an empty queue")


def test_sigterm_finishes_or_requeues_held_tasks_within_grace_and_exits_zero(
        admin, broker, task_queue, events, workers, publisher, tmp_path):
    queue = task_queue("hold")
    grace = 3.0
    draining = workers(queue, concurrency=2, CONVEYOR_GRACE_SECONDS=str(grace))
    wait_consuming(admin, queue, 1)
    (finishes, release_a, holding_a), (requeued, release_b, holding_b) = (
        _hold(queue, tmp_path, 0), _hold(queue, tmp_path, 1))
    publish_tasks(publisher, queue, [finishes, requeued])
    eventually(lambda: holding_a.exists() and holding_b.exists(), 20,
               what="the worker holding both tasks")

    signalled = time.monotonic()
    draining.signal(signal.SIGTERM)
    # (A quorum queue keeps counting a cancelled consumer while it holds messages, so the
    # worker's word is the signal here.)
    eventually(lambda: "Stopped taking tasks" in draining.output(), 10,
               what="the worker to stop consuming")
    later, release_c, holding_c = _hold(queue, tmp_path, 2)
    publish_tasks(publisher, queue, [later])  # must wait for another worker
    release_a.touch()  # one task finishes within the grace period, the other does not
    eventually(lambda: draining.exited() is not None, grace + 10, what="the worker to exit")
    assert draining.exited() == 0, draining.output()
    assert time.monotonic() - signalled < grace + 5
    assert "Requeued task attempt=" + requeued.attempt_id in draining.output()
    assert not holding_c.exists()

    release_b.touch()
    release_c.touch()
    successor = workers(queue, concurrency=2)
    eventually(lambda: len(events.finished(queue.run_uid)) == 3, 30,
               what="all three tasks finished")
    by_attempt = {e.attempt_id: e for e in events.with_status("succeeded", queue.run_uid)}
    assert by_attempt[finishes.attempt_id].worker == draining.name
    assert by_attempt[requeued.attempt_id].worker == successor.name
    assert by_attempt[later.attempt_id].worker == successor.name
    eventually(lambda: admin.inspect(queue.name).backlog == 0, 10, what="an empty queue")
    assert drain_queue(broker, queue.dead) == []


def test_a_task_that_kills_every_worker_is_dead_lettered_after_the_delivery_limit(
        admin, broker, task_queue, workers, publisher):
    limit = 2
    queue = task_queue("crash", delivery_limit=limit)
    publish_tasks(publisher, queue, [queue.message(0)])
    deaths = 0
    dead: list = []
    # A supervisor, as a Deployment is: start a worker whenever the last one died.
    while not dead:
        assert deaths <= limit + 1, f"still not dead-lettered after {deaths} crashes"
        worker = workers(queue)
        exited_or_dead = eventually(
            lambda w=worker: w.exited() is not None or admin.inspect(queue.dead).backlog, 30,
            what="the worker to crash or the message to be dead-lettered")
        if worker.exited() is not None:
            assert worker.exited() == -signal.SIGKILL
            deaths += 1
        del exited_or_dead
        if admin.inspect(queue.dead).backlog:
            dead = drain_queue(broker, queue.dead)
    assert deaths == limit + 1
    [(headers, body)] = dead
    assert headers["x-first-death-reason"] == "delivery_limit"
    assert body == encode_task(queue.message(0))
    assert admin.inspect(queue.name).backlog == 0


def test_told_the_limit_the_last_delivery_is_reported_failed_instead_of_run_again(
        admin, broker, task_queue, events, workers, publisher):
    """As the operator's workers are (CONVEYOR_DELIVERY_LIMIT): an attempt that took every
    worker down ends as a retryable failure the operator can act on, not as a dead letter
    nobody hears of (its run would wait on nothing)."""
    limit = 2
    queue = task_queue("crash", delivery_limit=limit)
    publish_tasks(publisher, queue, [queue.message(0)])
    deaths = 0
    while not events.with_status("failed", queue.run_uid):
        assert deaths <= limit, f"still not reported after {deaths} crashes"
        worker = workers(queue, CONVEYOR_DELIVERY_LIMIT=str(limit))
        eventually(lambda w=worker: w.exited() is not None
                   or events.with_status("failed", queue.run_uid), 30,
                   what="the worker to crash or the attempt to be reported failed")
        if worker.exited() is not None:
            deaths += 1
    assert deaths == limit
    [failed] = events.with_status("failed", queue.run_uid)
    assert failed.retryable and f"lost {limit} times" in (failed.error or "")
    assert failed.reason == "Lost"
    eventually(lambda: admin.inspect(queue.name).backlog == 0, 30, what="the task acked")
    assert worker.exited() is None  # the last worker lives: it did not run the task
    assert admin.inspect(queue.dead).backlog == 0


def test_malformed_task_bodies_are_dead_lettered_with_a_reason_and_the_worker_keeps_serving(
        admin, broker, task_queue, events, workers, publisher):
    queue = task_queue("echo")
    worker = workers(queue)
    wait_consuming(admin, queue, 1)
    valid = queue.message(0, {"ok": True})
    bad = {
        "not-json": b"\x00 not json",
        "not-an-object": b"[1, 2]",
        "unsupported-version": valid.model_dump_json(by_alias=True).replace(
            '"v":1', '"v":2').encode(),
        "invalid-fields": b'{"v": 1, "attemptId": "x/y/1"}',
        "wrong-task-type": queue.message(1).model_copy(update={"task_type": "other"})
        .model_dump_json(by_alias=True).encode(),
    }
    for body in bad.values():
        publisher.publish(names.TASKS_EXCHANGE, queue.name, body).result(10)
    publish_tasks(publisher, queue, [valid])

    eventually(lambda: events.with_status("succeeded", queue.run_uid), 20,
               what="the valid task to succeed after the malformed ones")
    eventually(lambda: admin.inspect(queue.dead).backlog == len(bad), 10,
               what="every malformed body dead-lettered")
    dead = drain_queue(broker, queue.dead)
    assert {headers[REASON_HEADER]: body for headers, body in dead} == bad
    assert all(headers[DETAIL_HEADER] for headers, _ in dead)
    assert worker.exited() is None
    assert worker.output().count("Dead-lettered a malformed task message") == len(bad)
    assert [e.attempt_id for e in events.all(queue.run_uid)] == [valid.attempt_id]


def _malformed_bodies(queue: TaskQueue) -> list[tuple[str, bytes]]:
    """(reason, body): every way a task body can be unusable that a worker must survive."""
    valid = queue.message(900).model_dump(by_alias=True, mode="json")

    def body(**changes: object) -> bytes:
        fields = {k: v for k, v in {**valid, **changes}.items() if v is not None}
        return json.dumps(fields).encode()

    garbage = random.Random(10)
    return [
        ("not-json", b""),
        ("not-json", b'{"v": 1, "attemptId": '),  # cut short
        ("not-json", b"\xff\xfe\x00 invalid UTF-8 \xc3\x28"),
        ("not-json", b'{"v": 1, "task": "\xff"}'),  # valid JSON bytes, invalid UTF-8 inside
        ("not-json", b"[" * 200_000),  # deeper than the decoder goes
        ("not-json", b"NaN-ish {"),
        *[("not-json", b"{" + garbage.randbytes(garbage.randrange(1, 64))) for _ in range(8)],
        ("not-an-object", b'"a string"'),
        ("not-an-object", b"null"),
        ("not-an-object", b"[1, 2, 3]"),
        ("unsupported-version", body(v=2)),
        ("unsupported-version", body(v="1")),
        ("unsupported-version", body(v=None)),
        ("invalid-fields", body(attemptId=None)),
        ("invalid-fields", body(attempt=0)),
        ("invalid-fields", body(inputs=[1, 2])),
        # (A field it does not know is no error: bodies are tolerant readers, DESIGN.md §3.)
        ("invalid-fields", body(attempt="one")),
        ("wrong-task-type", body(taskType="other")),
        ("wrong-task-type", body(taskType="ECHO")),
        ("too-large", b"[" + b"1," * (5 * 1024 * 1024) + b"1]"),  # 10 MiB of valid JSON
        ("too-large", body(inputs={"blob": "x" * (10 * 1024 * 1024)})),
    ]


def test_every_malformed_or_oversized_body_is_dead_lettered_with_its_reason(
        admin, broker, task_queue, events, workers, publisher):
    """The set above, then a valid task: each bad body ends in .dead with its reason and a
    detail, the valid one succeeds, and the worker is alive and serving throughout."""
    queue = task_queue("echo")
    worker = workers(queue)
    wait_consuming(admin, queue, 1)
    bad = _malformed_bodies(queue)
    for _, body in bad:
        publisher.publish(names.TASKS_EXCHANGE, queue.name, body).result(30)
    valid = queue.message(0, {"after": "the malformed ones"})
    publish_tasks(publisher, queue, [valid])

    eventually(lambda: events.with_status("succeeded", queue.run_uid), 60,
               what="the valid task to succeed after every malformed one")
    eventually(lambda: admin.inspect(queue.dead).backlog == len(bad), 30,
               what="every malformed body dead-lettered")
    dead = drain_queue(broker, queue.dead)
    assert sorted((h[REASON_HEADER], b) for h, b in dead) == sorted(bad)
    assert all(h[DETAIL_HEADER] for h, _ in dead)
    assert worker.exited() is None
    assert worker.output().count("Dead-lettered a malformed task message") == len(bad)
    assert admin.inspect(queue.name).backlog == 0


def test_failures_are_reported_with_their_class_and_metrics_count_outcomes(
        admin, task_queue, events, workers, publisher):
    queue = task_queue("flaky")
    port = _free_port()
    workers(queue, concurrency=2, CONVEYOR_METRICS_PORT=str(port),
            CONVEYOR_METRICS_ADDRESS="127.0.0.1", CONVEYOR_MAX_OUTPUT_BYTES="1000")
    wait_consuming(admin, queue, 1)
    messages = [queue.message(0, {"fail": "retryable"}), queue.message(1, {"fail": "bug"}),
                queue.message(2, {"size": 5000}), queue.message(3, {"size": 10}),
                queue.message(4, {"fail": "refused"})]
    publish_tasks(publisher, queue, messages)
    eventually(lambda: len(events.finished(queue.run_uid)) == 5, 20, what="five outcomes")
    final = {e.attempt_id: e for e in events.all(queue.run_uid) if e.status != "started"}
    retryable, bug, too_big, fine, refused = (final[m.attempt_id] for m in messages)
    assert (retryable.status, retryable.retryable, retryable.error, retryable.reason) == (
        "failed", True, "try again", "Error")
    # The task's non_retryable names LookupError: its KeyError is final.
    assert (bug.status, bug.retryable, bug.error, bug.reason, bug.error_type) == (
        "failed", False, "KeyError: 'missing'", "NonRetryable", "KeyError")
    assert bug.started_at is not None and bug.at is not None and bug.started_at <= bug.at
    # Any other exception is retried under the task's retry policy.
    assert (refused.retryable, refused.reason, refused.error_type) == (
        True, "Error", "ConnectionRefusedError")
    assert too_big.status == "failed" and not too_big.retryable
    assert "OutputTooLarge" in (too_big.error or "")
    assert fine.status == "succeeded" and fine.outputs == {"big": "x" * 10}

    def scraped() -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as page:
            return page.read().decode()

    # The worker counts an outcome once the broker confirmed its event, which may be a moment
    # after the event reached us.
    expected = [
        'conveyor_worker_tasks_total{outcome="succeeded",task_type="flaky"} 1.0',
        'conveyor_worker_tasks_total{outcome="failed",task_type="flaky"} 2.0',
        'conveyor_worker_tasks_total{outcome="retryable",task_type="flaky"} 2.0',
        'conveyor_worker_tasks_in_flight{task_type="flaky"} 0.0',
        'conveyor_worker_task_duration_seconds_count{task_type="flaky"} 5.0',
    ]

    def all_counted() -> bool:
        text = scraped()
        missing = [line for line in expected if line not in text]
        assert not missing, f"missing {missing}"
        return True

    eventually(all_counted, 10, what="every outcome counted")


def test_a_worker_started_before_its_queue_exists_waits_for_it(
        admin, events, workers, publisher):
    queue = TaskQueue(f"t{secrets.token_hex(3)}", "wf", "noop-async")
    worker = workers(queue)
    eventually(lambda: "Stopped consuming" in worker.output(), 20,
               what="the worker to find no queue")
    admin.declare_task_queue(queue.name, delivery_limit=1)
    try:
        wait_consuming(admin, queue, 1)
        publish_tasks(publisher, queue, [queue.message(0)])
        eventually(lambda: events.with_status("succeeded", queue.run_uid), 20,
                   what="the task to succeed")
        assert events.with_status("succeeded", queue.run_uid)[0].outputs == {"async": True}
    finally:
        admin.delete_task_queue(queue.name)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])

"""Values by reference through real `conveyor-worker` processes, the test bed's RabbitMQ and
its S3 server: outputs over the inline limit are stored and published as a `$ref`, inputs
that are references reach the function as values, and a 50 MB value goes from one attempt's
outputs to another's inputs intact.

Each test has a key prefix of its own in the session's bucket. Every wait polls a condition
with a deadline.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import secrets
from collections.abc import Iterator
from typing import Any

import pytest

from conveyor.models import TaskEvent
from conveyor.store import ObjectRef, ObjectStore, StoreSettings, Values
from conveyor.store import values as v
from conveyor.stored import is_ref
from integration.helpers import TaskQueue, publish_tasks, store_env, wait_consuming
from integration.tasks_under_test import blob_of
from support.waiting import eventually

pytestmark = pytest.mark.integration


@pytest.fixture
def store(store_settings: StoreSettings) -> Iterator[ObjectStore]:
    """The session's bucket under a prefix of this test's own."""
    settings = dataclasses.replace(store_settings,
                                   prefix=f"{store_settings.prefix}{secrets.token_hex(4)}")
    with ObjectStore(settings) as store:
        yield store


def _final(events: Any, queue: TaskQueue, attempt_id: str, timeout: float) -> TaskEvent:
    def ended() -> TaskEvent | None:
        return next((e for e in events.all(queue.run_uid) if e.attempt_id == attempt_id
                     and e.status in ("succeeded", "failed")), None)

    found = eventually(ended, timeout, what=f"the outcome of {attempt_id}")
    assert found is not None
    return found


def _stored_bytes(store: ObjectStore, ref: dict[str, Any]) -> bytes:
    """The object a `$ref` names, read and checked against its size and sha256."""
    body = ref["$ref"]
    return store.get(ObjectRef(body["store"], body["key"], body["size"], body["sha256"]))


def test_outputs_of_a_megabyte_are_published_as_a_reference_to_the_object(
        admin, task_queue, events, workers, publisher, store):
    queue = task_queue("blob")
    worker = workers(queue, **store_env(store.settings))
    wait_consuming(admin, queue, 1)
    small, large = queue.message(0, {"size": 100}), queue.message(1, {"size": 1_000_000})
    publish_tasks(publisher, queue, [small, large])

    inline = _final(events, queue, small.attempt_id, 30)
    assert inline.outputs == {"blob": blob_of(100, 0)}
    stored = _final(events, queue, large.attempt_id, 60)
    assert stored.status == "succeeded", stored.error
    assert stored.outputs is not None and is_ref(stored.outputs)
    ref = stored.outputs["$ref"]
    key = v.attempt_key(v.run_prefix(queue.namespace, queue.workflow, queue.run_uid),
                        "step", 1, 1, "outputs")
    assert (ref["store"], ref["key"]) == (store.settings.bucket, store.settings.full_key(key))
    data = _stored_bytes(store, stored.outputs)
    assert hashlib.sha256(data).hexdigest() == ref["sha256"] and len(data) == ref["size"]
    assert json.loads(data) == {"blob": blob_of(1_000_000, 0)}
    assert f"Stored outputs attempt={large.attempt_id}" in worker.output()


def test_inputs_that_are_references_reach_the_function_as_values(
        admin, task_queue, events, workers, publisher, store):
    values = Values(store)
    report = {"rows": [{"n": i} for i in range(20)]}
    report_ref = values.save("up/report.json", report)
    items = [{"item": i} for i in range(6)]
    prefix = "up/fan/items/"
    chunks = [values.save_chunk(prefix, seq, [(i, items[i]) for i in range(seq, 6, 2)])
              for seq in range(2)]
    items_ref = v.ItemsRef(store.settings.bucket, store.settings.full_key(prefix),
                           sum(c.size for c in chunks), len(items), len(chunks)).to_json()
    whole_ref = values.save("up/inputs.json", {"report": report_ref, "n": 2})

    queue = task_queue("echo")
    workers(queue, **store_env(store.settings))
    wait_consuming(admin, queue, 1)
    fields = queue.message(0, {"report": report_ref, "items": items_ref, "n": 1})
    whole = queue.message(1, whole_ref)
    publish_tasks(publisher, queue, [fields, whole])

    by_fields = _final(events, queue, fields.attempt_id, 30)
    assert by_fields.status == "succeeded", by_fields.error
    assert by_fields.outputs == {"echo": {"report": report, "items": items, "n": 1},
                                 "attempt": 1}
    by_whole = _final(events, queue, whole.attempt_id, 30)
    assert by_whole.status == "succeeded", by_whole.error
    assert by_whole.outputs == {"echo": {"report": report, "n": 2}, "attempt": 1}


def test_an_input_whose_object_is_gone_fails_the_attempt_for_good_naming_it(
        admin, task_queue, events, workers, publisher, store):
    ref = Values(store).save("up/gone.json", {"a": 1})
    store.delete("up/gone.json")
    queue = task_queue("echo")
    workers(queue, **store_env(store.settings))
    wait_consuming(admin, queue, 1)
    message = queue.message(0, {"report": ref})
    publish_tasks(publisher, queue, [message])

    failed = _final(events, queue, message.attempt_id, 30)
    assert (failed.status, failed.retryable) == ("failed", False)
    where = f"s3://{store.settings.bucket}/{store.settings.full_key('up/gone.json')}"
    assert f"cannot read input 'report' from the object store: the stored value {where} is" \
           " gone" in (failed.error or "")


def test_fifty_megabytes_from_one_attempts_outputs_to_anothers_inputs(
        admin, task_queue, events, workers, publisher, store):
    size = 50 * 1024 * 1024
    queue = task_queue("blob")
    workers(queue, **store_env(store.settings))
    wait_consuming(admin, queue, 1)
    producer = queue.message(0, {"size": size, "seed": 50})
    publish_tasks(publisher, queue, [producer])
    made = _final(events, queue, producer.attempt_id, 120)
    assert made.status == "succeeded", made.error
    assert made.outputs is not None and is_ref(made.outputs)

    # The object is the outputs, byte for byte: the reference's sha256 is the object's.
    expected = json.dumps({"blob": blob_of(size, 50)}, separators=(",", ":")).encode()
    assert made.outputs["$ref"]["size"] == len(expected)
    assert made.outputs["$ref"]["sha256"] == hashlib.sha256(expected).hexdigest()
    assert _stored_bytes(store, made.outputs) == expected

    # Passed through as another attempt's input (as the operator passes an upstream output),
    # the function gets the value back: it reports the sha256 of what it was given.
    consumer = queue.message(1, {"data": made.outputs})
    publish_tasks(publisher, queue, [consumer])
    read = _final(events, queue, consumer.attempt_id, 120)
    assert read.status == "succeeded", read.error
    assert read.outputs == {"sha256": hashlib.sha256(expected).hexdigest(),
                            "length": len(expected), "type": "dict"}

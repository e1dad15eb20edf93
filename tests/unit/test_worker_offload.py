"""Values passed by reference (worker/offload.py), through an in-memory store: which outputs
are stored and which travel inline, inputs resolved before the function sees them, and what
each failure says and whether it is retryable."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from datetime import UTC, datetime
from typing import Any

import pytest

from conveyor.broker.settings import BrokerSettings
from conveyor.models import TaskMessage
from conveyor.store import (
    AccessDeniedError,
    StoreError,
    StoreSettings,
    TooLargeError,
    Values,
)
from conveyor.store import values as v
from conveyor.stored import is_ref, refs_in
from conveyor.worker import TaskContext, task
from conveyor.worker.offload import NO_STORE_ADVICE, NO_STORE_FOR_INPUTS, Offload
from conveyor.worker.registry import ATTRIBUTE, TaskDefinition
from conveyor.worker.settings import WorkerSettings
from unit.blobs import MemoryBlobs

BUCKET = "outputs-bucket"
STORE = StoreSettings(bucket=BUCKET, access_key="ak", secret_key="sk", prefix="p/")
NO_STORE = WorkerSettings(module="m", broker=BrokerSettings("amqp://u:p@h/"), queue="q",
                          task_type="kind")
WITH_STORE = dataclasses.replace(NO_STORE, store=STORE)
MESSAGE = TaskMessage(attempt_id="uid/t/3", namespace="ns", workflow="wf", run="r",
                      run_uid="uid", task="t", attempt=3, task_type="kind")
OUTPUTS_KEY = "p/ns/wf/uid/t/-/3/outputs.json"


def definition(function: Any) -> TaskDefinition:
    found = getattr(task("kind")(function), ATTRIBUTE)
    assert isinstance(found, TaskDefinition)
    return found


def returning(outputs: dict[str, Any]) -> TaskDefinition:
    return definition(lambda inputs, ctx: outputs)


class Recorder:
    """A task that records the inputs it was called with and returns `outputs`."""

    def __init__(self, outputs: dict[str, Any] | None = None) -> None:
        self.outputs = {"ok": True} if outputs is None else outputs
        self.seen: list[dict[str, Any]] = []
        self.definition = definition(self)

    def __call__(self, inputs: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
        self.seen.append(inputs)
        return self.outputs


def run(offload: Offload, definition: TaskDefinition, message: TaskMessage = MESSAGE) -> Any:
    ctx = TaskContext(message, "worker-0", datetime.now(UTC), lambda progress: None)
    return offload.attempt(definition, message, ctx)


def stored(blobs: MemoryBlobs) -> Offload:
    return Offload(WITH_STORE, blobs)


def sized(size: int) -> dict[str, Any]:
    """Outputs whose compact JSON is `size` bytes."""
    return {"blob": "x" * (size - len('{"blob":""}'))}


# --- outputs -------------------------------------------------------------------------------


def test_outputs_over_the_inline_limit_are_stored_and_their_reference_published():
    blobs = MemoryBlobs(BUCKET)
    outputs = {"rows": [{"n": i, "name": f"row {i}"} for i in range(400)], "é": "ü"}
    outcome = run(stored(blobs), returning(outputs))

    assert outcome.status == "succeeded"
    assert is_ref(outcome.outputs)
    ref = outcome.outputs["$ref"]
    data = blobs.objects[OUTPUTS_KEY]
    assert ref == {"store": BUCKET, "key": OUTPUTS_KEY, "size": len(data),
                   "sha256": hashlib.sha256(data).hexdigest()}
    assert json.loads(data) == outputs
    # What the operator reads back is what the function returned.
    assert Values(blobs).load(outcome.outputs) == outputs


def test_outputs_within_the_inline_limit_travel_inline_and_the_store_is_not_touched():
    blobs = MemoryBlobs(BUCKET)
    exactly = sized(WITH_STORE.inline_output_bytes)
    assert run(stored(blobs), returning(exactly)).outputs == exactly
    assert run(stored(blobs), returning({})).outputs == {}
    assert blobs.calls == []


def test_a_redelivered_attempt_overwrites_its_own_object_and_others_get_theirs():
    blobs = MemoryBlobs(BUCKET)
    offload = stored(blobs)
    first = run(offload, returning(sized(5000)))
    again = run(offload, returning(sized(6000)))  # the same attempt, delivered again
    assert first.outputs["$ref"]["key"] == again.outputs["$ref"]["key"] == OUTPUTS_KEY
    assert len(blobs.objects[OUTPUTS_KEY]) == 6000
    item = MESSAGE.model_copy(update={"index": 7, "attempt": 1, "attempt_id": "uid/t[7]/1"})
    assert run(offload, returning(sized(5000)), item).outputs["$ref"]["key"] == (
        "p/ns/wf/uid/t/7/1/outputs.json")
    assert sorted(blobs.objects) == ["p/ns/wf/uid/t/-/3/outputs.json",
                                     "p/ns/wf/uid/t/7/1/outputs.json"]


def test_without_a_store_outputs_over_the_inline_limit_travel_inline_up_to_the_cap():
    offload = Offload(NO_STORE)
    over_inline = sized(NO_STORE.inline_output_bytes + 1)
    assert run(offload, returning(over_inline)).outputs == over_inline  # the operator decides

    outcome = run(offload, returning(sized(NO_STORE.max_output_bytes + 1)))
    assert (outcome.status, outcome.retryable) == ("failed", False)
    assert outcome.error == (
        f"OutputTooLarge: the outputs are {NO_STORE.max_output_bytes + 1} bytes, over the cap"
        f" of {NO_STORE.max_output_bytes} bytes (CONVEYOR_MAX_OUTPUT_BYTES); configure an"
        " object store (CONVEYOR_S3_BUCKET and the other CONVEYOR_S3_* settings; the chart's"
        " store.* values) to pass larger outputs by reference")
    assert NO_STORE_ADVICE in outcome.error


def test_with_a_store_the_cap_is_the_largest_object_and_the_message_names_it():
    blobs = MemoryBlobs(BUCKET)
    settings = dataclasses.replace(WITH_STORE, max_object_bytes=200_000)
    offload = Offload(settings, blobs)
    # Past CONVEYOR_MAX_OUTPUT_BYTES (64 KiB), which only applies without a store.
    assert is_ref(run(offload, returning(sized(100_000))).outputs)

    outcome = run(offload, returning(sized(200_001)))
    assert (outcome.status, outcome.retryable) == ("failed", False)
    assert outcome.error == (
        "OutputTooLarge: the outputs are 200001 bytes, over the cap of 200000 bytes"
        " (CONVEYOR_S3_MAX_OBJECT_BYTES, the largest object this worker stores)")
    assert [op for op, _ in blobs.calls] == ["put"]  # the first one only


@pytest.mark.parametrize(("error", "retryable"), [
    (StoreError("put s3://outputs-bucket/p/k: no answer from the store (ConnectTimeout)"),
     True),
    (AccessDeniedError("put s3://outputs-bucket/p/k: the store answered 403 AccessDenied"),
     False),
    (TooLargeError("the outputs document is 9 bytes, over the 8-byte limit of"
                   " CONVEYOR_S3_MAX_OBJECT_BYTES"), False),
])
def test_outputs_the_store_refuses_fail_the_attempt_naming_the_object(error: StoreError,
                                                                      retryable: bool):
    blobs = MemoryBlobs(BUCKET)
    blobs.fail("put", error)
    outcome = run(stored(blobs), returning(sized(5000)))
    assert (outcome.status, outcome.retryable) == ("failed", retryable)
    assert outcome.error == f"cannot store outputs at s3://{BUCKET}/{OUTPUTS_KEY}: {error}"
    assert outcome.outputs is None


def test_a_failed_function_stores_nothing():
    def bug(inputs: dict[str, Any], ctx: TaskContext) -> None:
        raise KeyError("sku")

    blobs = MemoryBlobs(BUCKET)
    outcome = run(stored(blobs), definition(bug))
    assert outcome.error == "KeyError: 'sku'"
    assert blobs.calls == []


# --- inputs --------------------------------------------------------------------------------


def items_ref(blobs: MemoryBlobs, items: list[Any]) -> dict[str, Any]:
    """A forEach task's item outputs in two chunks, as the operator writes them."""
    values = Values(blobs)
    prefix = v.items_prefix(v.run_prefix("ns", "wf", "uid"), "fan")
    half = len(items) // 2
    first = values.save_chunk(prefix, 0, [(i, items[i]) for i in range(half)])
    second = values.save_chunk(prefix, 1, [(i, items[i]) for i in range(half, len(items))])
    return v.ItemsRef(BUCKET, blobs.prefix + prefix, first.size + second.size, len(items),
                      2).to_json()


def test_field_references_are_resolved_and_the_function_sees_plain_values():
    blobs = MemoryBlobs(BUCKET)
    values = Values(blobs)
    report = {"rows": list(range(2000))}
    report_ref = values.save("ns/wf/uid/upstream/-/1/outputs.json", report)
    items = [{"n": i} for i in range(5)]
    inputs = {"report": report_ref, "items": items_ref(blobs, items),
              "both": [report_ref, 1], "plain": {"kept": [1, 2]}, "n": 3}
    recorder = Recorder()
    outcome = run(stored(blobs), recorder.definition,
                  MESSAGE.model_copy(update={"inputs": inputs}))

    assert outcome.status == "succeeded", outcome.error
    [seen] = recorder.seen
    assert seen == {"report": report, "items": items, "both": [report, 1],
                    "plain": {"kept": [1, 2]}, "n": 3}
    assert refs_in(seen) == []


def test_inputs_stored_whole_are_the_map_the_function_sees():
    blobs = MemoryBlobs(BUCKET)
    values = Values(blobs)
    upstream = values.save("ns/wf/uid/upstream/-/1/outputs.json", [1, 2, 3])
    inputs = {"big": "y" * 100_000, "upstream": upstream}
    whole = values.save("ns/wf/uid/t/-/3/inputs.json", inputs)
    recorder = Recorder()
    outcome = run(stored(blobs), recorder.definition,
                  MESSAGE.model_copy(update={"inputs": whole}))
    assert outcome.status == "succeeded", outcome.error
    assert recorder.seen == [{"big": "y" * 100_000, "upstream": [1, 2, 3]}]


def test_inputs_without_references_never_touch_the_store():
    blobs = MemoryBlobs(BUCKET)
    recorder = Recorder()
    inputs = {"a": [1, {"$ref": 1, "other": 2}], "b": {"c": {"$ref": {"deep": True}}}}
    run(stored(blobs), recorder.definition, MESSAGE.model_copy(update={"inputs": inputs}))
    assert recorder.seen == [inputs]
    assert blobs.calls == []


def _input_failure(blobs: MemoryBlobs, inputs: dict[str, Any],
                   settings: WorkerSettings = WITH_STORE) -> Any:
    recorder = Recorder()
    offload = Offload(settings, blobs if settings.store else None)
    outcome = run(offload, recorder.definition, MESSAGE.model_copy(update={"inputs": inputs}))
    assert outcome.status == "failed"
    assert recorder.seen == [], "the function ran on inputs it could not be given"
    return outcome


def test_an_input_whose_object_is_gone_fails_for_good_naming_the_key():
    blobs = MemoryBlobs(BUCKET)
    ref = Values(blobs).save("ns/wf/uid/upstream/-/1/outputs.json", {"a": 1})
    blobs.objects.clear()
    outcome = _input_failure(blobs, {"report": ref})
    assert not outcome.retryable
    key = "p/ns/wf/uid/upstream/-/1/outputs.json"
    assert outcome.error.startswith(f"cannot read input 'report' from the object store: the"
                                    f" stored value s3://{BUCKET}/{key} is gone")


def test_an_input_the_store_cannot_serve_now_fails_retryably_naming_the_store():
    blobs = MemoryBlobs(BUCKET)
    ref = Values(blobs).save("ns/wf/uid/upstream/-/1/outputs.json", {"a": 1})
    error = StoreError(f"get s3://{BUCKET}/p/ns/wf/uid/upstream/-/1/outputs.json: the store"
                       " answered 503 SlowDown")
    blobs.fail("get", error)
    outcome = _input_failure(blobs, {"report": ref})
    assert outcome.retryable
    assert outcome.error == f"cannot read input 'report' from the object store: {error}"


def test_an_input_whose_bytes_changed_fails_for_good():
    blobs = MemoryBlobs(BUCKET)
    ref = Values(blobs).save("ns/wf/uid/upstream/-/1/outputs.json", {"a": 1})
    blobs.objects["p/ns/wf/uid/upstream/-/1/outputs.json"] = b'{"a":2}'
    outcome = _input_failure(blobs, {"report": ref})
    assert not outcome.retryable
    assert "cannot read input 'report'" in outcome.error and "sha256" in outcome.error


def test_items_with_a_chunk_gone_fail_for_good():
    blobs = MemoryBlobs(BUCKET)
    ref = items_ref(blobs, [{"n": 0}, {"n": 1}])
    del blobs.objects["p/ns/wf/uid/fan/items/000001.json"]
    outcome = _input_failure(blobs, {"items": ref})
    assert not outcome.retryable
    assert f"s3://{BUCKET}/p/ns/wf/uid/fan/items/000001.json is gone" in outcome.error


def test_an_input_over_the_largest_object_fails_for_good_naming_the_setting():
    blobs = MemoryBlobs(BUCKET)
    ref = Values(blobs).save("ns/wf/uid/upstream/-/1/outputs.json", sized(5000))
    outcome = _input_failure(blobs, {"report": ref},
                             dataclasses.replace(WITH_STORE, max_object_bytes=4000))
    assert not outcome.retryable
    assert "CONVEYOR_S3_MAX_OBJECT_BYTES" in outcome.error
    assert ("get", ref["$ref"]["key"]) not in blobs.calls  # refused before the download


def test_whole_inputs_that_are_not_a_map_fail_for_good():
    blobs = MemoryBlobs(BUCKET)
    whole = Values(blobs).save("ns/wf/uid/t/-/3/inputs.json", [1, 2])
    outcome = _input_failure(blobs, whole)
    assert not outcome.retryable
    assert outcome.error == "the stored inputs are a list, not a map of inputs"


def test_references_without_a_store_fail_for_good_saying_what_to_configure():
    ref = {"$ref": {"store": BUCKET, "key": "p/k.json", "size": 2, "sha256": "0" * 64}}
    for inputs in ({"report": ref}, ref, {"items": [ref]}):
        outcome = _input_failure(MemoryBlobs(BUCKET), inputs, NO_STORE)
        assert not outcome.retryable
        assert outcome.error == NO_STORE_FOR_INPUTS
    assert NO_STORE_FOR_INPUTS == ("the inputs are stored in the object store but this worker"
                                   " has no store configured (CONVEYOR_S3_*)")


def test_blobs_go_with_a_store_and_only_with_one():
    with pytest.raises(ValueError, match="exactly when"):
        Offload(WITH_STORE)
    with pytest.raises(ValueError, match="exactly when"):
        Offload(NO_STORE, MemoryBlobs())


"""The run loop with an object store, through the fakes and an in-memory store: forEach item
outputs written before the status that counts them, a chunk write that fails (retried, or
the run fails naming the store), stored values read for the engine, a run's objects deleted
with it (what a live run reuses stays) and the sweep of runs deleted unseen."""

from __future__ import annotations

from typing import Any

from conveyor.models import TaskMessage
from conveyor.operator.runs.storage import RunStorage, ValueCache
from conveyor.store import AccessDeniedError, StoreError, Values
from conveyor.store import values as sv
from conveyor.stored import REF, is_items_ref
from unit.blobs import MemoryBlobs
from unit.fakes import RUNS, Bed, Workers, drive, run_body, task_of, workflow_spec

FAN_OUT = workflow_spec(
    {"name": "work", "forEach": "${{ inputs.xs }}", "inputs": {"x": "${{ item }}"}},
    {"name": "sum", "dependsOn": ["work"], "inputs": {"values": "${{ tasks.work.outputs }}"}},
    outputs={"total": "${{ tasks.sum.outputs.total }}"})


class Recording(MemoryBlobs):
    """Remembers, for each object written, how many statuses of run r1 were written before."""

    def __init__(self) -> None:
        super().__init__()
        self.bed: Bed | None = None
        self.writes_before: dict[str, int] = {}

    def put(self, key: str, data: bytes) -> Any:
        ref = super().put(key, data)
        if self.bed is not None:
            self.writes_before[ref.key] = len(self.bed.written("r1"))
        return ref


def storage(blobs: MemoryBlobs, cache_bytes: int = 1 << 20) -> RunStorage:
    return RunStorage(Values(blobs), blobs, bucket="b", key_prefix="p/",
                      cache_bytes=cache_bytes, backoff=0.001)


async def run_until(bed: Bed, spec: dict[str, Any], script: Any, *phases: str,
                    inputs: dict[str, Any] | None = None, timeout: float = 3.0) -> dict[str, Any]:
    """Run r1 of `spec` with workers following `script` until it reaches one of `phases`;
    its last status. The run is in the API's list too, as the sweep at start looks there."""
    bed.add_workflow(spec)
    bed.kube.objects[RUNS].append(run_body("r1", inputs=inputs))
    bed.start()
    bed.add_run("r1", inputs=inputs)
    await Workers(bed, script).serve_until(
        lambda: (bed.status("r1") or {}).get("phase") in phases, timeout=timeout,
        what=f"r1 to be {'/'.join(phases)}")
    return bed.last("r1")


def summing(task: TaskMessage, values: Values) -> list[tuple[str, dict[str, Any]]]:
    """A worker: items give {"n": x}; the fan-in sums what its stored inputs hold."""
    if task.task == "work":
        return [("succeeded", {"outputs": {"n": task.inputs["x"]}})]
    inputs = values.resolve(task.inputs)
    return [("succeeded", {"outputs": {"total": sum(v["n"] for v in inputs["values"])}})]


def test_item_outputs_are_stored_before_the_status_that_counts_them() -> None:
    blobs = Recording()

    async def scenario() -> None:
        bed = Bed(storage=storage(blobs))
        blobs.bed = bed
        status = await run_until(bed, FAN_OUT, lambda t: summing(t, Values(blobs)),
                                 "Succeeded", inputs={"xs": list(range(40))})
        assert status["outputs"] == {"total": sum(range(40))}
        for status in bed.written("r1"):
            ref = task_of(status, "work").get("outputs")
            if ref is None:
                continue
            assert is_items_ref(ref), "item outputs never go inline with a store"
            for seq in range(ref[REF]["chunks"]):
                key = sv.chunk_key(ref[REF]["key"], seq)
                assert key in blobs.objects, f"a status counts {key}, never written"
                assert blobs.writes_before[key] < bed.written("r1").index(status) + 1
        final = task_of(bed.last("r1"), "work")["outputs"]
        assert Values(blobs).load(final) == [{"n": i} for i in range(40)]
        [fan_in] = [p.task() for p in bed.link.tasks() if p.task().task == "sum"]
        assert fan_in.inputs == {"values": final}, "the fan-in gets the reference"

    drive(scenario)


def test_a_chunk_the_store_refuses_for_a_while_is_written_once_it_is_back() -> None:
    blobs = MemoryBlobs()
    blobs.fail("put", StoreError("put s3://b/...: no answer from the store"), times=3)

    async def scenario() -> None:
        bed = Bed(storage=storage(blobs))
        status = await run_until(bed, FAN_OUT, lambda t: summing(t, Values(blobs)),
                                 "Succeeded", inputs={"xs": [1, 2, 3]})
        assert status["outputs"] == {"total": 6}

    drive(scenario)


def test_a_store_that_refuses_writes_fails_the_run_naming_it() -> None:
    blobs = MemoryBlobs()
    blobs.fail("put", AccessDeniedError("put s3://b/p/x: the store answered 403 AccessDenied"),
               times=100)

    async def scenario() -> None:
        bed = Bed(storage=storage(blobs))
        status = await run_until(bed, FAN_OUT, lambda t: summing(t, Values(blobs)),
                                 "Failed", inputs={"xs": [1, 2, 3]})
        message = status["message"]
        assert "cannot store item outputs" in message and "AccessDenied" in message

    drive(scenario)


GEN = workflow_spec(
    {"name": "gen"},
    {"name": "work", "dependsOn": ["gen"], "forEach": "${{ tasks.gen.outputs.items }}",
     "inputs": {"x": "${{ item }}"}})


def test_a_for_each_over_stored_outputs_reads_them_once() -> None:
    blobs = MemoryBlobs()
    ref = Values(blobs).save("ns/wf/uid-r1/gen/-/1/outputs.json",
                             {"items": list(range(1200))})

    def script(task: TaskMessage) -> list[tuple[str, dict[str, Any]]]:
        return [("succeeded", {"outputs": ref if task.task == "gen" else {}})]

    async def scenario() -> None:
        bed = Bed(storage=storage(blobs))
        await run_until(bed, GEN, script, "Succeeded", timeout=25)
        xs = sorted(p.task().inputs["x"] for p in bed.link.tasks() if p.task().task == "work")
        assert xs == list(range(1200))
        assert [c for c in blobs.calls if c[0] == "get"] == [("get", ref[REF]["key"])]

    drive(scenario, timeout=30)


def test_a_for_each_over_outputs_whose_object_is_gone_fails_naming_the_key() -> None:
    blobs = MemoryBlobs()
    ref = Values(blobs).save("ns/wf/uid-r1/gen/-/1/outputs.json", {"items": [1]})
    blobs.objects.clear()

    async def scenario() -> None:
        bed = Bed(storage=storage(blobs))
        status = await run_until(bed, GEN, lambda t: [("succeeded", {"outputs": ref})], "Failed")
        work = task_of(status, "work")
        assert work["reason"] == "StoreError"
        assert ref[REF]["key"] in work["message"] and "is gone" in work["message"]

    drive(scenario)


def test_without_a_store_a_reference_fails_the_task_saying_what_to_configure() -> None:
    blobs = MemoryBlobs()
    ref = Values(blobs).save("k.json", {"items": [1]})

    async def scenario() -> None:
        bed = Bed()
        status = await run_until(bed, GEN, lambda t: [("succeeded", {"outputs": ref})], "Failed")
        assert "CONVEYOR_S3_BUCKET" in task_of(status, "work")["message"]

    drive(scenario)


def test_a_deleted_run_takes_its_objects_but_not_what_a_live_run_reuses() -> None:
    blobs = MemoryBlobs()
    values = Values(blobs)
    mine = values.save("ns/wf/uid-old/gen/-/1/outputs.json", [1])
    values.save("ns/wf/uid-old/work/items/000000.json", [2])
    reused = values.save("ns/wf/uid-old/keep/-/1/outputs.json", [3])

    async def scenario() -> None:
        bed = Bed(storage=storage(blobs))
        bed.start()
        old = run_body("old", uid="uid-old")
        old["metadata"]["namespace"] = "ns"
        old["spec"]["workflowRef"]["name"] = "wf"
        retry = run_body("retry", uid="uid-new")
        retry["spec"]["reuse"] = {"keep": reused}
        bed.kube.objects[RUNS].append(retry | {"metadata": {**retry["metadata"],
                                                             "namespace": "ns"}})
        bed.manager.deleted(old)
        await bed.until(lambda: sorted(blobs.objects) == [reused[REF]["key"]],
                        what="the run's objects to go, but the one reused")
        assert mine[REF]["key"] not in blobs.objects

    drive(scenario)


def test_the_sweep_removes_objects_of_runs_deleted_while_no_operator_watched() -> None:
    blobs = MemoryBlobs()
    values = Values(blobs)
    gone = values.save("ns/wf/uid-gone/a/-/1/outputs.json", [1])
    live = values.save("ns/wf/uid-r1/a/-/1/outputs.json", [2])

    async def scenario() -> None:
        bed = Bed(storage=storage(blobs))
        body = run_body("r1")
        bed.kube.objects[RUNS].append(body)
        bed.start([body])
        await bed.until(lambda: gone[REF]["key"] not in blobs.objects, what="the sweep")
        assert live[REF]["key"] in blobs.objects

    drive(scenario)


def test_the_value_cache_drops_the_least_recently_used_past_its_bound() -> None:
    cache = ValueCache(max_bytes=100)
    cache.put("a", [1], 40)
    cache.put("b", [2], 40)
    assert cache["a"] == [1]  # a is now the most recent
    cache.put("c", [3], 40)
    assert sorted(cache) == ["a", "c"] and cache.bytes == 80
    cache.put("huge", [4], 500)
    assert list(cache) == ["huge"], "the newest stays, even over the bound"

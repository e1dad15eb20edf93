"""The engine with an object store: forEach item outputs in chunks (written before the status
that counts them), work that waits for stored values (Load, Loaded) and survives a rebuild,
stored outputs passed on by reference, long forEach lists held in pages."""

from __future__ import annotations

import json
from typing import Any

import pytest

from conveyor import engine
from conveyor.errors import InvalidStatusError
from conveyor.store import values as sv
from conveyor.stored import REF, is_items_ref, ref_id
from unit.builders import compiled, task
from unit.driving import Driver

STORE = engine.StoreTarget("b", "ns/wf/run-1/", "p/ns/wf/run-1/")


def doc(key: str, size: int = 10) -> dict[str, Any]:
    """A document reference as a worker publishes it."""
    return {REF: {"store": "b", "key": key, "size": size, "sha256": "0" * 64}}


class StoredDriver(Driver):
    """The Driver, plus what the operator does for the engine's store: Load actions served
    from `documents` into `values`, chunks written to `objects` at every flush."""

    def __init__(self, workflow: Any, inputs: dict[str, Any] | None = None,
                 reuse: dict[str, Any] | None = None) -> None:
        super().__init__(workflow, inputs)
        self.values: dict[str, Any] = {}
        self.documents: dict[str, Any] = {}
        self.objects: dict[str, bytes] = {}
        self.served = 0
        self.run = engine.new_run(workflow, "run-1", self.inputs, self.now, reuse, store=STORE,
                                  values=self.values)

    def loads(self) -> list[engine.Load]:
        return [a for a in self.actions if isinstance(a, engine.Load)]

    def serve(self, failing: str | None = None) -> None:
        """Carry out the Load actions not served yet, then signal Loaded."""
        pending = self.loads()[self.served:]
        self.served += len(pending)
        loaded, failed = [], {}
        for action in pending:
            for ref in action.refs:
                key = ref_id(ref)
                if failing is not None:
                    failed[key] = failing
                else:
                    self.values[key] = self.read(ref)
                    loaded.append(key)
        self.apply(engine.Loaded(tuple(loaded), failed))

    def read(self, ref: Any) -> Any:
        if is_items_ref(ref):
            parsed = sv.parse(ref)
            assert isinstance(parsed, sv.ItemsRef)
            chunks = [sv.decode_chunk(self.objects[parsed.chunk_key(i)], "t")
                      for i in range(parsed.chunks)]
            return sv.merge_chunks(chunks, parsed)
        return self.documents[ref_id(ref)]

    def flush(self, fail: bool = False) -> dict[str, Any]:
        """A status write: chunks first (or their write fails), then the status."""
        chunks = engine.take_chunks(self.run)
        status = json.loads(json.dumps(engine.to_status(self.run)))
        if fail:
            engine.return_chunks(self.run, chunks)
            return status
        for chunk in chunks:
            self.objects["p/" + chunk.key] = chunk.data
        engine.chunks_stored(self.run, chunks)
        if chunks:
            self.apply(engine.Loaded())
        self.written = status
        return status

    def rebuild_from(self, status: dict[str, Any]) -> None:
        self.values.clear()
        self.served = len(self.loads())
        self.run = engine.from_status(self.workflow, "run-1", self.inputs, status, store=STORE,
                                      values=self.values)


def fan_out(items: int = 3, **fields: Any) -> Any:
    return compiled(task("work", forEach="${{ inputs.xs }}", **fields),
                    task("sum", "work", inputs={"values": "${{ tasks.work.outputs }}"}))


def test_item_outputs_go_to_the_store_in_chunks_and_read_back_in_item_order() -> None:
    d = StoredDriver(fan_out(), {"xs": [10, 20, 30]})
    d.start()
    d.succeed("run-1/work[2]/1", {"n": 30})
    d.succeed("run-1/work[0]/1", {"n": 10})
    first = d.flush()
    work = next(t for t in first["tasks"] if t["name"] == "work")
    assert work["outputs"] == sv.ItemsRef("b", "p/ns/wf/run-1/work/items/",
                                          len(d.objects["p/ns/wf/run-1/work/items/000000.json"]),
                                          2, 1).to_json()
    d.succeed("run-1/work[1]/1", {"n": 20})
    assert d.task("work")["phase"] == "Succeeded"
    assert "run-1/sum/1" not in d.ids(), "the fan-in waits until every item output is stored"
    d.flush()
    [publish] = [p for p in d.published if p.task == "sum"]
    ref = publish.inputs["values"]
    assert is_items_ref(ref) and ref[REF]["items"] == 3 and ref[REF]["chunks"] == 2
    assert d.read(ref) == [{"n": 10}, {"n": 20}, {"n": 30}]


def test_a_failed_chunk_write_gives_the_items_back_for_the_next_flush() -> None:
    d = StoredDriver(fan_out(), {"xs": [1, 2, 3]})
    d.start()
    d.succeed("run-1/work[0]/1", {"n": 1})
    failed = d.flush(fail=True)
    assert next(t for t in failed["tasks"] if t["name"] == "work")["outputs"][REF]["items"] == 1
    assert not d.objects
    status = d.flush()
    ref = next(t for t in status["tasks"] if t["name"] == "work")["outputs"]
    assert (ref[REF]["items"], ref[REF]["chunks"]) == (1, 1)
    assert d.read(ref) == [{"n": 1}]


def test_a_rebuilt_run_adds_chunks_after_those_its_status_counts() -> None:
    d = StoredDriver(fan_out(), {"xs": [1, 2, 3]})
    d.start()
    d.succeed("run-1/work[0]/1", {"n": 1})
    status = d.flush()
    d.rebuild_from(status)
    d.succeed("run-1/work[1]/1", {"n": 2})
    d.succeed("run-1/work[2]/1", {"n": 3})
    d.flush()
    [publish] = [p for p in d.published if p.task == "sum"]
    assert d.read(publish.inputs["values"]) == [{"n": 1}, {"n": 2}, {"n": 3}]


def test_a_for_each_over_a_stored_list_waits_for_it_then_dispatches_from_pages() -> None:
    wf = compiled(task("gen"), task("work", "gen", forEach="${{ tasks.gen.outputs.items }}",
                                    inputs={"x": "${{ item }}"}, maxParallel=2))
    d = StoredDriver(wf)
    d.start()
    ref = doc("p/ns/wf/run-1/gen/-/1/outputs.json")
    d.documents[ref_id(ref)] = {"items": list(range(2500))}
    d.succeed("run-1/gen/1", ref)
    [load] = d.loads()
    assert load.refs == (ref,)
    assert d.task("work")["phase"] == "Pending"
    d.serve()
    assert isinstance(d.run.tasks[1].items, engine.PagedItems)
    assert [p.inputs for p in d.published if p.task == "work"] == [{"x": 0}, {"x": 1}]
    d.values.clear()  # the cache may drop it now: the pages hold the list
    for i in range(2, 2500, 1):
        d.succeed(f"run-1/work[{i - 2}]/1", {})
    assert [p.inputs["x"] for p in d.published if p.task == "work"][-1] == 2499


def test_a_store_that_cannot_be_read_fails_the_waiting_task_naming_the_key() -> None:
    wf = compiled(task("gen"), task("work", "gen", forEach="${{ tasks.gen.outputs.items }}"))
    d = StoredDriver(wf)
    d.start()
    d.succeed("run-1/gen/1", doc("p/k.json"))
    d.serve(failing="the stored value s3://b/p/k.json is gone")
    work = d.task("work")
    assert (work["phase"], work["reason"]) == ("Failed", "StoreError")
    assert "s3://b/p/k.json is gone" in work["message"]
    assert d.status()["phase"] == "Failed"


def test_waiting_for_a_value_survives_a_rebuild() -> None:
    wf = compiled(task("gen"), task("use", "gen", when="${{ tasks.gen.outputs.ok }}"))
    d = StoredDriver(wf)
    d.start()
    ref = doc("p/k.json")
    d.documents[ref_id(ref)] = {"ok": True}
    d.succeed("run-1/gen/1", ref)
    assert len(d.loads()) == 1
    status = d.flush()  # written while `use` waits: Pending, its dependency Succeeded
    d.rebuild_from(status)
    d.apply(engine.Tick())
    assert len(d.loads()) == 2, "the rebuilt run asks for the value again"
    d.serve()
    assert d.ids()[-1] == "run-1/use/1"


def test_a_retry_whose_value_was_dropped_waits_for_it_and_keeps_its_due_time() -> None:
    wf = compiled(task("gen"), task("use", "gen", inputs={"n": "${{ tasks.gen.outputs.n + 1 }}"},
                                    retry={"limit": 2, "backoffSeconds": 1}))
    d = StoredDriver(wf)
    d.start()
    ref = doc("p/k.json")
    d.documents[ref_id(ref)] = {"n": 41}
    d.succeed("run-1/gen/1", ref)
    d.serve()
    assert d.published[-1].inputs == {"n": 42}
    d.fail("run-1/use/1")
    d.values.clear()
    d.advance(5)
    assert d.task("use")["phase"] == "Retrying" and "nextAttemptAt" in d.task("use")
    assert len(d.loads()) == 2
    d.serve()
    assert (d.ids()[-1], d.published[-1].inputs) == ("run-1/use/2", {"n": 42})


def test_selections_pass_stored_values_on_by_reference() -> None:
    wf = compiled(task("gen"),
                  task("use", "gen", inputs={"all": "${{ tasks.gen.outputs }}",
                                             "rows": "${{ tasks.gen.outputs.rows }}"}),
                  outputs={"rows": "${{ tasks.gen.outputs.rows }}"})
    d = StoredDriver(wf)
    d.start()
    ref = doc("p/k.json")
    d.succeed("run-1/gen/1", ref)
    assert d.loads() == [], "nothing is read in the operator"
    assert d.published[-1].inputs == {"all": ref, "rows": {REF: {**ref[REF], "path": ["rows"]}}}
    d.succeed("run-1/use/1")
    assert d.status()["outputs"] == {"rows": {REF: {**ref[REF], "path": ["rows"]}}}


def test_a_reused_stored_for_each_keeps_the_earlier_runs_reference() -> None:
    earlier = sv.ItemsRef("b", "p/ns/wf/run-0/work/items/", 99, 3, 1).to_json()
    d = StoredDriver(fan_out(), {"xs": [1, 2, 3]}, reuse={"work": earlier})
    d.start()
    work = d.task("work")
    assert (work["phase"], work["reason"], work["outputs"]) == ("Succeeded", "Reused", earlier)
    assert d.published[-1].inputs == {"values": earlier}
    d.rebuild_from(d.status())
    assert d.task("work")["outputs"] == earlier


def test_paged_items_read_like_the_list() -> None:
    values = [{"i": i, "s": "x" * (i % 7)} for i in range(2345)]
    paged = engine.PagedItems(values, page_items=100)
    assert len(paged) == 2345
    assert [paged[i] for i in (0, 99, 100, 2344, -1)] == [values[i] for i in (0, 99, 100, 2344, -1)]
    assert paged[10:13] == values[10:13]
    assert paged.held_bytes < len(json.dumps(values)) / 3


def test_inputs_that_compute_with_a_stored_value_are_read_and_stay_under_the_budget() -> None:
    wf = compiled(task("gen"), task("use", "gen", inputs={
        "rows": "${{ tasks.gen.outputs.rows }}", "n": "${{ size(tasks.gen.outputs.rows) }}"}))
    d = StoredDriver(wf)
    d.start()
    ref = doc("p/k.json")
    d.documents[ref_id(ref)] = {"rows": ["x" * 1000] * 5000}  # 5 MB: over the 4 MiB budget
    d.succeed("run-1/gen/1", ref)
    d.serve()
    use = d.task("use")
    assert (use["phase"], use["reason"]) == ("Failed", "ExpressionError")
    assert "builds more than" in use["message"]
    d2 = StoredDriver(wf)
    d2.start()
    d2.documents[ref_id(ref)] = {"rows": [1, 2, 3]}
    d2.succeed("run-1/gen/1", ref)
    d2.serve()
    assert d2.published[-1].inputs == {"rows": [1, 2, 3], "n": 3}


def test_a_run_storing_its_items_cannot_be_rebuilt_without_a_store() -> None:
    d = StoredDriver(fan_out(), {"xs": [1, 2, 3]})
    d.start()
    d.succeed("run-1/work[0]/1", {"n": 1})
    status = d.flush()
    with pytest.raises(InvalidStatusError, match="configure CONVEYOR_S3_"):
        engine.from_status(d.workflow, "run-1", d.inputs, status)


class TinyCache(dict):  # type: ignore[type-arg]
    """A cache that keeps only the newest value, as the operator's does past its bound."""

    def __setitem__(self, key: Any, value: Any) -> None:
        self.clear()
        super().__setitem__(key, value)


def test_a_task_that_needs_more_stored_values_at_once_than_the_cache_holds_fails() -> None:
    wf = compiled(task("a"), task("b"), task("use", "a", "b",
                                            when="${{ tasks.a.outputs.ok && tasks.b.outputs.ok }}"))
    d = StoredDriver(wf)
    d.values = TinyCache()
    d.run.values = d.values
    d.start()
    for name in ("a", "b"):
        ref = doc(f"p/{name}.json")
        d.documents[ref_id(ref)] = {"ok": True}
        d.succeed(f"run-1/{name}/1", ref)
    d.serve()
    use = d.task("use")
    assert (use["phase"], use["reason"]) == ("Failed", "StoreError")
    assert "CONVEYOR_S3_CACHE_BYTES" in use["message"]

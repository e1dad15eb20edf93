"""A fan-out goes out in batches of DISPATCH_BATCH (5,000) items between persisted statuses:
a status write never waits for the confirms of a whole fan-out, and a crash before it redoes
at most a batch of work nobody recorded. The engine on its own, then the run loop over the fakes."""

from __future__ import annotations

from typing import Any

from conveyor import engine
from conveyor.engine.tasks import DISPATCH_BATCH
from conveyor.models import TaskMessage
from unit.builders import compiled, task
from unit.driving import Driver
from unit.fakes import Bed, Workers, drive, task_of, workflow_spec

ITEMS = 2 * DISPATCH_BATCH + DISPATCH_BATCH // 2


def fan_out(items: int = ITEMS) -> Driver:
    return Driver(compiled(task("fan", forEach="${{ inputs.xs }}",
                                inputs={"x": "${{ item }}"})), {"xs": list(range(items))})


def published(actions: list[engine.Action]) -> list[engine.Publish]:
    return [a for a in actions if isinstance(a, engine.Publish)]


def test_a_fan_out_goes_out_one_batch_per_persisted_status() -> None:
    d = fan_out()
    first = published(d.start())
    assert len(first) == DISPATCH_BATCH
    assert [p.index for p in first] == list(range(DISPATCH_BATCH))
    # Results do not push more out before the status that records the batch is written.
    assert published(d.succeed(first[0].attempt_id)) == []
    second = published(d.apply(engine.Persisted(DISPATCH_BATCH)))
    assert [p.index for p in second] == list(range(DISPATCH_BATCH, 2 * DISPATCH_BATCH))
    # A status that recorded only part of them lets only that many more go.
    third = published(d.apply(engine.Persisted(DISPATCH_BATCH // 4)))
    assert len(third) == DISPATCH_BATCH // 4
    rest = published(d.apply(engine.Persisted(DISPATCH_BATCH)))
    assert len(third) + len(rest) == DISPATCH_BATCH // 2
    assert d.apply(engine.Persisted(DISPATCH_BATCH)) == []  # nothing left: no change
    assert sorted(p.index or 0 for p in d.published) == list(range(ITEMS))


def test_a_rebuilt_run_sends_what_was_held_back_on_its_first_tick() -> None:
    d = fan_out()
    d.start()
    d.rebuild()  # the operator restarted after the first status was written
    resumed = published(d.advance(0))
    assert [p.index for p in resumed] == list(range(DISPATCH_BATCH, 2 * DISPATCH_BATCH))
    assert task_of(d.status(), "fan")["items"]["states"].startswith(f"Q{2 * DISPATCH_BATCH}")


def test_max_parallel_below_the_batch_is_unchanged() -> None:
    d = Driver(compiled(task("fan", forEach="${{ inputs.xs }}", maxParallel=3)),
               {"xs": list(range(10))})
    assert len(published(d.start())) == 3
    assert len(published(d.succeed("run-1/fan[0]/1"))) == 1


def test_the_run_loop_writes_a_big_fan_out_batch_by_batch_and_finishes_it() -> None:
    def succeed(message: TaskMessage) -> list[tuple[str, dict[str, Any]]]:
        return [("succeeded", {"outputs": {"x": message.inputs["x"]}})]

    async def scenario() -> None:
        bed = Bed()
        bed.add_workflow(workflow_spec({"name": "fan", "forEach": "${{ inputs.xs }}",
                                        "inputs": {"x": "${{ item }}"}}))
        bed.start()
        bed.add_run("r1", inputs={"xs": list(range(ITEMS))})
        first = await bed.until_found(lambda: next(iter(bed.written("r1")), None),
                                      what="the first status")
        recorded = first["tasks"][0]["items"]
        assert recorded["total"] == ITEMS
        # It records the first batch, not waiting for the confirms of the rest.
        assert recorded["states"].endswith(f"P{ITEMS - DISPATCH_BATCH}"), recorded["states"]
        await Workers(bed, succeed).serve_until(
            lambda: (bed.status("r1") or {}).get("phase") == "Succeeded", timeout=20)
        fan = task_of(bed.last("r1"), "fan")
        assert fan["items"]["succeeded"] == ITEMS
        assert [o["x"] for o in fan["outputs"]] == list(range(ITEMS))
        assert len({p.message_id for p in bed.link.published if p.is_task}) == ITEMS

    drive(scenario, timeout=30)

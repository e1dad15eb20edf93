"""The EventRecorder: runs' Kubernetes Events held, coalesced per subject, posted at a bounded
rate, dropped (and counted) past a bound, never blocking the run loop. Driven over the
in-memory KubeApi fake, on a real event loop with small holds and rates."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine
from typing import Any

from conveyor.kube import KubeError
from conveyor.operator.metrics import Metrics
from conveyor.operator.runs.kube_events import EventRecorder, Post
from conveyor.operator.runs.records import RunRef
from unit.fakes import FakeKube, drive, until

RUN = RunRef("ns", "r1", "uid-1", "wf")
OTHER = RunRef("ns", "r2", "uid-2", "wf")


def running(ref: RunRef = RUN) -> Post:
    return Post("", "Normal", "RunRunning", f"run {ref.name} running")


def succeeded(ref: RunRef = RUN) -> Post:
    return Post("", "Normal", "RunSucceeded", f"run {ref.name} succeeded")


def run(test: Callable[[FakeKube, Metrics], Coroutine[Any, Any, None]]) -> None:
    """The test on a fresh loop, bounded in time (`unit.fakes.drive`), over fresh fakes."""
    drive(lambda: test(FakeKube(), Metrics()))


def counted(metrics: Metrics, result: str) -> float:
    value: float = metrics.kube_events.labels(result)._value.get()
    return value


def running_recorder(recorder: EventRecorder) -> asyncio.Task[None]:
    return asyncio.get_running_loop().create_task(recorder.run())


def test_a_run_that_ends_within_the_hold_posts_only_its_end() -> None:
    async def test(kube: FakeKube, metrics: Metrics) -> None:
        recorder = EventRecorder(kube, metrics, per_second=1000, hold=0.2)
        task = running_recorder(recorder)
        recorder.record(RUN, [running()])
        recorder.record(OTHER, [running(OTHER)])
        recorder.record(RUN, [succeeded()])  # within the hold: replaces RunRunning
        await until(lambda: len(kube.events) == 2, what="two Events posted")
        assert [(e.involved["name"], e.reason) for e in kube.events] == [
            ("r1", "RunSucceeded"), ("r2", "RunRunning")], "order of first record kept"
        assert counted(metrics, "superseded") == 1 and counted(metrics, "posted") == 2
        task.cancel()

    run(test)


def test_events_about_different_tasks_of_a_run_are_all_posted() -> None:
    async def test(kube: FakeKube, metrics: Metrics) -> None:
        recorder = EventRecorder(kube, metrics, per_second=1000, hold=0.0)
        task = running_recorder(recorder)
        recorder.record(RUN, [Post("a", "Warning", "TaskFailed", "task a failed"),
                              Post("b", "Warning", "TaskRetrying", "task b retrying"),
                              Post("", "Warning", "RunFailed", "run failed")])
        await until(lambda: len(kube.events) == 3, what="three Events")
        assert [e.reason for e in kube.events] == ["TaskFailed", "TaskRetrying", "RunFailed"]
        assert all(e.involved["uid"] == "uid-1" and e.kind == "Warning" for e in kube.events)
        task.cancel()

    run(test)


def test_posting_keeps_to_its_rate_and_recording_never_waits() -> None:
    async def test(kube: FakeKube, metrics: Metrics) -> None:
        recorder = EventRecorder(kube, metrics, per_second=20, hold=0.0)  # burst of 40
        refs = [RunRef("ns", f"r{i}", f"uid-{i}", "wf") for i in range(60)]
        began = time.monotonic()
        for ref in refs:
            recorder.record(ref, [succeeded(ref)])
        assert time.monotonic() - began < 0.05, "record() waited"
        task = running_recorder(recorder)
        await until(lambda: len(kube.events) == 60, what="all 60 posted",
                               timeout=10)
        elapsed = time.monotonic() - began
        # 40 at once from the burst, the other 20 at 20/s: about a second, not at once.
        assert elapsed >= 0.8, f"60 Events in {elapsed:.2f}s: the rate was not kept"
        task.cancel()

    run(test)


def test_past_the_bound_the_oldest_waiting_are_dropped_and_counted() -> None:
    async def test(kube: FakeKube, metrics: Metrics) -> None:
        recorder = EventRecorder(kube, metrics, per_second=1000, hold=0.0, max_pending=3)
        refs = [RunRef("ns", f"r{i}", f"uid-{i}", "wf") for i in range(5)]
        for ref in refs:
            recorder.record(ref, [succeeded(ref)])
        assert recorder.pending == 3
        task = running_recorder(recorder)
        await until(lambda: len(kube.events) == 3, what="the newest three posted")
        assert [e.involved["name"] for e in kube.events] == ["r2", "r3", "r4"]
        assert counted(metrics, "dropped") == 2
        task.cancel()

    run(test)


def test_a_failed_post_is_counted_and_the_next_still_goes_out() -> None:
    async def test(kube: FakeKube, metrics: Metrics) -> None:
        kube.fail_next("post_event", KubeError("post Event: unavailable", 503))
        recorder = EventRecorder(kube, metrics, per_second=1000, hold=0.0)
        task = running_recorder(recorder)
        recorder.record(RUN, [succeeded()])
        recorder.record(OTHER, [succeeded(OTHER)])
        await until(lambda: len(kube.events) == 1, what="the second posted")
        assert kube.events[0].involved["name"] == "r2"
        assert counted(metrics, "error") == 1 and not task.done()
        task.cancel()

    run(test)

"""The operator's background loops survive what they did not expect."""

from __future__ import annotations

import asyncio

import pytest

from conveyor.operator.supervision import supervised


def test_a_loop_that_raises_is_restarted_until_it_returns() -> None:
    runs: list[int] = []

    async def loop() -> None:
        runs.append(len(runs))
        if len(runs) < 3:
            raise RuntimeError(f"failure {len(runs)}")

    asyncio.run(asyncio.wait_for(supervised("test", loop, restart_seconds=0.001), 5))
    assert runs == [0, 1, 2], "restarted after each of two failures, then returned"


def test_cancelling_a_supervised_loop_stops_it() -> None:
    started = asyncio.Event()

    async def forever() -> None:
        started.set()
        await asyncio.Event().wait()

    async def scenario() -> None:
        task = asyncio.create_task(supervised("test", forever, restart_seconds=0.001))
        await asyncio.wait_for(started.wait(), 5)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(scenario())

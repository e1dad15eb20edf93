"""Task types the integration tests serve with real `conveyor-worker` processes."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

from conveyor.worker import Retryable, TaskContext, task


@task("echo")
def echo(inputs: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
    return {"echo": inputs, "attempt": ctx.attempt}


@task("hold")
def hold(inputs: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
    """Runs until the file `inputs.release` exists: a long task the test ends when it wants."""
    release = Path(inputs["release"])
    Path(inputs["holding"]).write_text(ctx.worker)
    while not release.exists():
        ctx.heartbeat(progress="holding")
        time.sleep(0.02)
    return {"released": True, "worker": ctx.worker}


@task("crash")
def crash(inputs: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
    """Kills its own worker, as a segfaulting library or the OOM killer would."""
    os.kill(os.getpid(), signal.SIGKILL)
    raise AssertionError("unreachable")


@task("flaky")
def flaky(inputs: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
    if inputs.get("fail") == "retryable":
        raise Retryable("try again")
    if inputs.get("fail") == "bug":
        raise KeyError("missing")
    return {"big": "x" * int(inputs.get("size", 0))}


@task("noop-async")
async def noop_async(inputs: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
    return {"async": True}

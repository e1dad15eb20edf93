"""Task types the integration tests serve with real `conveyor-worker` processes."""

from __future__ import annotations

import hashlib
import json
import os
import random
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


@task("flaky", non_retryable=(LookupError,))
def flaky(inputs: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
    if inputs.get("fail") == "retryable":
        raise Retryable("try again")
    if inputs.get("fail") == "bug":
        raise KeyError("missing")
    if inputs.get("fail") == "refused":
        raise ConnectionRefusedError("connection refused")
    return {"big": "x" * int(inputs.get("size", 0))}


@task("noop-async")
async def noop_async(inputs: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
    return {"async": True}


def blob_of(size: int, seed: int) -> str:
    """`size` characters the same for every caller with the same seed (hex of seeded random
    bytes: no run of them compresses, as real outputs may not)."""
    return random.Random(seed).randbytes((size + 1) // 2).hex()[:size]


@task("blob")
def blob(inputs: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
    """Makes outputs of `inputs.size` characters, or (given `inputs.data`) says what it got:
    the two ends of a value passed by reference."""
    if "data" in inputs:
        data = inputs["data"]
        text = json.dumps(data, separators=(",", ":"))
        return {"sha256": hashlib.sha256(text.encode()).hexdigest(), "length": len(text),
                "type": type(data).__name__}
    return {"blob": blob_of(int(inputs["size"]), int(inputs.get("seed", 0)))}

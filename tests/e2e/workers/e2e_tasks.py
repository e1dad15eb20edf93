"""Worker tasks the e2e tests drive: each does what its inputs say, so one module serves every
scenario. Every execution appends one line to the file named by E2E_EXECUTION_LOG (when set):
the workers' execution log, which tests compare with the runs' status."""

from __future__ import annotations

import hashlib
import json
import os
import time
from typing import Any

from conveyor.store import ObjectStore, StoreSettings
from conveyor.worker import NonRetryable, Retryable, TaskContext, task


def _record(ctx: TaskContext, outcome: str) -> None:
    path = os.environ.get("E2E_EXECUTION_LOG")
    if path:
        line = json.dumps({"attempt": ctx.idempotency_key, "outcome": outcome,
                           "worker": ctx.worker})
        with open(path, "a") as log:
            log.write(line + "\n")


def _behave(inputs: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
    """Sleeps `seconds`, fails when `fail` says so (`always`, or the first N attempts) with
    Retryable, raises the exception `raise` names (of RAISED), returns `echo`."""
    seconds = float(inputs.get("seconds", 0))
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        time.sleep(min(0.2, max(0.0, end - time.monotonic())))
    fail = inputs.get("fail")
    if fail == "always" or (isinstance(fail, int) and ctx.attempt <= fail):
        _record(ctx, "failed")
        raise Retryable(f"failed on purpose (attempt {ctx.attempt})")
    raised = inputs.get("raise")
    if raised is not None:  # as a task's own code fails: a plain exception, or a marked one
        _record(ctx, "failed")
        raise RAISED[raised](f"raised on purpose (attempt {ctx.attempt})")
    _record(ctx, "succeeded")
    return {"echo": inputs.get("echo"), "attempt": ctx.attempt}


RAISED: dict[str, type[Exception]] = {"ConnectionError": ConnectionError,
                                      "NonRetryable": NonRetryable, "ValueError": ValueError}


@task("work")
def work(inputs: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
    return _behave(inputs, ctx)


@task("other")
def other(inputs: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
    return _behave(inputs, ctx)


@task("picky", retry_on=(TimeoutError,))
def picky(inputs: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
    """`work` whose worker retries only a TimeoutError: any other exception is final."""
    return _behave(inputs, ctx)


@task("data")
def data(inputs: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
    """Data at scale, by `op`: `gen` makes `n` items; `item` answers one of them with about
    100 bytes (`noop`: nothing); `sum` adds what the items answered (`count`: counts them);
    `blob` makes `mb` MB of text with its sha256; `check` verifies the blob it was given
    against that sha256; `fail` fails."""
    op = inputs.get("op")
    if op == "gen":
        return {"items": [{"i": i} for i in range(int(inputs["n"]))]}
    if op == "item":
        i = int(inputs["item"]["i"])
        return {"v": i * 2, "pad": "p" * 80}
    if op == "noop":
        return {}
    if op == "sum":
        values = inputs["values"]
        return {"sum": sum(v["v"] for v in values), "count": len(values)}
    if op == "count":
        return {"count": len(inputs["values"])}
    if op == "blob":
        size = int(float(inputs["mb"]) * 1_000_000)
        seed = hashlib.sha256(str(inputs.get("seed", 0)).encode()).hexdigest()
        text = (seed * (size // len(seed) + 1))[:size]
        return {"blob": text, "sha256": hashlib.sha256(text.encode()).hexdigest()}
    if op == "check":
        blob = inputs["given"]["blob"]
        digest = hashlib.sha256(blob.encode()).hexdigest()
        if digest != inputs["given"]["sha256"]:
            raise ValueError(f"sha256 {digest} is not the producer's")
        return {"verified": digest, "size": len(blob)}
    if op == "fail":
        raise ValueError("failed on purpose")
    raise ValueError(f"unknown op {op!r}")


@task("probe")
def probe(inputs: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
    """Writes one object with the object store its pod was given (CONVEYOR_S3_*, from the
    operator), as a large output would be kept: where it went and under which access key."""
    settings = StoreSettings.from_env()
    with ObjectStore(settings) as store:
        ref = store.put(f"probe/{ctx.run}/{ctx.attempt}.json", b'{"probe": true}')
    _record(ctx, "succeeded")
    return {"bucket": ref.bucket, "key": ref.key, "accessKey": settings.access_key}


@task("files")
def files(inputs: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
    """What the pod was given: the text of the file at `path` (a mounted volume's) and the
    variable named `env` (from envFrom)."""
    with open(inputs["path"]) as given:
        content = given.read()
    _record(ctx, "succeeded")
    return {"content": content, "env": os.environ.get(str(inputs.get("env", "")))}

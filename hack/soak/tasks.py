"""The soak's worker module (`conveyor-worker --module soak.tasks`): one task type, `soak`,
that records its execution in the ledger and returns its item's index.

The output `{"i": index}` is what lets the verdict see, from the run's status alone, which
item each output belongs to: an index twice in a forEach's outputs is a result applied twice.
It is kept this small so 10,000 of them fit a task's 256 KiB of outputs.
"""

from __future__ import annotations

import time
from typing import Any

from conveyor.worker import TaskContext, task
from soak import ledger


@task("soak")
def soak(inputs: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
    """Works for `seconds` (0: no time at all), then records and returns the item's index."""
    seconds = float(inputs.get("seconds") or 0)
    if seconds > 0:  # the task's work: longer tasks put more of them in flight at a fault
        time.sleep(seconds)
    index = ctx.index if ctx.index is not None else -1
    # Recorded before the function returns, so before the worker sends `succeeded`: every
    # execution the operator hears of is in the ledger.
    ledger.writer().record(ctx.idempotency_key, ctx.run_uid, index)
    return {"i": index}

"""The run engine: pure, deterministic, free of I/O (DESIGN.md §1-2).

Its public face, all a caller needs:

    progress    RunState / TaskState: the in-memory progress of one run
    rules       new_run, seed, admit, apply: (progress, signal, now) -> actions, stating
                the rules; `stepping` (one signal) and `tasks` (what happens to tasks)
                carry them out
    retrying    whether a failed attempt is retried (retry.policy by why it failed), and
                the record of it in status.tasks[].failedAttempts
    status      to_status / from_status: progress to the WorkflowRun status and back
    signals     what the engine is told: Start, Cancel, Tick, Task* reports of workers,
                TaskLost (the operator found an attempt's message gone)
    actions     what it decides: Publish, SetTimer, EmitRunEvent, Persist, Load (read
                stored values; `Loaded` tells it they are in `RunState.values`)
    pages       PagedItems: a long forEach list held compressed, a page decoded at a time

With an object store (`StoreTarget`), a forEach task's item outputs go there in chunks:
`take_chunks` before each status write, `chunks_stored` or `return_chunks` after.

The operator owns the clock and the I/O; the engine owns the rules.
"""

from conveyor.engine.actions import Action, EmitRunEvent, Load, Persist, Publish, SetTimer
from conveyor.engine.pages import PagedItems
from conveyor.engine.progress import (
    RUN_TERMINAL,
    TERMINAL,
    RunState,
    StoreTarget,
    TaskState,
    in_flight,
    next_timer,
    to_ms,
)
from conveyor.engine.rules import admit, apply, new_run, seed
from conveyor.engine.signals import (
    AttemptSignal,
    Cancel,
    Loaded,
    Persisted,
    Signal,
    Start,
    StoreFailed,
    TaskFailed,
    TaskHeartbeat,
    TaskLost,
    TaskStarted,
    TaskSucceeded,
    Tick,
    from_message,
)
from conveyor.engine.status import (
    Chunk,
    chunks_stored,
    format_time,
    from_status,
    parse_time,
    return_chunks,
    take_chunks,
    to_status,
)
from conveyor.engine.tasks import OUTPUT_LIMIT, RUN_OUTPUTS_LIMIT, TASK_OUTPUTS_LIMIT
from conveyor.names import parse_attempt_id

__all__ = [
    "OUTPUT_LIMIT",
    "RUN_OUTPUTS_LIMIT",
    "RUN_TERMINAL",
    "TASK_OUTPUTS_LIMIT",
    "TERMINAL",
    "Action",
    "AttemptSignal",
    "Cancel",
    "Chunk",
    "EmitRunEvent",
    "Load",
    "Loaded",
    "PagedItems",
    "Persist",
    "Persisted",
    "Publish",
    "RunState",
    "SetTimer",
    "Signal",
    "Start",
    "StoreFailed",
    "StoreTarget",
    "TaskFailed",
    "TaskHeartbeat",
    "TaskLost",
    "TaskStarted",
    "TaskState",
    "TaskSucceeded",
    "Tick",
    "admit",
    "apply",
    "chunks_stored",
    "format_time",
    "from_message",
    "from_status",
    "in_flight",
    "new_run",
    "next_timer",
    "parse_attempt_id",
    "parse_time",
    "return_chunks",
    "seed",
    "take_chunks",
    "to_ms",
    "to_status",
]

"""The run engine: pure, deterministic, free of I/O (DESIGN.md §1-2).

Its public face, all a caller needs:

    progress    RunState / TaskState: the in-memory progress of one run
    rules       new_run, seed, admit, apply: (progress, signal, now) -> actions, stating
                the rules; `stepping` (one signal) and `tasks` (what happens to tasks)
                carry them out
    status      to_status / from_status: progress to the WorkflowRun status and back
    signals     what the engine is told: Start, Cancel, Tick, Task* reports of workers,
                TaskLost (the operator found an attempt's message gone)
    actions     what it decides: Publish, SetTimer, EmitRunEvent, Persist

The operator owns the clock and the I/O; the engine owns the rules.
"""

from conveyor.engine.actions import Action, EmitRunEvent, Persist, Publish, SetTimer
from conveyor.engine.progress import (
    RUN_TERMINAL,
    TERMINAL,
    RunState,
    TaskState,
    in_flight,
    next_timer,
    to_ms,
)
from conveyor.engine.rules import admit, apply, new_run, seed
from conveyor.engine.signals import (
    AttemptSignal,
    Cancel,
    Persisted,
    Signal,
    Start,
    TaskFailed,
    TaskHeartbeat,
    TaskLost,
    TaskStarted,
    TaskSucceeded,
    Tick,
    from_message,
)
from conveyor.engine.status import format_time, from_status, parse_time, to_status
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
    "EmitRunEvent",
    "Persist",
    "Persisted",
    "Publish",
    "RunState",
    "SetTimer",
    "Signal",
    "Start",
    "TaskFailed",
    "TaskHeartbeat",
    "TaskLost",
    "TaskStarted",
    "TaskState",
    "TaskSucceeded",
    "Tick",
    "admit",
    "apply",
    "format_time",
    "from_message",
    "from_status",
    "in_flight",
    "new_run",
    "next_timer",
    "parse_attempt_id",
    "parse_time",
    "seed",
    "to_ms",
    "to_status",
]

"""A run's state to its WorkflowRun status and back, without loss.

The status is the source of truth (DESIGN.md §1): after a restart the operator rebuilds each
active run from it with `from_status` and carries on exactly as it would have. So everything
the engine needs is here, written small: empty and default fields are left out, forEach items
are counts plus a run-length string of their phases, and only items that are past their first
attempt or hold a timer get an entry of their own.

What is not stored is recomputed: the forEach list is evaluated again (its expression reads
the run's inputs and upstream outputs, both in the status), counters are recounted, timers are
re-armed from the due times.
"""

import calendar
import heapq
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from conveyor.engine.progress import (
    ACTIVE,
    CANCELLED,
    DEADLINE_TIMER,
    FAILED,
    PENDING,
    QUEUED,
    RETRY_TIMER,
    RETRYING,
    RUN_TERMINAL,
    RUNNING,
    SUCCEEDED,
    TERMINAL,
    TIMEOUT_TIMER,
    UPSTREAM_FAILED,
    AttemptFailure,
    RunState,
    StoreTarget,
    TaskState,
    json_size,
    show_outputs,
)
from conveyor.errors import InvalidStatusError
from conveyor.stored import REF, chunk_key, encode_chunk, is_items_ref
from conveyor.workflow import CompiledWorkflow

_CODE_OF_PHASE = {"Queued": QUEUED, "Running": RUNNING, "Retrying": RETRYING,
                  "Succeeded": SUCCEEDED, "Failed": FAILED, "Cancelled": CANCELLED}


def format_time(ms: int) -> str:
    """RFC 3339 in UTC; milliseconds only when there are some."""
    seconds, millis = divmod(ms, 1000)
    text = datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{text}.{millis:03d}Z" if millis else f"{text}Z"


def parse_time(text: str) -> int:
    """Milliseconds since the epoch of an RFC 3339 time."""
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return calendar.timegm(moment.utctimetuple()) * 1000 + moment.microsecond // 1000


def encode_runs(codes: list[str]) -> str:
    """Run-length encoding of phase codes: `SSSQP` -> `S3QP`."""
    out: list[str] = []
    previous = ""
    count = 0
    for code in codes:
        if code == previous:
            count += 1
            continue
        if count:
            out.append(previous if count == 1 else f"{previous}{count}")
        previous, count = code, 1
    if count:
        out.append(previous if count == 1 else f"{previous}{count}")
    return "".join(out)


def decode_runs(text: str) -> list[str]:
    """Inverse of `encode_runs`."""
    codes: list[str] = []
    i = 0
    while i < len(text):
        code = text[i]
        j = i + 1
        while j < len(text) and text[j].isdigit():
            j += 1
        if code not in "PQRWSFC":
            raise InvalidStatusError(f"item states {text!r}: unknown phase code {code!r}")
        codes.extend(code * (int(text[i + 1 : j]) if j > i + 1 else 1))
        i = j
    return codes


# --- state -> status ---------------------------------------------------------------------


def to_status(run: RunState) -> dict[str, Any]:
    """The WorkflowRun status (camelCase JSON) that describes the run completely."""
    status: dict[str, Any] = {"phase": run.phase}
    if run.observed_generation is not None:
        status["observedGeneration"] = run.observed_generation
    status["workflowGeneration"] = run.workflow.generation
    if run.started_at is not None:
        status["startedAt"] = format_time(run.started_at)
    if run.finished_at is not None:
        status["finishedAt"] = format_time(run.finished_at)
    status["progress"] = f"{run.terminal}/{len(run.tasks)}"
    if run.message is not None:
        status["message"] = run.message
    status["conditions"] = [_succeeded_condition(run)]
    status["tasks"] = [_task_status(t) for t in run.tasks]
    if run.outputs is not None:
        status["outputs"] = run.outputs
    return status


def _succeeded_condition(run: RunState) -> dict[str, Any]:
    """`Succeeded`, derived from the phase; it flips once, when the run ends."""
    condition: dict[str, Any] = {"type": "Succeeded"}
    if run.phase in RUN_TERMINAL:
        condition["status"] = "True" if run.phase == "Succeeded" else "False"
        condition["reason"] = run.phase
        condition["message"] = run.message or ""
        assert run.finished_at is not None
        condition["lastTransitionTime"] = format_time(run.finished_at)
    else:
        condition["status"] = "Unknown"
        condition["reason"] = run.phase
        condition["message"] = ""
        condition["lastTransitionTime"] = format_time(run.created_at)
    if run.observed_generation is not None:
        condition["observedGeneration"] = run.observed_generation
    return condition


def _task_status(task: TaskState) -> dict[str, Any]:
    entry: dict[str, Any] = {"name": task.spec.name, "phase": task.phase}
    if task.reason is not None:
        entry["reason"] = task.reason
    if task.attempts:
        entry["attempts"] = task.attempts
    if task.started_at is not None:
        entry["startedAt"] = format_time(task.started_at)
    if task.finished_at is not None:
        entry["finishedAt"] = format_time(task.finished_at)
    if task.spec.for_each is None and task.total and task.phase not in TERMINAL:
        due = task.due.get(0)
        if due is not None:
            entry["nextAttemptAt" if task.phases[0] == RETRYING else "timeoutAt"] = (
                format_time(due)
            )
    if task.worker is not None:
        entry["worker"] = task.worker
    if task.message is not None:
        entry["message"] = task.message
    if task.spec.for_each is None:
        if task.outputs and task.outputs[0] not in (None, {}):
            entry["outputs"] = task.outputs[0]
    elif task.offloaded or task.fixed_ref is not None:
        ref = task.items_ref()
        if ref is not None:
            entry["outputs"] = ref
        if task.phases or task.phase == "Succeeded":
            entry["items"] = _items_status(task)
    elif task.phases or task.phase == "Succeeded":
        held = task.outputs
        end = len(held)
        if task.phase != "Succeeded":  # unfinished items are null: leave the trailing ones out
            while end and held[end - 1] is None:
                end -= 1
        if end or task.phase == "Succeeded":
            entry["outputs"] = held[:end]
        entry["items"] = _items_status(task)
    if task.failures:
        entry["failedAttempts"] = [_failure_status(f) for f in task.failures]
    return entry


def _failure_status(failure: AttemptFailure) -> dict[str, Any]:
    entry: dict[str, Any] = {"attempt": failure.attempt}
    if failure.index is not None:
        entry["index"] = failure.index
    entry["reason"] = failure.reason
    if failure.error_type is not None:
        entry["errorType"] = failure.error_type
    if failure.message is not None:
        entry["message"] = failure.message
    if failure.started_at is not None:
        entry["startedAt"] = format_time(failure.started_at)
    entry["finishedAt"] = format_time(failure.finished_at)
    entry["retried"] = failure.retried
    return entry


def _failure(entry: dict[str, Any]) -> AttemptFailure:
    index = entry.get("index")
    return AttemptFailure(
        attempt=int(entry["attempt"]), index=None if index is None else int(index),
        reason=str(entry["reason"]), error_type=entry.get("errorType"),
        message=entry.get("message"), started_at=_time(entry.get("startedAt")),
        finished_at=parse_time(entry["finishedAt"]), retried=bool(entry["retried"]))


def _items_status(task: TaskState) -> dict[str, Any]:
    items: dict[str, Any] = {
        "total": task.total,
        "succeeded": task.succeeded,
        "failed": task.failed_items,
        "running": task.active,
        "states": encode_runs(task.phases),
    }
    special = []
    for i in range(task.next_index):
        if task.phases[i] in ACTIVE and (task.attempt_of[i] > 1 or i in task.due):
            entry: dict[str, Any] = {"index": i, "attempt": task.attempt_of[i]}
            if i in task.due:
                entry["dueAt"] = format_time(task.due[i])
            special.append(entry)
    if special:
        items["active"] = special
    return items


# --- status -> state ---------------------------------------------------------------------


def from_status(workflow: CompiledWorkflow, uid: str, inputs: dict[str, Any],
                status: dict[str, Any], *, store: StoreTarget | None = None,
                values: Mapping[str, Any] | None = None) -> RunState:
    """Rebuild a run from its status; InvalidStatusError if the status cannot be one.
    `store` and `values` as for `RunState`."""
    try:
        return _rebuild(workflow, uid, inputs, status, store=store, values=values)
    except (KeyError, ValueError, TypeError, IndexError) as error:
        raise InvalidStatusError(f"status of run {uid} cannot be rebuilt: {error!r}") from error


def _rebuild(workflow: CompiledWorkflow, uid: str, inputs: dict[str, Any],
             status: dict[str, Any], *, store: StoreTarget | None,
             values: Mapping[str, Any] | None) -> RunState:
    condition = next((c for c in status.get("conditions", []) if c["type"] == "Succeeded"), None)
    created = parse_time(condition["lastTransitionTime"]) if condition else 0
    run = RunState(workflow, uid, inputs, created, store=store, values=values)
    run.phase = status.get("phase", "Pending")
    run.observed_generation = status.get("observedGeneration")
    run.started_at = _time(status.get("startedAt"))
    run.finished_at = _time(status.get("finishedAt"))
    run.message = status.get("message")
    run.outputs = status.get("outputs")
    entries = {entry["name"]: entry for entry in status.get("tasks", [])}
    for task in run.tasks:
        entry = entries.get(task.spec.name)
        if entry is not None:
            _rebuild_task(run, task, entry)
    for task in run.tasks:
        task.waiting = sum(1 for d in task.spec.depends_on if _satisfies(run.tasks[d]))
        task.waiting = len(task.spec.depends_on) - task.waiting
    deadline = run.deadline_at
    if run.phase == "Running" and deadline is not None:
        heapq.heappush(run.timers, (deadline, DEADLINE_TIMER, 0, 0, 0))
    return run


def _satisfies(task: TaskState) -> bool:
    return task.phase == "Succeeded" or (task.phase == "Skipped"
                                         and task.reason != UPSTREAM_FAILED)


def _time(value: str | None) -> int | None:
    return None if value is None else parse_time(value)


def _rebuild_task(run: RunState, task: TaskState, entry: dict[str, Any]) -> None:
    spec = task.spec
    task.phase = entry["phase"]
    task.reason = entry.get("reason")
    task.message = entry.get("message")
    task.worker = entry.get("worker")
    task.attempts = entry.get("attempts", 0)
    task.started_at = _time(entry.get("startedAt"))
    task.finished_at = _time(entry.get("finishedAt"))
    task.failures.extend(_failure(f) for f in entry.get("failedAttempts", []))
    if spec.for_each is None:
        _rebuild_plain(run, task, entry)
    elif "items" in entry:
        _rebuild_items(run, task, entry)
    if task.phase in TERMINAL:
        run.terminal += 1
        if not spec.is_finally:
            run.main_terminal += 1
        run.failed = run.failed or task.phase == "Failed"
    show_outputs(run, task)


def _rebuild_plain(run: RunState, task: TaskState, entry: dict[str, Any]) -> None:
    code = _CODE_OF_PHASE.get(task.phase)
    if code is None or (task.phase in TERMINAL and code != SUCCEEDED):
        return  # an ended task ignores every event; only a success's outputs matter
    task.phases = [code]
    task.attempt_of = [task.attempts]
    outputs = entry.get("outputs")
    if code == SUCCEEDED and outputs is None:
        outputs = {}
    task.outputs = [outputs]
    task.next_index = 1
    if code in ACTIVE:
        task.active = 1
    elif code == SUCCEEDED:
        task.succeeded = 1
        task.out_bytes = json_size(outputs)
        run.out_bytes += task.out_bytes
    due_text = entry.get("nextAttemptAt") or entry.get("timeoutAt")
    if due_text is not None and code in ACTIVE:
        due = parse_time(due_text)
        task.due[0] = due
        kind = RETRY_TIMER if code == RETRYING else TIMEOUT_TIMER
        heapq.heappush(run.timers, (due, kind, task.spec.position, 0, task.attempts))


def _rebuild_items(run: RunState, task: TaskState, entry: dict[str, Any]) -> None:
    items = entry["items"]
    phases = decode_runs(items["states"])
    if len(phases) != items["total"]:
        raise ValueError(f"task {task.spec.name}: {len(phases)} item states, "
                         f"{items['total']} items")
    task.phases = phases
    count = len(phases)
    stored = entry.get("outputs")
    if is_items_ref(stored):
        adopt_items_ref(task, stored, run.uid)
        stored = None
    held = list(stored or [])
    task.outputs = held + [None] * (count - len(held))
    task.attempt_of = [1] * count
    task.next_index = phases.index(PENDING) if PENDING in phases else count
    task.succeeded = items["succeeded"]
    task.failed_items = items["failed"]
    task.active = items["running"]
    for special in items.get("active", []):
        i = special["index"]
        task.attempt_of[i] = special["attempt"]
        if "dueAt" in special:
            due = parse_time(special["dueAt"])
            task.due[i] = due
            kind = RETRY_TIMER if phases[i] == RETRYING else TIMEOUT_TIMER
            heapq.heappush(run.timers, (due, kind, task.spec.position, i, special["attempt"]))
    task.out_bytes = sum(json_size(o) for o in task.outputs if o is not None)
    run.out_bytes += task.out_bytes


def adopt_items_ref(task: TaskState, ref: Any, uid: str) -> None:
    """Item outputs stored under `ref`: this run's own (it goes on adding chunks), or an
    earlier run's, reused (kept as it is). This run's own without a store to add to is an
    error (ValueError): its outputs could never be complete."""
    body = ref[REF]
    if task.items_at is None and task.phase not in TERMINAL and f"/{uid}/" in body["key"]:
        raise ValueError(f"task {task.spec.name} keeps its item outputs in the object store "
                         f"s3://{body['store']}/{body['key']}, and this operator has none: "
                         "configure CONVEYOR_S3_* as before")
    if task.items_at is not None and body["key"] == task.items_at[1]:
        task.chunks, task.stored_items = int(body["chunks"]), int(body["items"])
        task.stored_bytes = int(body["size"])
    else:
        task.fixed_ref = ref


# --- item outputs to the store -----------------------------------------------------------


@dataclass(frozen=True)
class Chunk:
    """Item outputs of one forEach task to write as one object, before the status that
    counts them (`take_chunks`)."""

    task: str
    key: str
    """Relative to the store's prefix, as `ObjectStore.put` takes it."""
    data: bytes
    items: int


def take_chunks(run: RunState) -> list[Chunk]:
    """The item outputs not stored yet, one chunk per task, now counted in the run's state
    (so `to_status` right after describes them stored): write them before that status, or
    give them back with `return_chunks` if the write fails."""
    store = run.store
    if store is None:
        return []
    chunks = []
    for task in run.tasks:
        if not task.unstored or task.taken:
            continue
        pairs = sorted(task.unstored.items())
        task.unstored = {}
        task.taken = pairs
        data = encode_chunk(pairs)
        key = chunk_key(store.items_prefix(task.spec.name, full=False), task.chunks)
        task.chunks += 1
        task.stored_items += len(pairs)
        task.stored_bytes += len(data)
        show_outputs(run, task)  # a finished task's reference counts these items now
        chunks.append(Chunk(task.spec.name, key, data, len(pairs)))
    return chunks


def chunks_stored(run: RunState, chunks: list[Chunk]) -> None:
    """The chunks are in the store."""
    for chunk in chunks:
        run.tasks[run.workflow.by_name[chunk.task].position].taken = []


def return_chunks(run: RunState, chunks: list[Chunk]) -> None:
    """The chunks could not be written: count them out again, their items unstored."""
    for chunk in chunks:
        task = run.tasks[run.workflow.by_name[chunk.task].position]
        task.chunks -= 1
        task.stored_items -= chunk.items
        task.stored_bytes -= len(chunk.data)
        task.unstored.update(task.taken)
        task.taken = []
        show_outputs(run, task)

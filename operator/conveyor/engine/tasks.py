"""What happens to tasks and their instances within one step of the engine: an instance
begins, succeeds or fails (and maybe retries); a task becomes ready, fans out, dispatches,
fails or finishes. `Step` (stepping.py) drives these from signals; the rules are stated in
rules.py.
"""

import heapq
from collections import deque
from collections.abc import Mapping, Sequence
from typing import Any

from conveyor.engine import actions as act
from conveyor.engine import retrying
from conveyor.engine.pages import PAGE_ITEMS, PagedItems
from conveyor.engine.progress import (
    ACTIVE,
    CANCELLED,
    EXPRESSION_ERROR,
    FAILED,
    INVALID_FOR_EACH,
    OUTPUT_TOO_LARGE,
    PENDING,
    QUEUED,
    RETRY_TIMER,
    RETRYING,
    RUNNING,
    SUCCEEDED,
    TIMEOUT_TIMER,
    WHEN_FALSE,
    RunState,
    TaskState,
    json_size,
    show_outputs,
)
from conveyor.errors import ExpressionError
from conveyor.expr import LOADED, Template
from conveyor.names import attempt_id
from conveyor.stored import is_ref, ref_id

OUTPUT_LIMIT = 4 * 1024
# forEach items dispatched between two persisted statuses of a run, at most: a status write
# waits for the confirms of what it records, so this bounds the wait and what a crash before
# the write makes the workers do again. Each batch waits for a write, so a smaller one costs
# fan-out throughput: 2,000 measured about 10% below unbatched on a 5,000-item fan-out.
DISPATCH_BATCH = 5000
TASK_OUTPUTS_LIMIT = 256 * 1024
RUN_OUTPUTS_LIMIT = 1024 * 1024
NO_STORE = ("configure an object store (CONVEYOR_S3_BUCKET and the other CONVEYOR_S3_* "
            "settings of the operator and its workers; the chart's store.* values) so larger "
            "outputs travel by reference")

# What waits for stored values (`RunState.blocked` keys): a task to become ready, a forEach
# to dispatch its next item, an instance's retry or re-dispatch, the run's outputs.
READY, FILL, RETRY, LOST, COMPLETE = range(5)


class Unresolved(Exception):  # noqa: N818 - control flow inside a step, not an error
    """A rendering needs stored values that are not in memory (`refs`, to Load), or item
    outputs still being written to the store (`refs` empty: the flush that writes them
    tries again)."""

    def __init__(self, refs: list[Any]) -> None:
        super().__init__(refs)
        self.refs = refs


class TaskSteps:
    """The task-level half of a step, and the state of the step: the actions gathered and
    whether anything changed."""

    __slots__ = ("actions", "changed", "finished", "now", "run")

    def __init__(self, run: RunState, now: int) -> None:
        self.run = run
        self.now = now
        self.actions: list[act.Action] = []
        self.changed = False
        self.finished: deque[TaskState] = deque()  # tasks ended, dependents not yet told

    # --- instances ---------------------------------------------------------------------

    def begin(self, task: TaskState, i: int, worker: str | None) -> None:
        self.changed = True
        task.phases[i] = RUNNING
        if task.spec.for_each is None:
            task.phase = "Running"
            task.worker = worker or task.worker
            self.run.views[task.spec.name]["phase"] = "Running"
        timeout = task.spec.timeout_ms
        if timeout is not None:
            due = self.now + timeout
            task.due[i] = due
            heapq.heappush(self.run.timers,
                           (due, TIMEOUT_TIMER, task.spec.position, i, task.attempt_of[i]))

    def succeed(self, task: TaskState, i: int, outputs: Any, worker: str | None) -> None:
        if outputs is None:
            outputs = {}
        size = json_size(outputs)
        where = "" if task.spec.for_each is None else f"item {i} "
        offloaded = task.offloaded  # item outputs go to the store, not the status
        too_large = None
        if size > OUTPUT_LIMIT:
            too_large = (f"{where}outputs of {size} bytes exceed the {OUTPUT_LIMIT}-byte "
                         f"inline limit: {NO_STORE}")
        elif not offloaded and task.out_bytes + size > TASK_OUTPUTS_LIMIT:
            too_large = (f"outputs exceed the task's {TASK_OUTPUTS_LIMIT}-byte limit at "
                         f"{where}: {NO_STORE}")
        elif not offloaded and self.run.out_bytes + size > RUN_OUTPUTS_LIMIT:
            too_large = f"outputs exceed the run's {RUN_OUTPUTS_LIMIT}-byte limit: {NO_STORE}"
        if too_large is not None:
            self.attempt_failed(task, i, too_large.strip(), reason=OUTPUT_TOO_LARGE,
                                worker=worker)
            return
        self.changed = True
        task.phases[i] = SUCCEEDED
        if offloaded:
            task.unstored[i] = outputs
        else:
            task.outputs[i] = outputs
            task.out_bytes += size
            self.run.out_bytes += size
        task.succeeded += 1
        task.active -= 1
        task.due.pop(i, None)
        if task.spec.for_each is None:
            task.worker = worker or task.worker
        if task.succeeded == len(task.phases):
            self.finish(task, "Succeeded")
        else:
            self.fill(task)

    def attempt_failed(self, task: TaskState, i: int, error: str, *, reason: str,
                       worker: str | None, error_type: str | None = None,
                       started_at: int | None = None) -> None:
        """The current attempt of instance `i` failed for `reason`: recorded, and retried
        after its backoff if the task's retry policy says so (retrying.py), else final."""
        self.changed = True
        attempt = task.attempt_of[i]
        plain = task.spec.for_each is None
        if plain:
            task.worker = worker or task.worker
        retry = task.spec.retry
        again = retrying.retried(retry, reason, attempt)
        retrying.record(task, i, reason, error, error_type=error_type, started_at=started_at,
                        now=self.now, retried=again)
        if again:
            due = self.now + task.spec.backoff_ms(attempt)
            task.phases[i] = RETRYING
            task.due[i] = due
            heapq.heappush(self.run.timers, (due, RETRY_TIMER, task.spec.position, i, attempt))
            if plain:
                task.phase = "Retrying"
                task.message = error
                self.run.views[task.spec.name]["phase"] = "Retrying"
            return
        task.phases[i] = FAILED
        task.due.pop(i, None)
        task.active -= 1
        task.failed_items += 1
        times = "1 attempt" if attempt == 1 else f"{attempt} attempts"
        where = "" if plain else f"item {i} "
        refusal = retrying.refusal(retry, reason, attempt)
        why = "" if refusal is None else f" ({refusal})"
        self.fail(task, reason, f"{where}failed after {times}{why}: {error}")

    # --- tasks ---------------------------------------------------------------------------

    def ready(self, task: TaskState) -> None:
        """Every dependency is satisfied: decide, expand and dispatch; or, when that needs
        stored values not read yet, wait for them (Pending still)."""
        try:
            self._ready(task)
        except Unresolved as unresolved:
            self.block((READY, task.spec.position), unresolved)

    def _ready(self, task: TaskState) -> None:
        spec = task.spec
        self.changed = True
        if spec.when is not None:
            try:
                decision = spec.when.render(self.scope(spec.when))
            except ExpressionError as error:
                self.fail(task, EXPRESSION_ERROR, str(error))
                return
            if not isinstance(decision, bool):
                self.fail(task, EXPRESSION_ERROR,
                          f"{spec.path}.when: expected a bool, got {describe(decision)}")
                return
            if not decision:
                self.finish(task, "Skipped", WHEN_FALSE, "when was false")
                return
        task.started_at = self.now
        count = 1
        if spec.for_each is not None:
            items = self.items(task)
            if items is None:
                return
            count = len(items)
            task.phase = "Running"
        else:
            task.phase = "Queued"
        task.phases = [PENDING] * count
        task.attempt_of = [0] * count
        task.outputs = [None] * count
        self.run.views[spec.name]["phase"] = task.phase
        if count == 0:
            self.finish(task, "Succeeded")
        else:
            self.fill(task)

    def items(self, task: TaskState) -> Sequence[Any] | None:
        """The forEach list (evaluated once, or again after a rebuild); None if it failed.
        A long one is kept in compressed pages (a stored list of 100,000 items, say)."""
        if task.items is not None:
            return task.items
        spec = task.spec
        assert spec.for_each is not None
        try:
            value = spec.for_each.render(self.scope(spec.for_each))
        except ExpressionError as error:
            self.fail(task, EXPRESSION_ERROR, str(error))
            return None
        if not isinstance(value, list):
            self.fail(task, INVALID_FOR_EACH,
                      f"{spec.path}.forEach: expected a list, got {describe(value)}")
            return None
        task.items = PagedItems(value) if len(value) > PAGE_ITEMS else value
        return task.items

    def fill(self, task: TaskState) -> None:
        """Dispatch never-dispatched instances while the task's parallelism allows, and, for
        a forEach, while fewer than DISPATCH_BATCH items went out since the last persisted
        status: the rest follow each write (`Persisted`), so a write never waits on the
        confirms of a whole fan-out, and a crash redoes at most a batch of unrecorded work."""
        limit = task.spec.max_parallel
        total = len(task.phases)
        run = self.run
        batched = task.spec.for_each is not None
        while task.next_index < total and (limit is None or task.active < limit):
            if batched and run.unpersisted >= DISPATCH_BATCH:
                return
            i = task.next_index
            try:
                publish = self.publication(task, i, 1)
            except Unresolved as unresolved:
                self.block((FILL, task.spec.position), unresolved)
                return
            if publish is None:
                return
            if batched:
                run.unpersisted += 1
            task.next_index += 1
            task.active += 1
            self.send(task, i, 1, publish)

    def fill_held_back(self) -> None:
        """Dispatch what `fill` held back for a persisted status, as far as it now may."""
        for task in self.run.tasks:
            if (task.spec.for_each is not None and task.phase == "Running"
                    and task.next_index < task.total):
                before = task.next_index
                self.fill(task)
                if task.next_index != before:
                    self.changed = True

    def retry(self, task: TaskState, i: int, attempt: int, due: int) -> None:
        """Attempt `attempt` of instance `i` failed and its backoff is over: publish the next
        one; or wait for stored values, keeping the due time (so a status written meanwhile
        still says when it was due, and a rebuild arms it again)."""
        try:
            publish = self.publication(task, i, attempt + 1)
        except Unresolved as unresolved:
            task.due[i] = due
            self.block((RETRY, task.spec.position, i, attempt, due), unresolved)
            return
        if publish is not None:
            self.send(task, i, attempt + 1, publish)

    def send(self, task: TaskState, i: int, attempt: int, publish: act.Publish) -> None:
        task.attempt_of[i] = attempt
        task.attempts += 1
        self.queued(task, i, publish)

    def redispatch(self, task: TaskState, i: int) -> None:
        """The current attempt of instance `i` lost its message: publish it again, same id
        and inputs (they render from what has not changed since), Queued again. A timeout
        counts from the start its new message reports."""
        try:
            publish = self.publication(task, i, task.attempt_of[i])
        except Unresolved as unresolved:
            self.block((LOST, task.spec.position, i, task.attempt_of[i]), unresolved)
            return
        if publish is None:
            return
        self.changed = True
        task.due.pop(i, None)
        self.queued(task, i, publish)

    def queued(self, task: TaskState, i: int, publish: act.Publish) -> None:
        task.phases[i] = QUEUED
        if publish.index is None:
            task.phase = "Queued"
            self.run.views[task.spec.name]["phase"] = "Queued"
        self.actions.append(publish)

    def publication(self, task: TaskState, i: int, attempt: int) -> act.Publish | None:
        """The message of attempt `attempt` of instance `i`; None if its inputs failed to
        render (the task has failed then); Unresolved if they need stored values first.
        Inputs that only select stored values pass them on by reference."""
        spec = task.spec
        index: int | None = None
        variables = self.scope(spec.inputs, passthrough=True)
        if spec.for_each is not None:
            items = self.items(task)
            if items is None:
                return None
            index = i
            variables["item"] = items[i] if i < len(items) else None
            variables["index"] = i
        try:
            inputs = spec.inputs.render(variables)
        except ExpressionError as error:
            self.fail(task, EXPRESSION_ERROR, str(error))
            return None
        return act.Publish(
            attempt_id(self.run.uid, spec.name, index, attempt), spec.name, index, attempt,
            spec.type, inputs, None if spec.timeout_ms is None else spec.timeout_ms // 1000,
        )

    def fail(self, task: TaskState, reason: str, message: str) -> None:
        """The task fails: abandon its other instances, tell the run."""
        self.abandon(task)
        run = self.run
        if run.message is None:
            run.message = f"task {task.spec.name} {message}"
        self.finish(task, "Failed", reason, message)

    def abandon(self, task: TaskState) -> None:
        """Instances not ended become Cancelled: their late results will be ignored."""
        phases = task.phases
        for i in range(task.next_index):
            if phases[i] in ACTIVE:
                phases[i] = CANCELLED
        for i in range(task.next_index, task.total):
            phases[i] = CANCELLED
        task.next_index = task.total
        task.active = 0
        task.due.clear()

    def finish(self, task: TaskState, phase: str, reason: str | None = None,
               message: str | None = None) -> None:
        """The task reaches a terminal phase; its dependents learn of it in `settle`."""
        self.changed = True
        run = self.run
        task.phase = phase
        task.reason = reason
        task.message = message if message is not None else task.message
        task.finished_at = self.now
        run.terminal += 1
        if not task.spec.is_finally:
            run.main_terminal += 1
        if phase == "Failed":
            run.failed = True
        show_outputs(run, task)
        self.finished.append(task)

    def variables(self) -> dict[str, Any]:
        """What expressions see, `item` and `index` aside."""
        run = self.run
        return {"inputs": run.inputs, "tasks": run.views, "run": {"failed": run.failed}}

    def scope(self, template: Template, passthrough: bool = False) -> dict[str, Any]:
        """What `template` sees, stored outputs of the tasks it reads included: as values
        from `run.values`, or, with `passthrough` and only plain selections, as the
        references themselves (a worker reads them). Unresolved when a value it needs is not
        in memory, or a forEach task it reads is still storing its item outputs."""
        variables = self.variables()
        run = self.run
        names = template.task_refs
        by_name = run.workflow.by_name
        if names is None:
            readers = [t for t in run.tasks if t.has_refs]
        else:
            readers = [run.tasks[by_name[n].position] for n in names if n in by_name]
            readers = [t for t in readers if t.has_refs]
        if not readers:
            return variables
        if any(t.storing for t in readers):
            raise Unresolved([])
        if passthrough and template.selections_only:
            return variables
        views = dict(run.views)
        missing: list[Any] = []
        loaded: set[int] = set()
        for t in readers:
            name = t.spec.name
            views[name] = {**views[name],
                           "outputs": _resolved(views[name]["outputs"], run.values, missing,
                                                loaded)}
        if missing:
            raise Unresolved(missing)
        variables["tasks"] = views
        if not passthrough:
            # A forEach or `when` may select a large stored value whole (it is bounded by the
            # store's limit); what goes into a message stays under the byte budget.
            variables[LOADED] = frozenset(loaded)
        return variables

    # --- waiting for stored values -----------------------------------------------------

    def block(self, what: tuple[int, ...], unresolved: Unresolved) -> None:
        """`what` waits for stored values: ask for those not asked for yet (Load); the
        `Loaded` that follows tries it again."""
        self.changed = True
        run = self.run
        ids = tuple(ref_id(r) for r in unresolved.refs)
        run.blocked[what] = ids
        wanted = [r for r, i in zip(unresolved.refs, ids, strict=True) if i not in run.loading]
        if wanted:
            run.loading.update(ref_id(r) for r in wanted)
            self.actions.append(act.Load(tuple(wanted)))


def _resolved(outputs: Any, values: Mapping[str, Any], missing: list[Any],
              loaded: set[int]) -> Any:
    """`outputs` with the references in it (itself, or items of a list) replaced by their
    values from `values`; those not there are added to `missing`."""
    if is_ref(outputs):
        value = values.get(ref_id(outputs), _ABSENT)
        if value is _ABSENT:
            missing.append(outputs)
            return outputs
        loaded.add(id(value))
        return value
    if isinstance(outputs, list):
        return [_resolved(o, values, missing, loaded) if is_ref(o) else o for o in outputs]
    return outputs


_ABSENT = object()


def describe(value: Any) -> str:
    names = {bool: "bool", int: "int", float: "double", str: "string", list: "list",
             dict: "map", type(None): "null"}
    return names.get(type(value), type(value).__name__)

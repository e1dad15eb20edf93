"""Admission under `maxActiveRuns`: which runs of a Workflow hold one of its slots, and which
wait for one, in the order they arrived. The decision itself is the engine's `admit`."""

from __future__ import annotations

from collections import defaultdict, deque
from collections.abc import Callable, Mapping

from conveyor import engine
from conveyor.operator.runs.records import ActiveRun

WorkflowKey = tuple[str, str]  # namespace, workflow


def waiting_message(active: int, workflow: str) -> str:
    return f"waiting: {active} runs of Workflow {workflow} are active (maxActiveRuns)"


class Admission:
    """Slots of each Workflow; `start` is called for a run when it gets one, `mark` when a
    waiting run's status should say why it waits."""

    def __init__(self, runs: Mapping[str, ActiveRun], *, start: Callable[[ActiveRun], None],
                 mark: Callable[[ActiveRun], None]) -> None:
        self._runs = runs
        self._start = start
        self._mark = mark
        self._pending: dict[WorkflowKey, deque[str]] = defaultdict(deque)
        self._running: dict[WorkflowKey, set[str]] = defaultdict(set)

    def enqueue(self, run: ActiveRun) -> None:
        """A Pending run: it starts now if a slot is free, else when one frees up."""
        key = (run.ref.namespace, run.ref.workflow)
        self._pending[key].append(run.ref.uid)
        self._mark(run)
        self.admit(*key)
        state = run.state
        if not run.admitted and state is not None and state.message is None:
            state.message = waiting_message(self.active(*key), run.ref.workflow)

    def hold(self, run: ActiveRun) -> None:
        """A run that was already running (rebuilt after a restart) keeps its slot."""
        run.admitted = True
        self._running[(run.ref.namespace, run.ref.workflow)].add(run.ref.uid)

    def leave(self, run: ActiveRun) -> None:
        """The run finished or went: its slot goes to the next waiting run."""
        key = (run.ref.namespace, run.ref.workflow)
        if run.ref.uid in self._running[key]:
            self._running[key].discard(run.ref.uid)
            self.admit(*key)

    def active(self, namespace: str, workflow: str) -> int:
        return len(self._running[(namespace, workflow)])

    def admit(self, namespace: str, workflow: str) -> None:
        """Start waiting runs in arrival order while the Workflow has free slots."""
        key = (namespace, workflow)
        queue = self._pending[key]
        while queue:
            run = self._runs.get(queue[0])
            if run is None or run.state is None or run.admitted:
                queue.popleft()
                continue
            active = len(self._running[key])
            if not engine.admit(active, run.state.workflow.max_active_runs):
                if run.state.message is None:
                    run.state.message = waiting_message(active, workflow)
                    self._mark(run)
                return
            queue.popleft()
            run.admitted = True
            run.state.message = None
            self._running[key].add(run.ref.uid)
            self._start(run)
